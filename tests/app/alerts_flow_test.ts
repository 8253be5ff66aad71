/**
 * Freshness end to end: the real service, the simulators, the alert manager and a webhook
 * receiver, on the fake clock.
 */
import assert from "node:assert/strict";
import { AlertManager } from "../../lib/freshness/alerts.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { assertInSync, startWorld, type World } from "../_helpers/world.ts";
import { startReceiver } from "../freshness/_helpers.ts";

const MINUTE = 60_000;
const LIST = "alert00001";

function alertsFor(world: World, webhookUrl: string) {
  return new AlertManager({
    clock: world.clock,
    logger: quietLogger(),
    webhookUrl,
    repeatMinutes: 240,
  });
}

Deno.test("a connection kept failing alerts exactly once, then sends recovered", async () => {
  const world = await startWorld();
  const receiver = startReceiver("ok");
  const alerts = alertsFor(world, receiver.url);
  try {
    world.mailchimp.addList(LIST, { members: 20, lastChangedTo: world.clock.now() - MINUTE });
    const service = world.service([LIST], {
      alerts,
      tickSeconds: 60,
      connections: [world.connection(LIST, { thresholdSeconds: 30 * 60 })],
    });
    const tickAt = async (ms: number) => {
      world.clock.set(ms);
      return await service.tick();
    };
    const start = world.clock.now();
    assert.equal((await tickAt(start)).failed, false);

    // Mailchimp fails every request from now on: each run gives up and backs off.
    world.mailchimp.faults.set({ rate: 1, kinds: [503] });
    for (let minute = 1; minute <= 90; minute++) await tickAt(start + minute * MINUTE);
    await alerts.drain();
    assert.deepEqual(receiver.bodies.map((b) => b.event), ["connection.behind"]);
    const behind = receiver.bodies[0]!;
    assert.equal(behind.connection, LIST);
    assert.equal(behind.threshold_seconds, 1800);
    assert.ok((behind.lag_seconds as number) > 1800);
    assert.match(String(behind.last_error), /503/);

    world.mailchimp.faults.set({ rate: 0 });
    for (let minute = 91; minute <= 130; minute++) await tickAt(start + minute * MINUTE);
    await alerts.drain();
    assert.deepEqual(receiver.bodies.map((b) => b.event), [
      "connection.behind",
      "connection.recovered",
    ]);
    assertInSync(world, LIST);

    // A restart during a new incident does not alert again before the reminder interval.
    world.mailchimp.faults.set({ rate: 1, kinds: [503] });
    for (let minute = 131; minute <= 200; minute++) await tickAt(start + minute * MINUTE);
    await alerts.drain();
    assert.equal(receiver.bodies.length, 3);
    const restarted = alertsFor(world, receiver.url);
    try {
      const again = world.service([LIST], {
        alerts: restarted,
        connections: [world.connection(LIST, { thresholdSeconds: 30 * 60 })],
      });
      world.clock.set(start + 201 * MINUTE);
      await again.tick();
      await restarted.drain();
      assert.equal(receiver.bodies.length, 3, "no second alert after a restart");
    } finally {
      await restarted.close();
    }
  } finally {
    await alerts.close();
    await receiver.close();
    await world.close();
  }
});

Deno.test("1,000 connections with 5% transient faults never raise a false alarm", async () => {
  const world = await startWorld({
    mailchimp: { faults: { rate: 0.05, kinds: [429, 500, 503, "drop"], seed: 3 } },
    ometria: { faults: { rate: 0.05, kinds: [429, 500, 503, "drop"], seed: 4 } },
  });
  const receiver = startReceiver("ok");
  const alerts = alertsFor(world, receiver.url);
  try {
    const ids = Array.from({ length: 1_000 }, (_, i) => `many${String(i).padStart(6, "0")}`);
    for (const [i, id] of ids.entries()) {
      world.mailchimp.addList(id, {
        members: 3,
        seed: i,
        lastChangedTo: world.clock.now() - MINUTE,
      });
    }
    const service = world.service(ids, {
      alerts,
      maxConcurrentRuns: 10,
      tickSeconds: 600,
    });
    const start = world.clock.now();
    for (let tick = 0; tick <= 18; tick++) {
      world.clock.set(start + tick * 10 * MINUTE);
      if (tick % 6 === 3) world.mailchimp.changeMembers(ids[tick]!, 2, tick);
      await service.tick();
    }
    await alerts.drain();
    assert.ok(world.mailchimp.faults.injected.size > 0, "faults happened");
    assert.deepEqual(receiver.bodies, [], "no alert");
  } finally {
    await alerts.close();
    await receiver.close();
    await world.close();
  }
});

