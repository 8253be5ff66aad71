import assert from "node:assert/strict";
import type { TickEntry, TickResult } from "../../lib/scheduler/tick.ts";
import { assertInSync, startWorld, T0, type World } from "../_helpers/world.ts";

const SECOND = 1_000;
const MINUTE = 60_000;
const HOUR = 3_600_000;
const THRESHOLD_MS = 7_200 * SECOND; // the world's connections: 120 minutes

function entry(result: TickResult, id: string): TickEntry {
  const found = result.entries.filter((e) => e.id === id);
  assert.equal(found.length, 1, `one entry for ${id} in ${JSON.stringify(result.entries)}`);
  return found[0]!;
}

/** id → [ran, reason, outcome] for compact assertions. */
function summary(result: TickResult): Record<string, [boolean, string, string?]> {
  return Object.fromEntries(
    result.entries.map((
      e,
    ) => [e.id, e.ran ? [true, e.reason, e.result.outcome] : [false, e.reason]]),
  );
}

function membersRequests(world: World, listId: string): number {
  return world.mailchimp.stats.byPath.get(`/3.0/lists/${listId}/members`) ?? 0;
}

async function freshAsOf(world: World, id: string): Promise<number> {
  const state = await world.store.get(id);
  assert.ok(state?.fresh_as_of, `${id} has synced`);
  return Date.parse(state.fresh_as_of);
}

Deno.test("tick() runs never-synced lists, then only lists with more than BULK_MEMBER_COUNT changes", async () => {
  const queries: URLSearchParams[] = [];
  const world = await startWorld({
    mailchimp: { onMembersRequest: (_, q) => void queries.push(q) },
  });
  try {
    const lists = ["lista00001", "listb00002", "listc00003"];
    for (const [i, id] of lists.entries()) {
      world.mailchimp.addList(id, { members: 40, seed: i + 1, lastChangedTo: T0 - HOUR });
    }
    const service = world.service(lists, { bulkMemberCount: 10 });

    const first = await service.tick();
    assert.deepEqual(summary(first), {
      lista00001: [true, "never", "ok"],
      listb00002: [true, "never", "ok"],
      listc00003: [true, "never", "ok"],
    });
    assert.equal(first.failed, false);
    for (const id of lists) assertInSync(world, id);

    await world.clock.tick(5 * SECOND);
    world.mailchimp.changeMembers("lista00001", 3);
    world.mailchimp.changeMembers("listc00003", 11);
    await world.clock.tick(5 * SECOND);
    world.mailchimp.resetStats();
    world.ometria.resetStats();
    queries.length = 0;

    const second = await service.tick();
    assert.deepEqual(summary(second), {
      lista00001: [false, "fresh"],
      listb00002: [false, "fresh"],
      listc00003: [true, "bulk", "ok"],
    });
    // A list with few changes costs one small count request, and nothing at Ometria.
    assert.equal(membersRequests(world, "lista00001"), 1);
    assert.equal(membersRequests(world, "listb00002"), 1);
    const counts = queries.filter((q) => q.get("count") === "1");
    assert.equal(counts.length, 3, "one count request per list");
    for (const q of counts) assert.match(q.get("fields") ?? "", /^total_items$/);
    // Only the bulk list was pushed: its 11 changes, less any that left the record as it was.
    const bulk = second.entries.find((e) => e.id === "listc00003");
    assert.ok(bulk?.ran);
    assert.equal(bulk.result.pushed + bulk.result.unchanged, 11);
    assert.equal(world.ometria.stats.recordsReceived, bulk.result.pushed);
    assertInSync(world, "listc00003");
    assert.throws(() => assertInSync(world, "lista00001"), "its 3 changes wait for a later run");
  } finally {
    await world.close();
  }
});

Deno.test("tick() runs a list again as its lag approaches the threshold, with no change", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList("list000001", { members: 20, lastChangedTo: T0 - HOUR });
    const service = world.service(["list000001"]);
    assert.deepEqual(summary(await service.tick()), { list000001: [true, "never", "ok"] });
    const fresh = await freshAsOf(world, "list000001");

    // One bulk (1 minute) and one tick (60 s) before the threshold it must run.
    world.clock.set(fresh + THRESHOLD_MS - 2 * MINUTE - SECOND);
    assert.deepEqual(summary(await service.tick()), { list000001: [false, "fresh"] });
    world.clock.set(fresh + THRESHOLD_MS - 2 * MINUTE);
    world.ometria.resetStats();
    const lag = await service.tick();
    assert.deepEqual(summary(lag), { list000001: [true, "lag", "ok"] });
    assert.equal(world.ometria.stats.requests, 0, "nothing changed: nothing pushed");
    assert.ok(await freshAsOf(world, "list000001") > fresh, "freshness moved on");
  } finally {
    await world.close();
  }
});

