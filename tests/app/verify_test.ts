/**
 * `verify` in-process against both simulators over real HTTP: it reads back what Ometria
 * holds (the Contact API) and finds a contact changed behind the product's back (exit 1,
 * naming the field), a contact deleted (missing) and one no member has (extra); `--repair`
 * pushes them through the writer and a second verify exits 0; `--sample` checks members at
 * random; `--json` reports the same for machines; bad input is refused with exit 2.
 */
import assert from "node:assert/strict";
import { runCommand } from "../../lib/app/cli.ts";
import { loadConfig } from "../../lib/config/config.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { statusRows } from "../../lib/freshness/status_report.ts";
import { renderStatusPage } from "../../lib/status_page/status_page.ts";
import {
  buildStatusPageView,
  parseStatusPageQuery,
} from "../../lib/status_page/status_page_view.ts";
import { assertExactCopy, assertInSync, startWorld, T0, type World } from "../_helpers/world.ts";
import { captureLogs } from "../freshness/_helpers.ts";

const LIST = "verify0001";
const COLLECTION = collectionFor(LIST);

function env(world: World, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MAILCHIMP_API_KEY: world.mailchimp.apiKey,
    MAILCHIMP_BASE_URL: world.mailchimp.url,
    OMETRIA_API_KEY: world.ometria.apiKey,
    OMETRIA_BASE_URL: world.ometria.url,
    MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
    ...extra,
  };
}

/** Runs the CLI's command in-process; its exit code and what it wrote. */
async function cli(
  world: World,
  args: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ code: number; out: string; errors: string[] }> {
  const loaded = await loadConfig({ env: env(world, extraEnv), args });
  if (!loaded.ok) return { code: 2, out: "", errors: loaded.errors };
  let out = "";
  using logs = captureLogs();
  const code = await runCommand(loaded.config, {
    clock: world.clock,
    logger: logs.logger,
    fetch,
    store: world.store,
    write: (text) => out += text,
    cron: () => Promise.resolve(),
    stop: new AbortController().signal,
    hardStop: new AbortController().signal,
  });
  return { code, out, errors: [] };
}

async function syncedWorld(members = 30): Promise<World> {
  const world = await startWorld({ ometria: { maxDataApiRequestsPerSecond: 0 } });
  world.mailchimp.addList(LIST, { members, lastChangedTo: T0 - 60_000 });
  const synced = await cli(world, ["--once", LIST]);
  assert.equal(synced.code, 0, synced.out);
  assertInSync(world, LIST);
  return world;
}

Deno.test("verify exits 0 when Ometria holds exactly what Mailchimp holds", async () => {
  const world = await syncedWorld();
  try {
    const r = await cli(world, ["verify", LIST]);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      /full verify of 30 member\(s\) and 30 Ometria contact\(s\): Ometria matches/,
    );
    const state = await world.store.get(LIST);
    assert.equal(state?.last_verify?.mode, "full");
    assert.equal(state?.last_verify?.checked, 30);
    assert.equal(state?.last_verify?.diverged_since, null);
    // status --json and the status page show it.
    const status = await cli(world, ["status", "--json", LIST]);
    const entry = JSON.parse(status.out).connections[0];
    assert.equal(entry.last_verify.mode, "full");
    assert.equal(entry.last_verify.checked, 30);
    const text = await cli(world, ["status", LIST]);
    assert.match(text.out, /verified .* \(full of 30\): Ometria matches Mailchimp/);
    const view = buildStatusPageView(
      statusRows([state!], { connections: [], thresholdMinutes: 120 }),
      world.clock.now(),
      parseStatusPageQuery(new URLSearchParams()),
    );
    const html = renderStatusPage(view, { nonce: "n" });
    assert.match(html, /<th>Verified<\/th>/);
    assert.match(html, /matches<\/span> .*full of 30/);
  } finally {
    await world.close();
  }
});

Deno.test("verify finds a contact changed behind the product's back, and --repair fixes it", async () => {
  const world = await syncedWorld();
  try {
    const [first, second] = [...world.ometria.contacts(COLLECTION).keys()].sort();
    assert.ok(first && second);
    world.ometria.contactApi.tamper(COLLECTION, first, { firstname: "Changed by hand" });
    world.ometria.contactApi.tamper(COLLECTION, second, undefined);
    const extra = "0123456789abcdef0123456789abcdef";
    world.ometria.contactApi.plant(COLLECTION, {
      id: extra,
      email: "stranger@example.com",
      marketing_optin: "EXPLICITLY_OPTEDIN",
    });
    // The ledger still says every member was pushed as it is: a run sends nothing.
    world.ometria.resetStats();
    assert.equal((await cli(world, ["--once", LIST])).code, 0);
    assert.equal(world.ometria.stats.pushRequests, 0);

    const found = await cli(world, ["verify", LIST]);
    assert.equal(found.code, 1, found.out);
    assert.match(found.out, /1 missing, 1 stale, 1 extra/);
    assert.match(found.out, new RegExp(`stale +${first}: firstname`));
    assert.match(found.out, new RegExp(`missing ${second}`));
    assert.match(found.out, new RegExp(`extra +${extra}`));
    const state = await world.store.get(LIST);
    assert.deepEqual(
      [state?.last_verify?.missing, state?.last_verify?.stale, state?.last_verify?.extra],
      [1, 1, 1],
    );
    assert.deepEqual(state?.last_verify?.fields, ["firstname"]);
    assert.ok(state?.last_verify?.diverged_since);

    const repaired = await cli(world, ["verify", "--repair", LIST]);
    assert.equal(repaired.code, 1, repaired.out);
    assert.match(repaired.out, /repaired: 2 pushed, 1 opted out/);
    assert.equal(
      world.ometria.contacts(COLLECTION).get(extra)?.marketing_optin,
      "EXPLICITLY_OPTEDOUT",
    );

    const again = await cli(world, ["verify", LIST]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /Ometria matches Mailchimp/);
    assertExactCopy(world, LIST);
    assert.equal((await world.store.get(LIST))?.last_verify?.diverged_since, null);
    // The ledger holds what was sent: the next run still pushes nothing.
    world.ometria.resetStats();
    assert.equal((await cli(world, ["--once", LIST])).code, 0);
    assert.equal(world.ometria.stats.pushRequests, 0);
  } finally {
    await world.close();
  }
});