Deno.test("syncing goes on while the webhook receiver is down", async () => {
  const world = await startWorld();
  const receiver = startReceiver("ok");
  const deadUrl = receiver.url;
  await receiver.close();
  const alerts = alertsFor(world, deadUrl);
  try {
    world.mailchimp.addList(LIST, { members: 50, lastChangedTo: world.clock.now() - MINUTE });
    const service = world.service([LIST], {
      alerts,
      connections: [world.connection(LIST, { thresholdSeconds: 60 })],
    });
    // Never synced for 10 minutes against a 1-minute threshold: behind, so it alerts (to a
    // dead receiver) and still syncs.
    const state = await world.store.get(LIST);
    assert.equal(state, undefined);
    world.clock.set(world.clock.now() + 10 * MINUTE);
    const result = await service.tick();
    assert.equal(result.failed, false);
    assertInSync(world, LIST);
    assert.equal(await alerts.drain(AbortSignal.timeout(5_000)), true);
  } finally {
    await alerts.close();
    await world.close();
  }
});

Deno.test("a connection that never synced counts its lag from its first attempt, across restarts", async () => {
  const world = await startWorld();
  const receiver = startReceiver("ok");
  try {
    const connection = world.connection(LIST, {
      thresholdSeconds: 30 * 60,
      mailchimp: { apiKey: "wrong-us1", baseUrl: world.mailchimp.url },
    });
    world.mailchimp.addList(LIST, { members: 5 });
    const start = world.clock.now();
    const first = alertsFor(world, receiver.url);
    await world.service([LIST], { alerts: first, connections: [connection] }).tick();
    await first.close();
    assert.equal(receiver.bodies.length, 0, "not behind yet");

    // A new process 40 minutes later: it has never seen the connection itself.
    world.clock.set(start + 40 * MINUTE);
    const second = alertsFor(world, receiver.url);
    try {
      await world.service([LIST], { alerts: second, connections: [connection] }).tick();
      await second.drain();
      assert.deepEqual(receiver.bodies.map((b) => b.event), ["connection.behind"]);
      assert.match(String(receiver.bodies[0]!.last_error), /rejected the API key/);
    } finally {
      await second.close();
    }
  } finally {
    await receiver.close();
    await world.close();
  }
});

Deno.test("an alert recorded while a long run is in progress is not undone by that run", async () => {
  let during: () => Promise<void> = () => Promise.resolve();
  const world = await startWorld({ mailchimp: { onMembersRequest: () => during() } });
  const receiver = startReceiver("ok");
  const alerts = alertsFor(world, receiver.url);
  try {
    world.mailchimp.addList(LIST, { members: 3_000, lastChangedTo: world.clock.now() - MINUTE });
    const service = world.service([LIST], { alerts, pageSize: 200 });
    assert.equal((await service.runOnce(LIST)).outcome, "ok");

    // Three hours later (threshold two), many members changed: the next run is long, and
    // the daemon evaluates freshness on every skipped cron tick while it goes on.
    world.clock.set(world.clock.now() + 3 * 60 * MINUTE);
    for (let second = 0; second < 10; second++) {
      world.mailchimp.changeMembers(LIST, 250, second);
      world.clock.set(world.clock.now() + 1_000);
    }
    world.clock.set(world.clock.now() + 5_000);
    let evaluations = 0;
    during = async () => {
      evaluations++;
      await service.evaluateFreshness();
    };
    const long = await service.runOnce(LIST);
    during = () => Promise.resolve();
    assert.equal(long.outcome, "ok");
    assert.ok(evaluations >= 10);
    await alerts.drain();
    assert.deepEqual(receiver.bodies.map((b) => b.event), ["connection.behind"]);

    await service.evaluateFreshness();
    await alerts.drain();
    assert.deepEqual(receiver.bodies.map((b) => b.event), [
      "connection.behind",
      "connection.recovered",
    ]);
  } finally {
    await alerts.close();
    await receiver.close();
    await world.close();
  }
});
