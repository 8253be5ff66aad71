import assert from "node:assert/strict";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import type { ConnectionState } from "../../lib/state/schema.ts";
import type { StateStore } from "../../lib/state/store.ts";
import { assertInSync, startWorld, T0 } from "../_helpers/world.ts";

const LIST = "list000001";
const HOUR = 3_600_000;

Deno.test("runConnection() copies a whole list, then only what changed", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 2_500, seed: 1, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pageSize: 1000 });

    const full = await service.runOnce(LIST);
    assert.equal(full.outcome, "ok");
    assert.equal(full.read, 2_500);
    assert.equal(full.pushed, 2_500, "nothing is pushed twice in a clean run");
    assert.equal(world.ometria.stats.recordsReceived, 2_500);
    assertInSync(world, LIST);
    const state = await world.store.get(LIST);
    assert.equal(state?.fresh_as_of, full.upper);
    assert.equal(state?.run, null);

    world.clock.set(T0 + 10_000);
    world.mailchimp.resetStats();
    world.ometria.resetStats();
    const idle = await service.runOnce(LIST);
    assert.equal(idle.outcome, "ok");
    assert.equal(world.mailchimp.stats.requests, 1, "nothing changed: one Mailchimp request");
    assert.equal(world.ometria.stats.requests, 0, "nothing changed: no Ometria request");
    assert.ok(Date.parse(idle.upper!) > Date.parse(full.upper!), "freshness moves on");

    const changed = world.mailchimp.changeMembers(LIST, 25, 9);
    world.clock.set(T0 + 20_000);
    world.ometria.resetStats();
    const some = await service.runOnce(LIST);
    assert.equal(some.read, changed.length);
    // A change that leaves the mapped record as it was (a name drawn again) is not sent.
    assert.equal(some.pushed + some.unchanged, changed.length);
    assert.equal(world.ometria.stats.recordsReceived, some.pushed);
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

for (const sinceInclusive of [true, false]) {
  for (const beforeInclusive of [true, false]) {
    for (const tieOrder of ["insertion", "random"] as const) {
      Deno.test(
        `runConnection() reads ties larger than a page (since ${
          sinceInclusive ? "inclusive" : "exclusive"
        }, before ${beforeInclusive ? "inclusive" : "exclusive"}, ${tieOrder} order)`,
        async () => {
          const world = await startWorld({
            mailchimp: { sinceInclusive, beforeInclusive, tieOrder },
          });
          try {
            world.mailchimp.addList(LIST, {
              members: 300,
              seed: 2,
              lastChangedTo: T0 - 3 * HOUR,
              tieGroups: [
                { at: T0 - 2 * HOUR, size: 2_300 },
                { at: T0 - 2 * HOUR + 1000, size: 150 },
                { at: T0 - HOUR, size: 1_000 },
              ],
            });
            const service = world.service([LIST], { pageSize: 1000 });
            const result = await service.runOnce(LIST);
            assert.equal(result.outcome, "ok", result.error);
            assert.equal(result.read, 3_750);
            assertInSync(world, LIST);

            // A second window that starts inside a tie's second still misses nobody.
            world.clock.set(T0 + 5_000);
            world.mailchimp.changeMembers(LIST, 40, 4);
            world.clock.set(T0 + 8_000);
            const again = await service.runOnce(LIST);
            assert.equal(again.outcome, "ok", again.error);
            assertInSync(world, LIST);
          } finally {
            await world.close();
          }
        },
      );
    }
  }
}