Deno.test("tick() backs a failing list off 1, 2, then 4 minutes and never retries it early", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList("list000001", { members: 5, lastChangedTo: T0 - HOUR });
    const service = world.service(["list000001", "nolist0001"]);

    const first = await service.tick();
    assert.equal(first.failed, true);
    assert.equal(entry(first, "list000001").ran, true, "the other list still syncs");
    assertInSync(world, "list000001");
    let failed = entry(first, "nolist0001");
    assert.ok(failed.ran && failed.result.outcome === "failed");
    assert.equal(failed.reason, "never");

    for (const [failures, delayMinutes] of [[1, 1], [2, 2], [3, 4]] as const) {
      const state = await world.store.get("nolist0001");
      assert.equal(state?.status, "failed");
      assert.equal(state?.failures, failures);
      assert.match(state?.last_error ?? "", /nolist0001/);
      const retryAt = Date.parse(state!.retry_at!);
      // From when the failed run ended (the other list's run may move the clock on since).
      assert.equal(retryAt - Date.parse(state!.last_run!.finished_at), delayMinutes * MINUTE);

      world.clock.set(retryAt - SECOND);
      world.mailchimp.resetStats();
      const waiting = await service.tick();
      assert.deepEqual(entry(waiting, "nolist0001"), {
        id: "nolist0001",
        ran: false,
        reason: "backoff",
      });
      assert.equal(membersRequests(world, "nolist0001"), 0, "not asked before retry_at");

      world.clock.set(retryAt);
      const retried = await service.tick();
      failed = entry(retried, "nolist0001");
      assert.ok(failed.ran && failed.result.outcome === "failed", JSON.stringify(failed));
      assert.equal(failed.reason, "retry");
      assert.equal(retried.failed, true);
    }
    assert.equal((await world.store.get("nolist0001"))?.failures, 4);
  } finally {
    await world.close();
  }
});

Deno.test("tick() clears the backoff once a list that failed on Mailchimp faults succeeds", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList("list000001", { members: 30, lastChangedTo: T0 - HOUR });
    const service = world.service(["list000001"], { mailchimpRetryMaxSeconds: 5 });
    world.mailchimp.faults.set({ rate: 1, kinds: [503] });
    const failed = await service.tick();
    assert.deepEqual(summary(failed), { list000001: [true, "never", "failed"] });
    const state = await world.store.get("list000001");
    assert.equal(state?.failures, 1);
    const retryAt = Date.parse(state!.retry_at!);
    assert.equal(retryAt - world.clock.now(), MINUTE);

    world.mailchimp.faults.set({ rate: 0 });
    assert.deepEqual(summary(await service.tick()), { list000001: [false, "backoff"] });
    world.clock.set(retryAt);
    assert.deepEqual(summary(await service.tick()), { list000001: [true, "retry", "ok"] });
    const recovered = await world.store.get("list000001");
    assert.deepEqual([recovered?.status, recovered?.failures, recovered?.retry_at], [
      "ok",
      0,
      null,
    ]);
    assertInSync(world, "list000001");
  } finally {
    await world.close();
  }
});

