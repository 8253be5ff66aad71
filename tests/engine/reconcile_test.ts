/**
 * Deep reconciliation on its own: every member read and compared by content with what
 * Ometria was sent, over real HTTP against the simulators.
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { LedgerTable } from "../../lib/state/ledger_table.ts";
import { IdSet } from "../../lib/state/id_set.ts";
import { unfenced } from "../../lib/state/fence.ts";
import { assertExactCopy, startWorld, T0 } from "../_helpers/world.ts";

const LIST = "list000rc1";
const HOUR = 3_600_000;
const MINUTE = 60_000;

Deno.test("reconcile of an unchanged list reads every member and sends Ometria nothing", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 2_500, seed: 1, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    world.mailchimp.resetStats();
    world.ometria.resetStats();
    const [result] = await service.reconcile([LIST]);
    assert.equal(result?.outcome, "ok", result?.error);
    assert.equal(result?.diverged, false);
    // Three full pages and the list's name: every member is read, not only its id.
    assert.equal(world.mailchimp.stats.membersRequests, 3);
    assert.equal(world.ometria.stats.requests, 0, "nothing differs: nothing is sent");
    assert.equal(result?.summary?.mailchimp_members, 2_500);
    await service.close();
  } finally {
    await world.close();
  }
});

Deno.test("reconcile repairs values that went stale while Mailchimp's clock was back", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 500, seed: 2, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    // Mailchimp's clock goes back 10 minutes, 20 members change (stamped in the past, before
    // the watermark), and the clock comes back before the next run: polling cannot see them.
    world.mailchimp.setOptions({ clockOffsetMs: -10 * MINUTE });
    const changed = world.mailchimp.changeMembers(LIST, 20, 5);
    world.mailchimp.setOptions({ clockOffsetMs: 0 });
    world.clock.set(world.clock.now() + MINUTE);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    assert.throws(() => assertExactCopy(world, LIST), "the 20 are stale after polling");

    const [result] = await service.reconcile([LIST]);
    assert.equal(result?.outcome, "ok", result?.error);
    assert.equal(result?.diverged, true, "older than the watermark: a divergence");
    assert.ok((result?.summary?.stale ?? 0) > 0 && (result?.summary?.stale ?? 0) <= changed.length);
    assertExactCopy(world, LIST);
    await service.close();
  } finally {
    await world.close();
  }
});

Deno.test("reconcile pushes members changed since the watermark without calling it a divergence", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 300, seed: 3, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    world.clock.set(world.clock.now() + MINUTE);
    world.mailchimp.changeMembers(LIST, 10, 6);
    const [result] = await service.reconcile([LIST]);
    assert.equal(result?.outcome, "ok", result?.error);
    assert.equal(result?.diverged, false, "polling's next window, not a bug");
    assert.equal(result?.summary?.stale, 0);
    assert.ok((result?.summary?.ahead ?? 0) > 0);
    assertExactCopy(world, LIST);
    await service.close();
  } finally {
    await world.close();
  }
});

Deno.test("reconcile gives entries of the id-only ledger their hash without pushing them", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 400, seed: 4, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    // What an upgrade finds: the ledger of an earlier release knew ids only.
    const ids = IdSet.of(world.mailchimp.truth(LIST).map((m) => m.id));
    await world.store.ledger(LIST).compact(LedgerTable.fromLegacyIds(ids), unfenced(LIST));
    world.ometria.resetStats();
    const [first] = await service.reconcile([LIST]);
    assert.equal(first?.outcome, "ok", first?.error);
    assert.equal(first?.summary?.adopted, 400);
    assert.equal(world.ometria.stats.requests, 0, "adopted, not pushed");
    const [second] = await service.reconcile([LIST]);
    assert.equal(second?.summary?.adopted, 0, "now known by content");
    assert.equal(world.ometria.stats.requests, 0);
    assert.equal(world.ometria.contacts(collectionFor(LIST)).size, 400);
    await service.close();
  } finally {
    await world.close();
  }
});
