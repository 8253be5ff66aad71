/**
 * Ometria limits requests, not records: a list's first run, whose archived pass reads the
 * archived members beside the main pass, sends whole batches only, the last one excepted,
 * counted over real HTTP against the simulator.
 */
import assert from "node:assert/strict";
import { assertInSync, startWorld, T0 } from "../_helpers/world.ts";

const LIST = "batches001";
const HOUR = 3_600_000;

Deno.test("a first run with an archived pass sends as many requests as whole batches need", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 3_000, seed: 5, lastChangedTo: T0 - HOUR });
    const archived = world.mailchimp.truth(LIST).filter((m) => m.status === "archived").length;
    // Two partial batches (the archived pass's last and the main pass's last) otherwise.
    assert.ok(archived % 100 !== 0, `archived members: ${archived}`);
    const service = world.service([LIST], { pageSize: 1000 });
    const run = await service.runOnce(LIST);
    assert.equal(run.outcome, "ok");
    assert.equal(world.ometria.stats.recordsReceived, 3_000, "each member once");
    assert.equal(world.ometria.stats.pushRequests, 30, "3,000 records in 30 requests of 100");
    assertInSync(world, LIST);
    const state = await world.store.get(LIST);
    assert.equal(state?.run, null, "the run completed");
    assert.equal(state?.archived_in_listing, true);
  } finally {
    await world.close();
  }
});

Deno.test("records carried from the archived pass survive Ometria failing and dropping answers", async () => {
  const world = await startWorld({
    ometria: { faults: { rate: 0.2, kinds: [500, "drop"], seed: 3 } },
  });
  try {
    world.mailchimp.addList(LIST, { members: 2_345, seed: 6, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pageSize: 1000 });
    const run = await service.runOnce(LIST);
    assert.equal(run.outcome, "ok", (await world.store.get(LIST))?.last_error ?? "");
    assertInSync(world, LIST);
    assert.equal((await world.store.get(LIST))?.run, null);
  } finally {
    await world.close();
  }
});
