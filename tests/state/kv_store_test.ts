import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { DEFAULT_LEASE_MS, KvStore } from "../../lib/state/kv_store.ts";
import { record } from "../../lib/state/transitions.ts";
import { StateError } from "../../lib/state/store.ts";
import { put, sampleState, withTempDir } from "./_helpers.ts";

const LEASE_MS = 60_000;

Deno.test("KvStore round-trips connection state", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    const store = await KvStore.open(path, { clock: new FakeClock() });
    assert.equal(store.kind, "kv");
    assert.equal(await store.get("a"), undefined);
    await put(store, sampleState("b"));
    await put(store, sampleState("a"));
    await store.flush();
    await store.close();

    const again = await KvStore.open(path, { clock: new FakeClock() });
    assert.deepEqual(await again.get("a"), sampleState("a"));
    assert.deepEqual((await again.list()).map((s) => s.id), ["a", "b"]);
    await again.close();
  });
});

Deno.test("KvStore reports a damaged connection state as StateError", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    const kv = await Deno.openKv(path);
    await kv.set(["connections", "a"], { id: "a", watermark: 5 });
    kv.close();
    const store = await KvStore.open(path, { clock: new FakeClock() });
    const error = await store.get("a").then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof StateError);
    assert.match(error.message, /connection a .* is damaged: list_id: .*; watermark:/);
    await store.close();
  });
});

Deno.test("KvStore lets only one of two stores on one database hold a connection", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    const clock = new FakeClock();
    const one = await KvStore.open(path, { clock, leaseMs: LEASE_MS });
    const two = await KvStore.open(path, { clock, leaseMs: LEASE_MS });

    const [a, b] = await Promise.all([one.acquire("c1"), two.acquire("c1")]);
    assert.equal([a, b].filter((l) => l !== undefined).length, 1, "exactly one wins a race");
    const lease = a ?? b;
    assert.ok(lease);
    const [holder, other] = a ? [one, two] : [two, one];

    assert.equal(await other.acquire("c1"), undefined);
    assert.equal(await holder.acquire("c1"), undefined, "not twice in one process either");
    assert.ok(await other.acquire("c2"), "other connections stay free");

    await lease.release();
    await lease.release();
    const taken = await other.acquire("c1");
    assert.ok(taken, "a released lease can be taken");
    assert.equal(await holder.acquire("c1"), undefined);

    await one.close();
    await two.close();
  });
});

Deno.test("KvStore renews a held lease so it does not expire", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    const clock = new FakeClock();
    const holder = await KvStore.open(path, { clock, leaseMs: LEASE_MS });
    const other = await KvStore.open(path, { clock, leaseMs: LEASE_MS });
    const lease = await holder.acquire("c1");
    assert.ok(lease);
    // Three lease lengths, with a renewal every third of one.
    for (let i = 0; i < 9; i++) {
      await clock.tick(LEASE_MS / 3);
      // Let the renewal's KV round trip finish before time moves on.
      for (let j = 0; j < 20; j++) await new Promise((r) => setTimeout(r, 1));
    }
    assert.equal(await other.acquire("c1"), undefined);
    await lease.release();
    assert.equal(clock.pendingTimers, 0, "release stops the renewal timer");
    await holder.close();
    await other.close();
  });
});

Deno.test("KvStore takes over a lease whose holder stopped renewing", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    // The holder's clock never moves, so it never renews: a hung or dead process.
    const stuck = new FakeClock();
    const clock = new FakeClock();
    const dead = await KvStore.open(path, { clock: stuck, leaseMs: LEASE_MS });
    const alive = await KvStore.open(path, { clock, leaseMs: LEASE_MS });
    const old = await dead.acquire("c1");
    assert.ok(old);

    await clock.tick(LEASE_MS - 1);
    assert.equal(await alive.acquire("c1"), undefined, "not before it expires");
    await clock.tick(2);
    const lease = await alive.acquire("c1");
    assert.ok(lease, "an expired lease can be taken over");

    // The old holder letting go late must not free the new holder's lease.
    await old.release();
    const third = await KvStore.open(path, { clock, leaseMs: LEASE_MS });
    assert.equal(await third.acquire("c1"), undefined);
    await lease.release();
    assert.ok(await third.acquire("c1"));

    await dead.close();
    await alive.close();
    await third.close();
  });
});