Deno.test("verify --repair writes nothing while another process holds the connection's lease", async () => {
  const world = await syncedWorld(10);
  try {
    const id = [...world.ometria.contacts(COLLECTION).keys()][0]!;
    world.ometria.contactApi.tamper(COLLECTION, id, { firstname: "Hand edit" });
    const lease = await world.store.acquire(LIST);
    assert.ok(lease);
    world.ometria.resetStats();
    const r = await cli(world, ["verify", "--repair", LIST]);
    await lease.release();
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /not repaired: another process is running this connection/);
    assert.equal(world.ometria.stats.pushRequests, 0, "nothing pushed without the lease");
    assert.equal(world.ometria.contacts(COLLECTION).get(id)?.firstname, "Hand edit");
  } finally {
    await world.close();
  }
});

Deno.test("verify --sample checks members at random by id; --json reports for machines", async () => {
  // 3,000 members: a full read (31 requests) costs more than 20 lookups.
  const world = await syncedWorld(3000);
  try {
    const ids = [...world.ometria.contacts(COLLECTION).keys()];
    for (const id of ids) {
      world.ometria.contactApi.tamper(COLLECTION, id, { lastname: "Stale" });
    }
    const before = world.ometria.contactApi.requests;
    const r = await cli(world, ["verify", "--sample", "20", "--json", LIST]);
    assert.equal(r.code, 1, r.out);
    const report = JSON.parse(r.out).connections[0];
    assert.equal(report.mode, "sample");
    assert.equal(report.checked, 20);
    assert.equal(report.stale.count, 20);
    assert.equal(report.extra, null);
    assert.deepEqual(report.stale.examples[0].fields, ["lastname"]);
    assert.deepEqual(report.fields, ["lastname"]);
    // 20 lookups and 20 confirmations by id: no listing of the whole collection.
    assert.equal(world.ometria.contactApi.requests - before, 40);
    assert.equal(report.requests.ometria, 40);
    const state = await world.store.get(LIST);
    assert.equal(state?.last_verify?.mode, "sample");
    assert.equal(state?.last_verify?.stale, 20);
    // A sample no cheaper than the whole list reads the whole list (and finds extras).
    const whole = await cli(world, ["verify", "--sample", "100", "--json", LIST]);
    const all = JSON.parse(whole.out).connections[0];
    assert.equal(all.mode, "full");
    assert.equal(all.checked, 3000);
    assert.equal(all.stale.count, 3000);
    assert.equal(all.extra.count, 0);
  } finally {
    await world.close();
  }
});

Deno.test("verify does not count members changed since the last run: polling sends them next", async () => {
  const world = await syncedWorld(20);
  try {
    world.clock.set(world.clock.now() + 60_000);
    world.mailchimp.changeMembers(LIST, 3, 7);
    const r = await cli(world, ["verify", LIST]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /3 member\(s\) changed since the last run differ: polling sends them next/);
  } finally {
    await world.close();
  }
});

Deno.test("verify reports fields the Contact API does not return as not compared, never stale", async () => {
  const world = await syncedWorld(10);
  try {
    world.ometria.contactApi.setOptions({ fields: "fivetran" });
    const r = await cli(world, ["verify", LIST]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /not compared \(Ometria's Contact API did not return them\): .*firstname/);
  } finally {
    await world.close();
  }
});

Deno.test("verify refuses bad input with a clear message and exit 2", async () => {
  const world = await startWorld();
  try {
    for (
      const [args, message] of [
        [["verify", "--sample", "ten", LIST], /--sample needs a whole number/],
        [["verify", "--sample", "0", LIST], /--sample needs a whole number/],
        [["verify", "--sample"], /--sample needs a value/],
        [["reconcile", "--repair", LIST], /--sample and --repair only apply to verify/],
        [["verify"], /No lists to verify/],
        [
          ["status", "--connection", LIST],
          /--connection only applies to erase, explain and verify/,
        ],
      ] as const
    ) {
      const r = await cli(world, [...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.out}`);
      assert.ok(r.errors.some((e) => message.test(e)), `${args.join(" ")}: ${r.errors.join("; ")}`);
    }
    for (const value of ["-1", "soon", "9000"]) {
      const r = await cli(world, [LIST], { VERIFY_EVERY_HOURS: value });
      assert.equal(r.code, 2);
      assert.ok(
        r.errors.some((e) => /VERIFY_EVERY_HOURS must be 0 \(off\) or a number of hours/.test(e)),
        r.errors.join("; "),
      );
    }
    const legacy = await cli(world, ["verify", LIST], { OMETRIA_ENDPOINT: "record" });
    assert.equal(legacy.code, 2);
    assert.ok(legacy.errors.some((e) => /legacy \/record endpoint/.test(e)), legacy.errors.join());
  } finally {
    await world.close();
  }
});
