/**
 * The commands around the content ledger, run as users run them (main.ts as a process, real
 * HTTP to both simulators): `reset` keeps unchanged-skipping, `reset --repush` and
 * `sync --repush` send everything, `sync --dry-run` writes nothing, `explain` tells one
 * member's story.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";
import { runCli } from "../_helpers/cli.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { compareCopies } from "../../lib/sim/compare.ts";
import { stateDocumentSchema } from "../../lib/state/schema.ts";
import type { DryRunOutput } from "../../lib/app/commands/dry_run.ts";
import type { DryRunReport } from "../../lib/engine/dry_run.ts";
import type { Explanation } from "../../lib/engine/explain.ts";

const MINUTE = 60_000;
const LIST = "lista00001";
const MEMBERS = 600;

/** A world whose list was synced once, every member acknowledged. */
async function synced(prefix: string) {
  const clock = new FakeClock(Date.now());
  const w = await startCliWorld({ prefix, mailchimp: { clock } });
  w.mailchimp.addList(LIST, { members: MEMBERS, seed: 7, lastChangedTo: Date.now() - 10 * MINUTE });
  const first = await runCli(["--once", "--state", w.state, LIST], w.env);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, new RegExp(`List ${LIST}: ok, read ${MEMBERS}, pushed ${MEMBERS}`));
  w.ometria.resetStats();
  return { ...w, clock };
}

function subscribed(w: Awaited<ReturnType<typeof synced>>) {
  return w.mailchimp.truth(LIST).filter((m) => m.status === "subscribed");
}

function assertSynced(w: Awaited<ReturnType<typeof synced>>): void {
  const c = compareCopies(w.mailchimp.truth(LIST), w.ometria.contacts(collectionFor(LIST)), LIST);
  assert.deepEqual([c.missing.length, c.stale.length, c.extra.length], [0, 0, 0]);
}

async function stateDoc(path: string) {
  return stateDocumentSchema.parse(JSON.parse(await Deno.readTextFile(path)));
}