Deno.test("KvStore close() releases its leases", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    const clock = new FakeClock();
    const one = await KvStore.open(path, { clock });
    const two = await KvStore.open(path, { clock });
    assert.ok(await one.acquire("c1"));
    await one.close();
    assert.equal(clock.pendingTimers, 0);
    assert.ok(await two.acquire("c1"));
    await two.close();
  });
});

Deno.test("KvStore update() loses no write when two processes race on one connection", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    const a = await KvStore.open(path, { clock: new FakeClock() });
    const b = await KvStore.open(path, { clock: new FakeClock() });
    try {
      const conn = { id: "c", listId: "list-c" };
      const summary = {
        started_at: "2026-01-01T00:00:00.000Z",
        finished_at: "2026-01-01T00:00:01.000Z",
        outcome: "failed" as const,
        read: 0,
        pushed: 0,
        rejected: 0,
        duration_ms: 1000,
        mailchimp_requests: 1,
        ometria_requests: 0,
      };
      const fail = (store: KvStore) =>
        record(store, conn, { type: "run-failed", at: 0, run: null, summary, error: "x" });
      const alert = (store: KvStore, n: number) =>
        record(store, conn, {
          type: "alert",
          alert: { behind_since: new Date(n).toISOString(), last_alert_at: null },
        });
      // Each failure increments a counter read from the stored state: a lost update would
      // show as a count below 40.
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => [fail(a), fail(b), alert(i % 2 ? a : b, i)]).flat(),
      );
      const final = await a.get("c");
      assert.equal(final?.failures, 40);
      assert.equal(final?.status, "failed");
      assert.notEqual(final?.alert.behind_since, null);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

/** Lets a renewal's KV round trip finish before the fake clock moves on. */
async function settle(): Promise<void> {
  for (let j = 0; j < 20; j++) await new Promise((r) => setTimeout(r, 1));
}

Deno.test("KvStore's default lease is 15 s, renewed every 5 s while its holder lives", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    assert.equal(DEFAULT_LEASE_MS, 15_000);
    const clock = new FakeClock();
    const holder = await KvStore.open(path, { clock });
    const other = await KvStore.open(path, { clock });
    const lease = await holder.acquire("c1");
    assert.ok(lease);
    const read = async () => {
      const kv = await Deno.openKv(path);
      try {
        return (await kv.get<{ expires_at: number }>(["leases", "c1"])).value?.expires_at;
      } finally {
        kv.close();
      }
    };
    assert.equal(await read(), clock.now() + 15_000);
    // A minute of a live run: each 5 s step renews it to 15 s from then.
    for (let i = 0; i < 12; i++) {
      await clock.tick(5_000);
      await settle();
      assert.equal(await read(), clock.now() + 15_000, `renewed at step ${i}`);
      assert.equal(await other.acquire("c1"), undefined);
    }
    await lease.release();
    assert.equal(await read(), undefined, "released: the key is gone");
    assert.ok(await other.acquire("c1"));
    await holder.close();
    await other.close();
  });
});

Deno.test("KvStore: a killed holder's default lease blocks its connection for 15 s at most", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    const clock = new FakeClock();
    // Killed: the process is gone, so it neither renews nor releases. (The store is closed
    // below only to free the file handle, after the takeover.)
    const killed = await KvStore.open(path, { clock: new FakeClock() });
    const next = await KvStore.open(path, { clock });
    assert.ok(await killed.acquire("c1"));
    await clock.tick(14_999);
    assert.equal(await next.acquire("c1"), undefined, "still held just before expiry");
    await clock.tick(1_001);
    const lease = await next.acquire("c1");
    assert.ok(lease, "the next tick takes it over");
    await lease.release();
    await next.close();
    await killed.close();
  });
});

Deno.test("KvStore close() on shutdown gives back a lease whose run is still renewing it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.kv`;
    const clock = new FakeClock();
    const dying = await KvStore.open(path, { clock });
    const other = await KvStore.open(path, { clock });
    assert.ok(await dying.acquire("c1"));
    assert.ok(await dying.acquire("c2"));
    await clock.tick(5_000);
    await settle();
    await dying.close();
    assert.equal(clock.pendingTimers, 0, "no renewal outlives the store");
    // No waiting for expiry: both are free at once.
    assert.ok(await other.acquire("c1"));
    assert.ok(await other.acquire("c2"));
    await other.close();
  });
});
