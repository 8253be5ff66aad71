/**
 * `--once` in-process: its exit code must not read "synced" when the list was not run
 * because of trouble (a backoff after a failure, another process holding it).
 */
import assert from "node:assert/strict";
import { runInProcess } from "../_helpers/in_process.ts";
import { startWorld, T0, type World } from "../_helpers/world.ts";
import { captureLogs } from "../freshness/_helpers.ts";

const LIST = "oncelist01";

async function once(world: World, env: Record<string, string> = {}) {
  using logs = captureLogs();
  const code = await runInProcess(world, ["--once", LIST], {
    MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
    RECONCILE_EVERY_HOURS: "8760",
    ...env,
  }, logs.logger);
  return { code, logs: logs.records.map((r) => r.message.join("")).join("\n") };
}

Deno.test("--once exits 1 when the list waits out its backoff after a failure", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 5, lastChangedTo: T0 - 60_000 });
    const failed = await once(world, { MAILCHIMP_API_KEY: "wrongkey-us1" });
    assert.equal(failed.code, 1, failed.logs);
    const waiting = await once(world);
    assert.equal(waiting.code, 1, waiting.logs);
    assert.match(waiting.logs, /oncelist01 was not run: its last run failed and it waits out/);
    assert.equal(world.ometria.stats.recordsReceived, 0);
  } finally {
    await world.close();
  }
});

Deno.test("--once exits 1 when another process holds the list", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 5, lastChangedTo: T0 - 60_000 });
    const lease = await world.store.acquire(LIST);
    assert.ok(lease);
    const held = await once(world);
    assert.equal(held.code, 1, held.logs);
    assert.match(held.logs, /oncelist01 was not run: another process holds it/);
    await lease.release();
    assert.equal((await once(world)).code, 0);
  } finally {
    await world.close();
  }
});