Deno.test("runConnection() misses nobody when members change and join while it reads", async () => {
  let churn = () => {};
  const world = await startWorld({ mailchimp: { onMembersRequest: () => churn() } });
  try {
    world.mailchimp.addList(LIST, { members: 3_000, seed: 3, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pageSize: 200 });
    // Before every page some members change (they leave the window: their new last_changed
    // is after U) and new ones join: the case that makes offset paging skip members.
    let n = 0;
    churn = () => {
      world.clock.set(world.clock.now() + 1_000);
      world.mailchimp.changeMembers(LIST, 7, 100 + n);
      world.mailchimp.upsertMember(LIST, { email: `new.${n++}@example.com`, FNAME: "New" });
    };
    const first = await service.runOnce(LIST);
    churn = () => {};
    assert.equal(first.outcome, "ok", first.error);
    assert.ok(n >= 15, `members changed during ${n} requests`);
    // Everything changed before U is in Ometria.
    const upper = Date.parse(first.upper!);
    const contacts = world.ometria.contacts(`mailchimp-${LIST}`);
    const missing = world.mailchimp.truth(LIST).filter((m) =>
      Date.parse(m.last_changed) < upper && !contacts.has(m.id)
    );
    assert.equal(missing.length, 0);

    world.clock.set(world.clock.now() + 5_000);
    const second = await service.runOnce(LIST);
    assert.equal(second.outcome, "ok", second.error);
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() completes through 5% faults on both APIs", async () => {
  const world = await startWorld({
    mailchimp: {
      faults: { rate: 0.05, kinds: [429, 500, 503, "drop", "slow", 403], seed: 5, slowMs: 90_000 },
    },
    ometria: { faults: { rate: 0.05, kinds: [429, 500, 503, "drop", "slow"], seed: 6 } },
  });
  try {
    world.mailchimp.addList(LIST, { members: 4_000, seed: 4, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pageSize: 250 });
    const result = await service.runOnce(LIST);
    assert.equal(result.outcome, "ok", result.error);
    assert.ok(world.mailchimp.faults.injected.size > 0 && world.ometria.faults.injected.size > 0);
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() rides out a 429 storm and keeps Mailchimp within 10 connections", async () => {
  const world = await startWorld({ mailchimp: { latencyMs: 20 } });
  try {
    world.mailchimp.addList(LIST, { members: 1_500, seed: 5, lastChangedTo: T0 - HOUR });
    world.mailchimp.faults.queue(...Array<429>(6).fill(429));
    world.ometria.faults.queue(...Array<429>(6).fill(429));
    const service = world.service([LIST], { pageSize: 100 });
    const result = await service.runOnce(LIST);
    assert.equal(result.outcome, "ok", result.error);
    assert.ok(world.mailchimp.stats.maxInFlight <= 10);
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() resumes an interrupted run from its checkpoint", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 3_000, seed: 6, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pageSize: 500, pushConcurrency: 1 });
    const hard = new AbortController();
    let pushes = 0;
    world.ometria.setOptions({
      reject: () => {
        if (++pushes === 1_234) hard.abort(new Error("crash"));
        return undefined;
      },
    });
    const interrupted = await service.runOnce(LIST, undefined, hard.signal);
    assert.equal(interrupted.outcome, "aborted");
    const state = await world.store.get(LIST);
    assert.ok(state?.run?.cursor, "a checkpoint was recorded");
    assert.equal(state?.watermark, null);
    world.ometria.setOptions({ reject: undefined });

    world.ometria.resetStats();
    const resumed = await service.runOnce(LIST);
    assert.equal(resumed.outcome, "ok", resumed.error);
    const resent = world.ometria.stats.recordsReceived;
    // Its summary counts what it read itself, not what the interrupted run had read.
    assert.ok(resumed.read <= 3_000 - 1_200 + 200, `read ${resumed.read}`);
    assert.ok(
      // Batch 13 was in flight; up to a batch of members read but still waiting to fill a
      // batch had never been sent and are sent now.
      resent <= 3_000 - 1_200 + 200,
      `acknowledged batches are not pushed again (pushed ${resent})`,
    );
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() remembers at its first checkpoint that the listing holds archived members", async () => {
  // A first run reads archived members on their own until the listing shows some. A run
  // killed after that must not make its restart read them on their own again: each crash
  // would re-send every archived member past the cursor.
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 3_000, seed: 6, lastChangedTo: T0 - HOUR });
    const archived = world.mailchimp.truth(LIST).filter((m) => m.status === "archived").length;
    assert.ok(archived > 100, `the list has archived members (${archived})`);
    const hard = new AbortController();
    let pushes = 0;
    // A SIGKILL: what the store held at that moment is all the restart finds (an aborted
    // run would record more on its way out).
    let atKill: Promise<ConnectionState | undefined> | undefined;
    world.ometria.setOptions({
      reject: () => {
        if (++pushes === archived + 1_200) {
          atKill = world.store.get(LIST);
          hard.abort(new Error("crash"));
        }
        return undefined;
      },
    });
    const first = world.service([LIST], { pageSize: 500, pushConcurrency: 1 });
    assert.equal((await first.runOnce(LIST, undefined, hard.signal)).outcome, "aborted");
    const state = await atKill;
    await world.store.update(LIST, () => state);
    assert.ok(state?.run?.cursor, "a checkpoint was recorded");
    assert.equal(state?.archived_in_listing, true);
    world.ometria.setOptions({ reject: undefined });

    // A new process: only the store remembers.
    const archivedRequests: string[] = [];
    const restarted = world.service([LIST], {
      pageSize: 500,
      fetch: (input, init) => {
        const url = input instanceof Request ? input.url : String(input);
        if (new URL(url).searchParams.get("status") === "archived") archivedRequests.push(url);
        return fetch(input, init);
      },
    });
    world.ometria.resetStats();
    const resumed = await restarted.runOnce(LIST);
    assert.equal(resumed.outcome, "ok", resumed.error);
    assert.deepEqual(archivedRequests, [], "no separate pass over archived members");
    assert.ok(
      world.ometria.stats.recordsReceived <= 3_000 - 1_200 + 200,
      `re-sent ${world.ometria.stats.recordsReceived}`,
    );
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

for (const archivedInDefaultListing of [false, true]) {
  Deno.test(
    `runConnection() never checkpoints past an archived member Ometria lacks (archived ${
      archivedInDefaultListing ? "in" : "not in"
    } the default listing)`,
    async () => {
      // The archived pass runs beside the main pass, which leaves archived members out: the
      // cursor must wait for it. Snapshots of the store taken while Ometria receives records
      // are what a crash at that moment would leave.
      const world = await startWorld({ mailchimp: { archivedInDefaultListing } });
      try {
        world.mailchimp.addList(LIST, {
          members: 2_000,
          seed: 8,
          lastChangedFrom: T0,
          lastChangedTo: T0 + HOUR,
        });
        for (let i = 0; i < 2_000; i++) {
          world.clock.set(T0 + i * 1_800);
          world.mailchimp.upsertMember(LIST, { email: `gone${i}@example.com`, status: "archived" });
        }
        world.clock.set(T0 + HOUR + 10_000);
        const archived = world.mailchimp.truth(LIST).filter((m) => m.status === "archived");
        let received = 0;
        let snapshots = 0;
        const problems: string[] = [];
        world.ometria.setOptions({
          reject: () => {
            if (++received % 50 === 0) {
              // Both read at this instant: the store's state and what Ometria holds.
              const state = world.store.get(LIST);
              const held = new Set(world.ometria.contacts(`mailchimp-${LIST}`).keys());
              void state.then((s) => {
                if (!s?.run?.cursor) return;
                snapshots++;
                const cursor = Date.parse(s.run.cursor);
                const lost = archived.filter((m) =>
                  Date.parse(m.last_changed) < cursor && !held.has(m.id)
                );
                if (lost.length > 0) problems.push(`${s.run.cursor}: ${lost.length} missing`);
              });
            }
            return undefined;
          },
        });
        const service = world.service([LIST], { pageSize: 100 });
        const result = await service.runOnce(LIST);
        assert.equal(result.outcome, "ok", result.error);
        assert.deepEqual(problems, [], "a checkpoint passed archived members not in Ometria");
        assert.ok(snapshots > 20, `${snapshots} checkpoints looked at`);
        assertInSync(world, LIST);
      } finally {
        await world.close();
      }
    },
  );
}

Deno.test("runConnection() with one reader reads archived members first, then the rest, and completes", async () => {
  // The archived pass holds the only reader: the main pass must start when it ends, and the
  // run must wait for it (found by review: it ran on after the run had recorded its end).
  const world = await startWorld({ mailchimp: { archivedInDefaultListing: false } });
  try {
    world.mailchimp.addList(LIST, { members: 3_000, seed: 1, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pageSize: 500, readSlices: 1 });
    const result = await service.runOnce(LIST);
    assert.equal(result.outcome, "ok", result.error);
    assert.equal(result.completed, true);
    const state = await world.store.get(LIST);
    assert.equal(state?.watermark, result.upper);
    assert.equal(world.ometria.stats.recordsReceived, 3_000);
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() keeps a hold whose write failed for the run's last write", async () => {
  // Fault injection at the store's edge, as the simulators do at the APIs': the first write
  // that adds to the quarantine fails once (a full disk that is freed). The held member must
  // still be on disk before any cursor past it is (found by review: it was lost).
  const inner = new MemoryStore();
  let failed = false;
  const store: StateStore = {
    kind: inner.kind,
    location: inner.location,
    get: (id) => inner.get(id),
    list: () => inner.list(),
    ledger: (id) => inner.ledger(id),
    inbox: (id) => inner.inbox(id),
    onInboxAppended: (wake, signal) => inner.onInboxAppended(wake, signal),
    pendingInboxes: () => inner.pendingInboxes(),
    flush: () => inner.flush(),
    acquire: (id) => inner.acquire(id),
    close: () => inner.close(),
    update: (id, fn, fence) =>
      inner.update(id, (current) => {
        const next = fn(current);
        if (!failed && next && next.quarantine.length > (current?.quarantine.length ?? 0)) {
          failed = true;
          throw new Error("No space left on device (once)");
        }
        return next;
      }, fence),
  };
  const world = await startWorld({
    store,
    ometria: { reject: (r) => r.email === "bad@example.com" ? "bad email" : undefined },
  });
  try {
    world.mailchimp.addList(LIST, { members: 1_000, seed: 1, lastChangedTo: T0 - HOUR });
    world.clock.set(T0 + 1_000);
    world.mailchimp.upsertMember(LIST, { email: "bad@example.com" });
    world.clock.set(T0 + 2_000);
    for (let i = 0; i < 300; i++) {
      world.mailchimp.upsertMember(LIST, { email: `after${i}@example.com` });
    }
    world.clock.set(T0 + 10_000);
    const service = world.service([LIST], { pageSize: 1000, pushConcurrency: 1 });
    const first = await service.runOnce(LIST);
    assert.equal(first.outcome, "failed");
    assert.ok(failed, "the write failed once");
    const bad = world.mailchimp.truth(LIST).find((m) => m.email_address === "bad@example.com")!;
    const state = await world.store.get(LIST);
    const cursor = state?.run?.cursor ?? state?.watermark;
    if (cursor && Date.parse(cursor) > Date.parse(bad.last_changed)) {
      assert.ok(state!.quarantine.some((e) => e.id === bad.id), "passed, so held on disk");
    }
    world.ometria.setOptions({ reject: undefined });
    world.clock.set(T0 + 20_000);
    const second = await service.runOnce(LIST);
    assert.equal(second.outcome, "ok", second.error);
    assert.ok(world.ometria.contacts(`mailchimp-${LIST}`).has(bad.id), "delivered in the end");
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() reports rejected records naming the batch", async () => {
  const world = await startWorld({
    ometria: { reject: (r) => (String(r.email).startsWith("a") ? "bad email" : undefined) },
  });
  try {
    world.mailchimp.addList(LIST);
    world.mailchimp.upsertMember(LIST, { email: "ann@example.com" });
    world.mailchimp.upsertMember(LIST, { email: "bob@example.com" });
    world.clock.set(T0 + 5_000);
    const result = await world.service([LIST]).runOnce(LIST);
    assert.equal(result.outcome, "failed");
    assert.equal(result.rejected, 1);
    assert.match(result.error!, /member\(s\) quarantined/);
    const held = (await world.store.get(LIST))!.quarantine;
    assert.ok(held.some((e) => e.reason.includes("bad email")), JSON.stringify(held));
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() fails cleanly on a wrong key and an unknown list", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 10 });
    const badKey = world.service([]);
    const wrong =
      new (badKey.constructor as typeof import("../../lib/app/sync_service.ts").SyncService)({
        connections: [world.connection(LIST, {
          mailchimp: { apiKey: "nope-us1", baseUrl: world.mailchimp.url },
        })],
        store: world.store,
        clock: world.clock,
        logger: (await import("../../lib/log/logging.ts")).quietLogger(),
      });
    const denied = await wrong.runOnce(LIST);
    assert.equal(denied.outcome, "failed");
    assert.match(denied.error!, /Mailchimp rejected the API key \(401\)/);

    const unknown = await world.service(["nolist0001"]).runOnce("nolist0001");
    assert.equal(unknown.outcome, "failed");
    assert.match(unknown.error!, /nolist0001/);
    assert.match(unknown.error!, /check the list id/);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() syncs archiving when Mailchimp leaves archived members out of its listing", async () => {
  const world = await startWorld({ mailchimp: { archivedInDefaultListing: false } });
  try {
    world.mailchimp.addList(LIST);
    world.mailchimp.upsertMember(LIST, { email: "ann@example.com", status: "subscribed" });
    world.mailchimp.upsertMember(LIST, { email: "bob@example.com", status: "subscribed" });
    world.clock.set(T0 + 5_000);
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    world.mailchimp.upsertMember(LIST, { email: "ann@example.com", status: "archived" });
    world.clock.set(T0 + 10_000);
    const second = await service.runOnce(LIST);
    assert.equal(second.outcome, "ok", second.error);
    const ann = [...world.ometria.contacts(`mailchimp-${LIST}`).values()]
      .find((c) => c.email === "ann@example.com");
    assert.equal(ann?.marketing_optin, "NOT_SPECIFIED");
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() stops on a missing Date header rather than trust another clock", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 20, lastChangedTo: T0 - HOUR });
    // A proxy that drops the Date header on the way back.
    const noDate: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      const headers = new Headers(response.headers);
      headers.delete("date");
      return new Response(response.body, { status: response.status, headers });
    };
    const result = await world.service([LIST], { fetch: noDate }).runOnce(LIST);
    assert.equal(result.outcome, "failed");
    assert.match(result.error!, /no Date header/);
    assert.equal((await world.store.get(LIST))?.watermark, null);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() stops between batches on a graceful stop and resumes from there", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 1_000, seed: 8, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pushConcurrency: 1 });
    const stop = new AbortController();
    let batches = 0;
    world.ometria.setOptions({
      reject: () => {
        if (++batches === 150) stop.abort();
        return undefined;
      },
    });
    const stopped = await service.runOnce(LIST, stop.signal);
    assert.equal(stopped.outcome, "aborted");
    assert.ok(world.ometria.stats.recordsReceived <= 200, "no batch starts after the stop");
    world.ometria.setOptions({ reject: undefined });
    const resumed = await service.runOnce(LIST);
    assert.equal(resumed.outcome, "ok", resumed.error);
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});