/** Every file of the state (document, journal, ledger, inbox), with its bytes. */
async function stateFiles(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (folder: string) => {
    for await (const e of Deno.readDir(folder)) {
      const path = `${folder}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else files.set(path, Array.from(await Deno.readFile(path)).join(","));
    }
  };
  await walk(dir);
  return files;
}

Deno.test("reset keeps unchanged-skipping: the full run after it pushes 0 of an unchanged list", async () => {
  const w = await synced("ledger_reset_");
  try {
    const reset = await runCli(["reset", "--state", w.state, LIST], {});
    assert.equal(reset.code, 0, reset.stderr);
    assert.match(reset.stdout, /reads the whole list and sends the members whose record changed/);
    assert.equal((await stateDoc(w.state)).connections[LIST]?.watermark, null);
    const run = await runCli(["--once", "--state", w.state, LIST], w.env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, new RegExp(`read ${MEMBERS}, pushed 0, unchanged ${MEMBERS}`));
    assert.equal(w.ometria.stats.pushRequests, 0);
    assert.ok((await stateDoc(w.state)).connections[LIST]?.watermark, "the full run completed");
  } finally {
    await w.close();
  }
});

Deno.test("reset --repush: the next run sends every member, once; the run after skips them again", async () => {
  const w = await synced("ledger_repush_");
  try {
    const reset = await runCli(["reset", "--repush", "--state", w.state, LIST], {});
    assert.equal(reset.code, 0, reset.stderr);
    assert.match(reset.stdout, /sends every member \(--repush\)/);
    assert.equal((await stateDoc(w.state)).connections[LIST]?.repush_pending, true);

    const run = await runCli(["--once", "--state", w.state, LIST], w.env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, new RegExp(`read ${MEMBERS}, pushed ${MEMBERS}, unchanged 0`));
    assert.equal(w.ometria.stats.recordsReceived, MEMBERS);
    assertSynced(w);
    assert.equal((await stateDoc(w.state)).connections[LIST]?.repush_pending, undefined);

    w.ometria.resetStats();
    const again = await runCli(["reset", "--state", w.state, LIST], {});
    assert.equal(again.code, 0, again.stderr);
    const after = await runCli(["--once", "--state", w.state, LIST], w.env);
    assert.equal(after.code, 0, after.stderr);
    assert.match(after.stderr, new RegExp(`pushed 0, unchanged ${MEMBERS}`));
    assert.equal(w.ometria.stats.pushRequests, 0);
  } finally {
    await w.close();
  }
});

Deno.test("sync --repush --once sends every member of an unchanged list", async () => {
  const w = await synced("ledger_sync_repush_");
  try {
    const run = await runCli(["--once", "--repush", "--state", w.state, LIST], w.env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, new RegExp(`read ${MEMBERS}, pushed ${MEMBERS}, unchanged 0`));
    assert.equal(w.ometria.stats.recordsReceived, MEMBERS);
    assert.equal((await stateDoc(w.state)).connections[LIST]?.repush_pending, undefined);
  } finally {
    await w.close();
  }
});

Deno.test("--repush, --dry-run and --ometria are refused where they do not apply (exit 2)", async () => {
  const w = await synced("ledger_flags_");
  try {
    for (
      const [args, said] of [
        [["status", "--repush"], /--repush only applies to sync and reset/],
        [["reconcile", "--dry-run", LIST], /--dry-run only applies to sync/],
        [["--dry-run", "--repush", LIST], /cannot --repush/],
        [["--once", "--ometria", LIST], /--ometria only applies to explain/],
        [
          ["--once", "--json", LIST],
          /--json only applies to status, explain, verify and sync --dry-run/,
        ],
      ] as const
    ) {
      const r = await runCli([...args, "--state", w.state], w.env);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, said);
    }
  } finally {
    await w.close();
  }
});

Deno.test("sync --dry-run counts new, changed, opted out and unchanged, and writes nothing", async () => {
  const w = await synced("ledger_dry_run_");
  try {
    const reset = await runCli(["reset", "--state", w.state, LIST], {});
    assert.equal(reset.code, 0, reset.stderr);
    const [a, b, c] = subscribed(w);
    w.clock.set(w.clock.now() + 5_000);
    w.mailchimp.upsertMember(LIST, { email: a!.email_address, FNAME: "Renamed" });
    w.mailchimp.upsertMember(LIST, { email: b!.email_address, LNAME: "Changed" });
    w.mailchimp.upsertMember(LIST, { email: c!.email_address, status: "unsubscribed" });
    w.mailchimp.upsertMember(LIST, { email: "new.member@example.com", FNAME: "New" });
    w.mailchimp.resetStats();
    const before = await stateFiles(w.dir);

    const dry = await runCli(["--dry-run", "--json", "--state", w.state, LIST], w.env);
    assert.equal(dry.code, 0, dry.stderr);
    const output = JSON.parse(dry.stdout) as DryRunOutput;
    assert.equal(output.dry_run, true);
    assert.match(output.fields_note, /cannot be named/);
    const report = output.connections[0] as DryRunReport;
    assert.deepEqual(
      [report.id, report.since, report.read, report.new, report.changed, report.opted_out],
      [LIST, null, MEMBERS + 1, 1, 2, 1],
    );
    assert.equal(report.unchanged, MEMBERS - 3);
    assert.equal(report.repush_pending, false);
    assert.equal(report.mailchimp_requests, 1);
    assert.deepEqual(report.examples.changed.map((x) => x.id).sort(), [a!.id, b!.id].sort());
    for (const x of report.examples.changed) {
      assert.equal(x.cause, "changed_in_mailchimp");
      assert.equal(x.fields, null);
      assert.ok(Date.parse(x.version) > Date.parse(x.sent_version!));
    }
    assert.deepEqual(report.examples.opted_out, [c!.id]);
    assert.equal(report.examples.new.length, 1);
    assert.doesNotMatch(dry.stdout + dry.stderr, /@example\.com|new\.member/, "no address shown");

    assert.equal(w.ometria.stats.requests, 0, "the Ometria simulator received no request");
    assert.deepEqual(await stateFiles(w.dir), before, "the state is byte-identical");

    const text = await runCli(["--dry-run", "--state", w.state, LIST], w.env);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /lista00001: a run would push 4 record\(s\): 1 new, 2 changed, 1 opted out; 597 unchanged \(not sent\); read 601 member\(s\) \(the whole list\)/,
    );
    assert.match(text.stdout, /changed: [0-9a-f]{32} \(changed in mailchimp; sent version/);
    assert.match(text.stdout, /nothing was sent to Ometria and the state was not changed/);
    assert.equal(w.ometria.stats.requests, 0);
    assert.deepEqual(await stateFiles(w.dir), before);

    // What it predicted is what the run does.
    const run = await runCli(["--once", "--state", w.state, LIST], w.env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, new RegExp(`read ${MEMBERS + 1}, pushed 4, unchanged ${MEMBERS - 3}`));
  } finally {
    await w.close();
  }
});

Deno.test("sync --dry-run after a run reads only what changed since the watermark", async () => {
  const w = await synced("ledger_dry_window_");
  try {
    const [a] = subscribed(w);
    w.clock.set(w.clock.now() + 5_000);
    w.mailchimp.upsertMember(LIST, { email: a!.email_address, FNAME: "Later" });
    const dry = await runCli(["--dry-run", "--json", "--state", w.state, LIST], w.env);
    assert.equal(dry.code, 0, dry.stderr);
    const report = (JSON.parse(dry.stdout) as DryRunOutput).connections[0] as DryRunReport;
    assert.ok(report.since !== null);
    assert.deepEqual([report.read, report.changed, report.new, report.unchanged], [1, 1, 0, 0]);
    assert.equal(w.ometria.stats.requests, 0);
  } finally {
    await w.close();
  }
});

Deno.test("explain: the member, its record, its ledger entry, by address or by hash", async () => {
  const w = await synced("ledger_explain_");
  try {
    const [a] = subscribed(w);
    const email = a!.email_address;
    const first = await runCli(
      ["explain", email, "--connection", LIST, "--json", "--state", w.state],
      w.env,
    );
    assert.equal(first.code, 0, first.stderr);
    const e = JSON.parse(first.stdout).connections[0] as Explanation;
    assert.equal(e.member_id, a!.id);
    assert.ok(e.mailchimp.found);
    assert.equal(e.mailchimp.member.status, "subscribed");
    assert.equal(e.mapped.record?.id, a!.id);
    assert.equal(e.mapped.record?.marketing_optin, "EXPLICITLY_OPTEDIN");
    assert.deepEqual(
      [e.ledger?.acked, e.ledger?.same_as_now, e.ledger?.next_run, e.ledger?.hash],
      [true, true, "unchanged", e.mapped.hash],
    );
    assert.equal(e.quarantine, null);
    assert.equal(e.erasure, null);
    assert.equal(e.ometria, undefined);
    assert.ok(!(first.stdout + first.stderr).includes(email), "the address is never shown");
    assert.equal(w.ometria.stats.requests, 0);

    w.clock.set(w.clock.now() + 5_000);
    w.mailchimp.upsertMember(LIST, { email, FNAME: "Changed" });
    const byHash = await runCli(
      ["explain", a!.id.toUpperCase(), "--connection", LIST, "--ometria", "--state", w.state],
      w.env,
    );
    assert.equal(byHash.code, 0, byHash.stderr);
    assert.match(byHash.stdout, new RegExp(`member ${a!.id}`));
    assert.match(byHash.stdout, /Mailchimp: subscribed, .…@/);
    assert.match(byHash.stdout, /"firstname":"Changed"/);
    assert.match(
      byHash.stdout,
      /acknowledged by Ometria; different from \(changed in mailchimp\) the record now, so the next run that reads the member sends it/,
    );
    assert.match(byHash.stdout, /Erasure: give the address instead of the hash/);
    // Ometria still holds the name sent before the change: explain reads it back and says so.
    assert.match(
      byHash.stdout,
      /Ometria: holds \{.*"firstname":"(?!Changed)[^"]*".*\}: differs in firstname \(verify --repair/,
    );
    assert.equal(w.ometria.stats.pushRequests, 0, "explain only reads");
    assert.ok(!byHash.stdout.includes(email));

    const unknown = await runCli(
      ["explain", "nobody.here@example.com", "--connection", LIST, "--json", "--state", w.state],
      w.env,
    );
    assert.equal(unknown.code, 0, unknown.stderr);
    const none = JSON.parse(unknown.stdout).connections[0] as Explanation;
    assert.deepEqual([none.mailchimp.found, none.ledger], [false, null]);
  } finally {
    await w.close();
  }
});

Deno.test("explain: bad input and an unknown connection exit 2 with what to fix, echoing nothing", async () => {
  const w = await synced("ledger_explain_bad_");
  try {
    const bad = await runCli(
      ["explain", "jane.doe-at-example", "--connection", LIST, "--state", w.state],
      w.env,
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /neither an email address nor a subscriber hash \(32 hex digits/);
    assert.ok(!bad.stderr.includes("jane.doe"), "the argument is not echoed");
    assert.doesNotMatch(bad.stderr, /at .*\.ts:\d+/, "no stack trace");

    const noList = await runCli(["explain", "jane@example.com", "--state", w.state], w.env);
    assert.equal(noList.code, 2);
    assert.match(noList.stderr, /explain needs the list the member is in/);

    const two = await runCli(["explain", "a@example.com", "b@example.com"], w.env);
    assert.equal(two.code, 2);
    assert.match(two.stderr, /explain takes one member, got 2/);

    const file = `${w.dir}/connections.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        connections: [{
          id: "shop",
          list_id: LIST,
          mailchimp_api_key_env: "MAILCHIMP_API_KEY",
          ometria_api_key_env: "OMETRIA_API_KEY",
        }],
      }),
    );
    const unknown = await runCli(
      [
        "explain",
        "jane@example.com",
        "--connections",
        file,
        "--connection",
        "nope",
        "--state",
        w.state,
      ],
      w.env,
    );
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /explain: the connections file has no connection nope/);
    assert.ok(!unknown.stderr.includes("jane@"));
  } finally {
    await w.close();
  }
});
