/**
 * Records Ometria accepts with OK and refuses when it validates them later, in both shapes
 * its `_errors` listing is served in (docs/API_NOTES.md): named members are held and sent
 * again, errors naming no member fail the run and alert, errors older than the connection
 * are not its.
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { assertExactCopy, startWorld, T0 } from "../_helpers/world.ts";
import type { RunResult } from "../../lib/engine/run_connection.ts";

const LIST = "list000as1";
const HOUR = 3_600_000;
const BAD = "bad.email@example.com";
const reject = (r: Record<string, unknown>) => r.email === BAD ? "not a valid value" : undefined;

Deno.test("a member Ometria refuses after OK is held with its reason, sent again, and released once taken", async () => {
  const world = await startWorld({ ometria: { validation: "async", errorsShape: "rich", reject } });
  try {
    world.mailchimp.addList(LIST, { members: 30, seed: 1, lastChangedTo: T0 - HOUR });
    const bad = world.mailchimp.upsertMember(LIST, { email: BAD, FNAME: "Bad" });
    world.clock.set(world.clock.now() + 5_000);
    const service = world.service([LIST]);
    const first = await service.runOnce(LIST);
    assert.equal(first.outcome, "failed");
    assert.match(first.error!, /1 member\(s\) quarantined/);
    const held = (await world.store.get(LIST))!.quarantine;
    assert.deepEqual(held.map((q) => q.id), [bad.id]);
    assert.match(held[0]!.reason, /refused it after answering OK: .*not a valid value/);
    assert.equal(world.ometria.contacts(collectionFor(LIST)).has(bad.id), false);

    // Ometria takes it now: the next run sends it again (not "unchanged") and releases it.
    world.ometria.setOptions({ reject: undefined });
    world.clock.set(world.clock.now() + 5_000);
    const second = await service.runOnce(LIST);
    assert.equal(second.outcome, "ok", second.error);
    assert.equal((await world.store.get(LIST))!.quarantine.length, 0);
    assertExactCopy(world, LIST);
    await service.close();
  } finally {
    await world.close();
  }
});

Deno.test("errors that name no member fail the run with their count and raise connection.rejected_async", async () => {
  const world = await startWorld({
    ometria: { validation: "async", errorsShape: "documented", reject },
  });
  try {
    world.mailchimp.addList(LIST, { members: 30, seed: 2, lastChangedTo: T0 - HOUR });
    world.mailchimp.upsertMember(LIST, { email: BAD, FNAME: "Bad" });
    world.clock.set(world.clock.now() + 5_000);
    const alerted: RunResult[] = [];
    const service = world.service([LIST], { onRejectedAsync: (_c, r) => alerted.push(r) });
    const run = await service.runOnce(LIST);
    assert.equal(run.outcome, "failed");
    assert.match(run.error!, /refused 1 record\(s\) after answering OK that cannot be tied/);
    assert.deepEqual(alerted.map((r) => r.rejectedAsync), [["not a valid value"]]);
    // Seen once is seen: the next run does not count it again.
    world.ometria.setOptions({ reject: undefined });
    world.clock.set(world.clock.now() + 5_000);
    world.mailchimp.upsertMember(LIST, { email: BAD, FNAME: "Bad again" });
    world.clock.set(world.clock.now() + 5_000);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    assert.equal(alerted.length, 1);
    await service.close();
  } finally {
    await world.close();
  }
});

Deno.test("errors Ometria listed before a connection's first push are not its own", async () => {
  const world = await startWorld({
    ometria: { validation: "async", errorsShape: "documented", reject },
  });
  try {
    // Another integration of the account pushed a bad record earlier.
    const res = await fetch(`${world.ometria.url}/v2/push`, {
      method: "POST",
      headers: { "X-Ometria-Auth": world.ometria.apiKey, "content-type": "application/json" },
      body: JSON.stringify([{
        "@type": "contact",
        "@collection": "shopify",
        id: "x1",
        email: BAD,
      }]),
    });
    await res.body?.cancel();
    world.mailchimp.addList(LIST, { members: 30, seed: 3, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    const run = await service.runOnce(LIST);
    assert.equal(run.outcome, "ok", run.error);
    await service.close();
  } finally {
    await world.close();
  }
});
