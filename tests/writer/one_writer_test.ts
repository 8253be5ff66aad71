/**
 * Issue 14's cases, each played against the simulators: pushes held in flight by the Ometria
 * simulator while Mailchimp changes or deletes the member, a reconciliation racing webhook
 * additions, and a member that changes faster than the clock margin. Each ends by comparing
 * Ometria with Mailchimp's truth: nothing missing, nothing stale, nothing gone left opted in.
 * (Two processes on one Deno KV state: tests/cli/fencing_test.ts.)
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { subscriberHash } from "../../lib/mailchimp/member.ts";
import type { InboxEntry } from "../../lib/state/store.ts";
import { until } from "../_helpers/until.ts";
import { assertExactCopy, startWorld, T0, type World } from "../_helpers/world.ts";

const LIST = "list000014";
const HOUR = 3_600_000;

function event(world: World, type: string, ids: string[], action: string | null = null) {
  const entry: InboxEntry = {
    type,
    receivedAtMs: world.clock.now(),
    firedAtMs: world.clock.now(),
    action,
    memberIds: ids,
  };
  return world.store.inbox(LIST).append(entry, `${type}|${ids.join("+")}|${world.clock.now()}`);
}

function contact(world: World, id: string): Record<string, unknown> | undefined {
  return world.ometria.contacts(collectionFor(LIST)).get(id);
}

/** Lets requests already sent arrive and settle (real HTTP on loopback). */
async function settle(what: () => boolean, label: string): Promise<void> {
  await until(what, label, { timeoutMs: 5_000 });
}

Deno.test("a member deleted while an older push of it is in flight stays opted out", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 50, seed: 1, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const member = world.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;

    // A run pushes the member's edit; Ometria holds that request in flight.
    world.mailchimp.upsertMember(LIST, { email: member.email_address, FNAME: "Edited" });
    world.clock.set(world.clock.now() + 5_000);
    const held = world.ometria.holdPush((ids) => ids.includes(member.id));
    const run = service.runOnce(LIST);
    await held.arrived;
    // Meanwhile the member is deleted permanently and Mailchimp says so.
    world.mailchimp.deleteMember(LIST, member.email_address);
    const requestsBefore = world.mailchimp.stats.memberRequests;
    assert.equal(await event(world, "unsubscribe", [member.id], "delete"), "queued");
    await settle(() => world.mailchimp.stats.memberRequests > requestsBefore, "the 404");
    // Whatever the delete's opt-out does meanwhile, the held edit lands now.
    held.release();
    assert.equal((await run).outcome, "ok");
    await service.idle();

    assert.equal(contact(world, member.id)?.marketing_optin, "EXPLICITLY_OPTEDOUT");
    assertExactCopy(world, LIST);
    await service.close();
  } finally {
    await world.close();
  }
});

Deno.test("an older version held in flight never overwrites a newer one pushed after it", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 50, seed: 2, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const member = world.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;

    // A webhook reads version 1 and its push is held in flight.
    world.mailchimp.upsertMember(LIST, { email: member.email_address, FNAME: "Version1" });
    const held = world.ometria.holdPush((ids) => ids.includes(member.id));
    assert.equal(await event(world, "profile", [member.id]), "queued");
    await held.arrived;
    // Version 2 is made and polled while version 1 is still in flight.
    world.clock.set(world.clock.now() + 5_000);
    world.mailchimp.upsertMember(LIST, {
      email: member.email_address,
      FNAME: "Version2",
      status: "unsubscribed",
    });
    world.clock.set(world.clock.now() + 5_000);
    const reads = world.mailchimp.stats.membersRequests;
    const run = service.runOnce(LIST);
    await settle(() => world.mailchimp.stats.membersRequests > reads, "the run's read");
    held.release();
    assert.equal((await run).outcome, "ok");
    await service.idle();

    const now = contact(world, member.id)!;
    assert.equal(now.firstname, "Version2");
    assert.equal(now.marketing_optin, "EXPLICITLY_OPTEDOUT");
    // A forced run afterwards finds nothing to repair.
    world.clock.set(world.clock.now() + 5_000);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    assertExactCopy(world, LIST);
    await service.close();
  } finally {
    await world.close();
  }
});

