import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { compareCopies } from "../../lib/sim/compare.ts";
import { MailchimpSimulator } from "../../lib/sim/mailchimp_sim.ts";
import { OmetriaSimulator } from "../../lib/sim/ometria_sim.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";
import { stateDocumentSchema } from "../../lib/state/schema.ts";
import { runCli } from "../_helpers/cli.ts";

const MINUTE = 60_000;

async function sims(clock = new FakeClock(Date.now())) {
  return { ...await startCliWorld({ prefix: "cli_test_", mailchimp: { clock } }), clock };
}

function assertSynced(
  mailchimp: MailchimpSimulator,
  ometria: OmetriaSimulator,
  listId: string,
): void {
  const c = compareCopies(mailchimp.truth(listId), ometria.contacts(collectionFor(listId)), listId);
  assert.deepEqual([c.missing.length, c.stale.length, c.extra.length], [0, 0, 0]);
}

Deno.test("main.ts exits 2 naming every missing key", async () => {
  const result = await runCli(["--once", "abc123"], {});
  assert.equal(result.code, 2);
  assert.match(result.stderr, /MAILCHIMP_API_KEY is not set/);
  assert.match(result.stderr, /OMETRIA_API_KEY is not set/);
});

Deno.test("main.ts exits 2 for an unknown flag and a malformed setting, reporting both", async () => {
  const result = await runCli(["--frobnicate", "abc123"], {
    MAILCHIMP_API_KEY: "secretsecret-us1",
    OMETRIA_API_KEY: "k",
  });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--frobnicate/);
  const both = await runCli(["--once", "abc123"], {
    MAILCHIMP_API_KEY: "secretsecret-us1",
    OMETRIA_API_KEY: "k",
    BULK_MEMBER_COUNT: "lots",
    OMETRIA_ENDPOINT: "ftp",
  });
  assert.equal(both.code, 2);
  assert.match(both.stderr, /BULK_MEMBER_COUNT/);
  assert.match(both.stderr, /OMETRIA_ENDPOINT/);
  assert.doesNotMatch(both.stderr, /secretsecret/);
});

Deno.test("main.ts --once syncs every list over HTTP and reports it in status", async () => {
  const w = await sims();
  try {
    const old = Date.now() - 10 * MINUTE;
    w.mailchimp.addList("lista00001", { members: 1_200, seed: 1, lastChangedTo: old });
    w.mailchimp.addList("listb00002", { members: 300, seed: 2, lastChangedTo: old });
    const result = await runCli(
      ["--once", "--state", w.state, "lista00001", "listb00002"],
      w.env,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stderr, new RegExp(w.mailchimp.apiKey), "no secrets in logs");
    assert.doesNotMatch(result.stderr, new RegExp(w.ometria.apiKey), "no secrets in logs");
    assert.match(
      result.stderr,
      /List lista00001: ok, read 1200, pushed 1200, unchanged 0, rejected 0/,
    );
    assert.match(
      result.stderr,
      /List listb00002: ok, read 300, pushed 300, unchanged 0, rejected 0/,
    );
    assertSynced(w.mailchimp, w.ometria, "lista00001");
    assertSynced(w.mailchimp, w.ometria, "listb00002");

    const doc = stateDocumentSchema.parse(JSON.parse(await Deno.readTextFile(w.state)));
    assert.ok(doc.connections.lista00001?.fresh_as_of);
    assert.doesNotMatch(JSON.stringify(doc), new RegExp(w.mailchimp.apiKey), "no secrets in state");

    const status = await runCli(["status", "--json", "--check", "--state", w.state], {});
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout);
    assert.deepEqual(
      report.connections.map((c: { id: string; behind: boolean; status: string }) => [
        c.id,
        c.status,
        c.behind,
      ]),
      [["lista00001", "ok", false], ["listb00002", "ok", false]],
    );

    const reset = await runCli(["reset", "--state", w.state, "lista00001"], {});
    assert.equal(reset.code, 0, reset.stderr);
    const afterReset = stateDocumentSchema.parse(JSON.parse(await Deno.readTextFile(w.state)));
    assert.equal(afterReset.connections.lista00001?.watermark, null);
  } finally {
    await w.close();
  }
});

Deno.test("main.ts: a wrong Mailchimp key fails the run with exit 1 and says so", async () => {
  const w = await sims();
  try {
    w.mailchimp.addList("lista00001", { members: 5 });
    const result = await runCli(["--once", "--state", w.state, "lista00001"], {
      ...w.env,
      MAILCHIMP_API_KEY: "wrongkey-us1",
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /Mailchimp rejected the API key \(401\)/);
    assert.doesNotMatch(result.stderr, /wrongkey/);
  } finally {
    await w.close();
  }
});

Deno.test("main.ts: an unknown list fails with its id while the other lists sync", async () => {
  const w = await sims();
  try {
    w.mailchimp.addList("lista00001", { members: 50, lastChangedTo: Date.now() - 5 * MINUTE });
    const result = await runCli(["--once", "--state", w.state, "nosuchlist", "lista00001"], w.env);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /nosuchlist.*check the list id/);
    assertSynced(w.mailchimp, w.ometria, "lista00001");
  } finally {
    await w.close();
  }
});

