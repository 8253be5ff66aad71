import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { DEFAULT_LEASE_MS, KvStore } from "../../lib/state/kv_store.ts";
import { StateError } from "../../lib/state/store.ts";
import { withTempDir } from "./_helpers.ts";

const LEASE_MS = 60_000;

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