Deno.test("tick() starts the connections closest to their threshold first, two at a time", async () => {
  let onRequest: (listId: string) => Promise<void> = () => Promise.resolve();
  const world = await startWorld({ mailchimp: { onMembersRequest: (id) => onRequest(id) } });
  try {
    const lists = [
      "list00000a",
      "list00000b",
      "list00000c",
      "list00000d",
      "list00000e",
      "list00000f",
    ];
    for (const id of lists) world.mailchimp.addList(id, { members: 5, lastChangedTo: T0 - HOUR });
    const service = world.service(lists, { maxConcurrentRuns: 2 });
    // Synced one minute apart, in an order unlike the ids': the first synced is least fresh.
    const bySyncTime = [
      "list00000d",
      "list00000b",
      "list00000f",
      "list00000a",
      "list00000e",
      "list00000c",
    ];
    for (const [i, id] of bySyncTime.entries()) {
      world.clock.set(T0 + i * MINUTE);
      assert.equal((await service.runOnce(id)).outcome, "ok");
    }
    world.clock.set(T0 + 5 * MINUTE + THRESHOLD_MS);

    const started: string[] = [];
    // Lists with a request in flight (a run may have two at once: its archived and main
    // passes), and the most at any moment: what "two at a time" is about.
    const inFlight = new Map<string, number>();
    let maxActive = 0;
    onRequest = async (id) => {
      started.push(id);
      inFlight.set(id, (inFlight.get(id) ?? 0) + 1);
      maxActive = Math.max(maxActive, inFlight.size);
      // A few turns of the event loop (no time passes), so that runs overlap when the
      // scheduler lets them.
      for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
      const left = inFlight.get(id)! - 1;
      if (left === 0) inFlight.delete(id);
      else inFlight.set(id, left);
    };
    const result = await service.tick();
    assert.equal(result.entries.length, 6);
    for (const e of result.entries) assert.deepEqual([e.ran, e.reason], [true, "lag"]);
    // The first request of each list shows the order runs started (a run of a list whose
    // listing has not shown an archived member yet also reads the archived ones first).
    const order = started.filter((id, i) => started.indexOf(id) === i);
    assert.equal(order.length, 6);
    const pairs = [0, 2, 4].map((i) => order.slice(i, i + 2).sort());
    assert.deepEqual(pairs, [
      ["list00000b", "list00000d"],
      ["list00000a", "list00000f"],
      ["list00000c", "list00000e"],
    ]);
    assert.equal(maxActive, 2);
  } finally {
    await world.close();
  }
});

Deno.test("tick() starts nothing once the stop signal is aborted", async () => {
  const world = await startWorld();
  try {
    for (const id of ["list000001", "list000002"]) world.mailchimp.addList(id, { members: 5 });
    const service = world.service(["list000001", "list000002"]);
    const stop = new AbortController();
    stop.abort(new Error("SIGTERM received"));
    const result = await service.tick({ signal: stop.signal });
    assert.equal(result.entries.filter((e) => e.ran).length, 0);
    assert.equal(world.mailchimp.stats.requests, 0);
    assert.deepEqual(await world.store.list(), []);
  } finally {
    await world.close();
  }
});

Deno.test("tick() skips a connection held elsewhere", async () => {
  const world = await startWorld();
  try {
    for (const id of ["list000001", "list000002"]) world.mailchimp.addList(id, { members: 5 });
    const service = world.service(["list000001", "list000002"]);
    const lease = await world.store.acquire("list000001");
    assert.ok(lease);
    const held = await service.tick();
    assert.deepEqual(summary(held), {
      list000001: [false, "held-elsewhere"],
      list000002: [true, "never", "ok"],
    });
    assert.equal(held.failed, false);
    assert.equal(membersRequests(world, "list000001"), 0);
    assert.equal(await world.store.get("list000001"), undefined);

    await lease.release();
    assert.deepEqual(summary(await service.tick()).list000001, [true, "never", "ok"]);
    assertInSync(world, "list000001");
  } finally {
    await world.close();
  }
});

Deno.test("tick() counts the connections a stop signal kept from running in its summary", async () => {
  const world = await startWorld();
  const { captureLogs } = await import("../freshness/_helpers.ts");
  using logs = captureLogs();
  try {
    const ids = Array.from({ length: 30 }, (_, i) => `list${String(i).padStart(6, "0")}`);
    for (const id of ids) world.mailchimp.addList(id, { members: 3 });
    const stop = new AbortController();
    const service = world.service(ids, {
      logger: logs.logger,
      maxConcurrentRuns: 2,
      reconcileEveryHours: 0,
      // SIGTERM while the first runs are in flight.
      onRunFinished: () => stop.abort(new Error("SIGTERM received")),
    });
    const result = await service.tick({ signal: stop.signal });
    const ran = result.entries.filter((e) => e.ran).length;
    assert.ok(ran >= 1 && ran <= 2, `${ran} ran`);
    assert.equal(result.entries.length, 30, "every connection has an entry");
    const stopped = result.entries.filter((e) => !e.ran && e.reason === "stopped").length;
    assert.equal(stopped, 30 - ran);
    const line = logs.records.map((r) => r.message.join("")).find((m) => m.startsWith("Tick:"));
    assert.equal(
      line,
      `Tick: ${ran} run(s) (0 failed) of 30 connection(s); ${30 - ran} not run (stopped: ${
        30 - ran
      })`,
    );
  } finally {
    await world.close();
  }
});