Deno.test("main.ts exits 2 on a damaged state file and leaves it untouched", async () => {
  const w = await sims();
  try {
    const damaged = '{"version": 1, "connections": {"x": {"id": 5}}';
    await Deno.writeTextFile(w.state, damaged);
    const result = await runCli(["--once", "--state", w.state, "lista00001"], w.env);
    assert.equal(result.code, 2);
    assert.match(result.stderr, new RegExp(w.state.replaceAll("/", "\\/")));
    assert.equal(await Deno.readTextFile(w.state), damaged);
  } finally {
    await w.close();
  }
});

Deno.test("main.ts migrates the original tool's sync_jobs.json and syncs from it", async () => {
  const w = await sims();
  try {
    const now = Date.now();
    w.mailchimp.addList("lista00001", {
      members: 400,
      seed: 3,
      lastChangedTo: now - 3 * 60 * MINUTE,
    });
    const changed = w.mailchimp.changeMembers("lista00001", 5, 1);
    w.clock.set(now + 5_000);
    const legacyTime = new Date(now - 2 * MINUTE);
    const pad = (n: number) => String(n).padStart(2, "0");
    const naive = `${legacyTime.getFullYear()}-${pad(legacyTime.getMonth() + 1)}-${
      pad(legacyTime.getDate())
    }T${pad(legacyTime.getHours())}:${pad(legacyTime.getMinutes())}:${
      pad(legacyTime.getSeconds())
    }.123456`;
    const legacy = JSON.stringify({
      lista00001: {
        job_details: { list_id: "lista00001", last_sync_date_time: naive },
        status: 2,
        "user readable status": "PARTIALLY_SYNCED",
      },
    });
    await Deno.writeTextFile(w.state, legacy);
    // The imported copy is fresh (2 minutes): force the tick to see its watermark used.
    const result = await runCli(["--once", "--force", "--state", w.state, "lista00001"], {
      ...w.env,
      MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await Deno.readTextFile(`${w.state}.bak`), legacy);
    // Only the members changed within the safety margin before the imported time are read.
    const contacts = w.ometria.contacts(collectionFor("lista00001"));
    for (const m of changed) assert.ok(contacts.has(m.id));
    assert.ok(contacts.size < 400, `an incremental run, not a full one (${contacts.size})`);
  } finally {
    await w.close();
  }
});

Deno.test("main.ts without file permissions keeps state in memory and says so once", async () => {
  const w = await sims();
  try {
    w.mailchimp.addList("lista00001", { members: 30, lastChangedTo: Date.now() - 5 * MINUTE });
    const result = await runCli(["--once", "lista00001"], w.env, {
      permissions: ["--allow-net=127.0.0.1", "--allow-env"],
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr.match(/State is kept in memory only/g)?.length, 1);
    assert.match(result.stderr, /--allow-read --allow-write/);
    assertSynced(w.mailchimp, w.ometria, "lista00001");
  } finally {
    await w.close();
  }
});

Deno.test("main.ts writes JSON lines with LOG_FORMAT=json and appends to LOG_FILE", async () => {
  const w = await sims();
  try {
    w.mailchimp.addList("lista00001", { members: 30, lastChangedTo: Date.now() - 5 * MINUTE });
    const logFile = `${w.dir}/sync.log`;
    const result = await runCli(["--once", "--state", w.state, "lista00001"], {
      ...w.env,
      LOG_FORMAT: "json",
      LOG_FILE: logFile,
    });
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stderr.trim().split("\n");
    const records = lines.map((line) => JSON.parse(line));
    // One JSON object per line, properties flattened beside the message.
    const summary = records.find((r) => r.list_id === "lista00001" && "pushed" in r);
    assert.equal(summary?.pushed, 30);
    assert.equal(summary?.level, "INFO");
    assert.equal((await Deno.readTextFile(logFile)).trim().split("\n").length, lines.length);
  } finally {
    await w.close();
  }
});

Deno.test("main.ts status --check exits 1 when a list is behind its own threshold", async () => {
  const w = await sims(new FakeClock(Date.now() - 20 * MINUTE));
  try {
    w.mailchimp.addList("lista00001", { members: 10, lastChangedTo: Date.now() - 30 * MINUTE });
    const synced = await runCli(["--once", "--state", w.state, "lista00001"], {
      ...w.env,
      NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA: "5",
    });
    assert.equal(synced.code, 0, synced.stderr);
    // Mailchimp's clock said 20 minutes ago: the copy is complete up to then, 15 minutes
    // beyond this list's 5-minute threshold. status judges it by the threshold it ran with.
    const status = await runCli(["status", "--json", "--check", "--state", w.state], {});
    assert.equal(status.code, 1, status.stderr);
    const [entry] = JSON.parse(status.stdout).connections;
    assert.equal(entry.threshold_seconds, 300);
    assert.equal(entry.behind, true);
    assert.ok(entry.lag_seconds >= 20 * 60);
  } finally {
    await w.close();
  }
});

Deno.test("main.ts syncs a connections file: own keys, own accounts, both endpoints", async () => {
  const mailchimpA = await MailchimpSimulator.start({
    apiKey: "keyA0000000000000000000000000000-us1",
  });
  const mailchimpB = await MailchimpSimulator.start({
    apiKey: "keyB0000000000000000000000000000-us2",
  });
  const ometriaA = await OmetriaSimulator.start({ apiKey: "ometriaA", maxRequestsPerSecond: 0 });
  const ometriaB = await OmetriaSimulator.start({ apiKey: "ometriaB", maxRequestsPerSecond: 0 });
  const dir = await Deno.makeTempDir({ prefix: "cli_connections_" });
  try {
    const old = Date.now() - 10 * MINUTE;
    mailchimpA.addList("shopuk0001", { members: 120, seed: 1, lastChangedTo: old });
    mailchimpB.addList("shopde0001", { members: 80, seed: 2, lastChangedTo: old });
    const file = `${dir}/connections.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        connections: [
          {
            id: "uk",
            list_id: "shopuk0001",
            mailchimp_api_key_env: "MC_UK",
            ometria_api_key_env: "OM_UK",
            mailchimp_base_url: mailchimpA.url,
            ometria_base_url: ometriaA.url,
          },
          {
            id: "de",
            list_id: "shopde0001",
            mailchimp_api_key_env: "MC_DE",
            ometria_api_key_env: "OM_DE",
            mailchimp_base_url: mailchimpB.url,
            ometria_base_url: ometriaB.url,
            ometria_endpoint: "record",
            threshold_minutes: 30,
          },
        ],
      }),
    );
    const env = {
      MC_UK: mailchimpA.apiKey,
      OM_UK: ometriaA.apiKey,
      MC_DE: mailchimpB.apiKey,
      OM_DE: "wrong-key",
    };
    const state = `${dir}/state.json`;
    const failed = await runCli(["--once", "--connections", file, "--state", state], env);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /Ometria rejected the API key \(403\): check OM_DE/);
    assert.doesNotMatch(failed.stderr, /wrong-key|keyA000|keyB000|ometriaA/);

    const result = await runCli(["--once", "--force", "--connections", file, "--state", state], {
      ...env,
      OM_DE: ometriaB.apiKey,
    });
    assert.equal(result.code, 0, result.stderr);
    const uk = compareCopies(
      mailchimpA.truth("shopuk0001"),
      ometriaA.contacts(collectionFor("shopuk0001")),
      "shopuk0001",
    );
    assert.deepEqual([uk.missing.length, uk.stale.length, uk.extra.length], [0, 0, 0]);
    const de = compareCopies(
      mailchimpB.truth("shopde0001"),
      ometriaB.legacyRecords() as unknown as Map<string, Record<string, unknown>>,
      "shopde0001",
      "record",
    );
    assert.deepEqual([de.missing.length, de.stale.length, de.extra.length], [0, 0, 0]);
    const doc = stateDocumentSchema.parse(JSON.parse(await Deno.readTextFile(state)));
    assert.equal(doc.connections.de?.threshold_seconds, 1800);
  } finally {
    await mailchimpA.close();
    await mailchimpB.close();
    await ometriaA.close();
    await ometriaB.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts reconcile opts out a deleted member, says so, and raises connection.diverged", async () => {
  const w = await sims();
  const alerts: unknown[] = [];
  const hook = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      alerts.push(await req.json());
      return new Response(null, { status: 204 });
    },
  );
  try {
    w.mailchimp.addList("lista00001", { members: 40, lastChangedTo: Date.now() - 5 * MINUTE });
    const sync = await runCli(["--once", "--state", w.state, "lista00001"], w.env);
    assert.equal(sync.code, 0, sync.stderr);
    const gone = w.mailchimp.truth("lista00001")[3]!;
    w.mailchimp.deleteMember("lista00001", gone.email_address);

    const result = await runCli(["reconcile", "--state", w.state, "lista00001"], {
      ...w.env,
      ALERT_WEBHOOK_URL: `http://127.0.0.1:${hook.addr.port}/alerts`,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /lista00001: 39 in Mailchimp, 40 pushed before, 1 orphan\(s\) opted out/,
    );
    assert.match(result.stderr, /connection\.diverged lista00001/);
    const contact = w.ometria.contacts(collectionFor("lista00001")).get(gone.id)!;
    assert.equal(contact.marketing_optin, "EXPLICITLY_OPTEDOUT");
    assert.deepEqual(
      alerts.map((a) => (a as { event: string; orphans: number })).map((a) => [a.event, a.orphans]),
      [["connection.diverged", 1]],
    );
    const status = await runCli(["status", "--json", "--state", w.state], w.env);
    const entry = JSON.parse(status.stdout).connections[0];
    assert.equal(entry.orphans, 1);
    assert.ok(entry.last_reconciled_at);
  } finally {
    await hook.shutdown();
    await w.close();
  }
});