Deno.test("a reconciliation keeps the ids webhooks add while it reads", async () => {
  let during = () => {};
  const world = await startWorld({ mailchimp: { onMembersRequest: () => during() } });
  try {
    world.mailchimp.addList(LIST, { members: 2_500, seed: 3, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const added: string[] = [];
    let n = 0;
    // While the reconciliation pages through the list, new members subscribe and their
    // webhooks are acted on.
    during = () => {
      if (n >= 3) return;
      const email = `joined.${n++}@example.com`;
      world.mailchimp.upsertMember(LIST, { email, FNAME: "Joined" });
      const id = subscriberHash(email);
      added.push(id);
      void event(world, "subscribe", [id]);
    };
    const [first] = await service.reconcile([LIST]);
    during = () => {};
    assert.equal(first?.outcome, "ok", first?.error);
    await service.idle();
    for (const id of added) {
      assert.equal(contact(world, id)?.marketing_optin, "EXPLICITLY_OPTEDIN", `${id} pushed`);
    }
    // Later they are deleted; only a ledger that kept them can opt them out.
    for (const [i] of added.entries()) {
      world.mailchimp.deleteMember(LIST, `joined.${i}@example.com`);
    }
    const [second] = await service.reconcile([LIST]);
    assert.equal(second?.outcome, "ok", second?.error);
    assert.equal(second?.summary?.orphans, added.length);
    for (const id of added) {
      assert.equal(contact(world, id)?.marketing_optin, "EXPLICITLY_OPTEDOUT");
    }
    assertExactCopy(world, LIST);
    await service.close();
  } finally {
    await world.close();
  }
});

Deno.test("a member that changes every second still reaches Ometria in the run that meets it", async () => {
  let everyRequest = () => {};
  const world = await startWorld({ mailchimp: { onMembersRequest: () => everyRequest() } });
  try {
    world.mailchimp.addList(LIST, { members: 1_500, seed: 4, lastChangedTo: T0 - HOUR });
    // A busy list: the first answer is full, so the window does not reach the present in it.
    const service = world.service([LIST], { pageSize: 200 });
    const busy = world.mailchimp.upsertMember(LIST, { email: "busy@example.com", FNAME: "v0" });
    let version = 0;
    everyRequest = () => {
      world.clock.set(world.clock.now() + 1_000);
      world.mailchimp.upsertMember(LIST, { email: "busy@example.com", FNAME: `v${++version}` });
    };
    for (let run = 0; run < 3; run++) {
      const result = await service.runOnce(LIST);
      assert.equal(result.outcome, "ok", result.error);
      const held = contact(world, busy.id);
      assert.ok(held !== undefined, `run ${run + 1}: the busy member is in Ometria`);
      // At least the version it had when the run's window closed (fresh_as_of).
      const pushedVersion = Number(String(held.firstname).slice(1));
      assert.ok(pushedVersion >= 1, `run ${run + 1}: version ${pushedVersion}`);
    }
    everyRequest = () => {};
    world.clock.set(world.clock.now() + 5_000);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    assertExactCopy(world, LIST);
    await service.close();
  } finally {
    await world.close();
  }
});

Deno.test("members past U on torn pages are pushed, not thrown away", async () => {
  let everyRequest = () => {};
  const world = await startWorld({
    // "stamp": the changed member shows in place with its new time, out of order, so every
    // answer is seen to be torn (a member moved to the end of a short page would not be).
    mailchimp: { onMembersRequest: () => everyRequest(), tornPageMode: "stamp" },
  });
  try {
    // Small enough that the first answer (no upper bound) holds the whole list.
    world.mailchimp.addList(LIST, { members: 50, seed: 5, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pageSize: 100 });
    const busy = world.mailchimp.upsertMember(LIST, { email: "busy@example.com", FNAME: "v0" });
    let version = 0;
    everyRequest = () => {
      world.clock.set(world.clock.now() + 1_000);
      world.mailchimp.upsertMember(LIST, { email: "busy@example.com", FNAME: `v${++version}` });
      world.mailchimp.tearPages(1);
    };
    // Every page torn: the run cannot prove its window, and says so…
    const torn = await service.runOnce(LIST);
    assert.equal(torn.outcome, "failed");
    // …but what it read past U went to Ometria all the same.
    assert.ok(contact(world, busy.id) !== undefined, "the busy member read past U is pushed");
    everyRequest = () => {};
    world.clock.set(world.clock.now() + 5_000);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    assertExactCopy(world, LIST);
    await service.close();
  } finally {
    await world.close();
  }
});
