import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { packIds } from "../../lib/state/id_set.ts";
import { KvStore } from "../../lib/state/kv_store.ts";
import { FencedError, type Ledger } from "../../lib/state/store.ts";
import { testFence } from "./_fence.ts";
import {
  entriesOf,
  entry,
  ID,
  LEDGER_ID,
  ledgerCases,
  type LedgerFixture,
  records,
  withFixture,
} from "./ledger_cases.ts";

interface KvFixture extends LedgerFixture {
  /** The database itself, opened beside the store, to look at and write keys directly. */
  kv: Deno.Kv;
}

/** A KvStore's ledger on a Deno KV database in a fresh temporary file. */
async function kvFixture(): Promise<KvFixture> {
  const dir = await Deno.makeTempDir({ prefix: "kv_ledger_test_" });
  const path = `${dir}/state.kv`;
  const stores = [await KvStore.open(path, { clock: new FakeClock() })];
  const kv = await Deno.openKv(path);
  const all = () => Array.fromAsync(kv.list({ prefix: [] }), (e) => [e.key, e.value]);
  return {
    kv,
    ledger: stores[0]!.ledger(LEDGER_ID),
    // Another store on the same database: what the next process (or isolate) sees.
    reopen: async () => {
      const store = await KvStore.open(path, { clock: new FakeClock() });
      stores.push(store);
      return store.ledger(LEDGER_ID);
    },
    stored: all,
    // As the id-only KvLedger of earlier releases added ids: a chunk of packed ids under a
    // random key in the current generation, one per call.
    writeLegacy: async (ids) => {
      const generation = (await kv.get<string>(["ledger-generation", LEDGER_ID])).value ?? "0";
      for (const part of [ids.slice(0, 2), ids.slice(2)]) {
        await kv.set(["ledger", LEDGER_ID, generation, crypto.randomUUID()], packIds(part));
      }
    },
    legacyLeft: async () =>
      (await Array.fromAsync(kv.list({ prefix: ["ledger", LEDGER_ID] }))).length > 0 ||
      (await kv.get(["ledger-generation", LEDGER_ID])).value !== null,
    close: async () => {
      for (const store of stores) await store.close();
      kv.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

ledgerCases("KvLedger", kvFixture);

const fence = testFence(LEDGER_ID);
const chunkKeys = async (kv: Deno.Kv) =>
  await Array.fromAsync(kv.list({ prefix: ["ledger2", LEDGER_ID] }), (e) => e.key.slice(2));

Deno.test("KvLedger: a write whose lease check fails, with the lease gone, is FencedError and writes nothing", async () => {
  await withFixture(kvFixture, async ({ kv, ledger, stored }) => {
    await ledger.append(records([1, entry(10)]), fence);
    // Another process holds the lease now: its entry is not at the versionstamp we renewed.
    await kv.set(["leases", LEDGER_ID], { owner: "someone else", expires_at: 0 });
    const taken = testFence(LEDGER_ID, {
      kvCheck: () => ({ key: ["leases", LEDGER_ID], versionstamp: "00000000000000000000" }),
      recheck: () => Promise.resolve(false),
    });
    const before = await stored();
    await assert.rejects(ledger.append(records([2, entry(20)]), taken), FencedError);
    const table = await ledger.load();
    table.set(ID(3), entry(30));
    await assert.rejects(ledger.compact(table, taken), FencedError);
    assert.equal(taken.rechecks, 2);
    assert.deepEqual(await stored(), before);
    assert.deepEqual(entriesOf(await ledger.load()), [[ID(1), entry(10)]]);
  });
});

Deno.test("KvLedger: every write carries the lease check, and a renewal in between is retried", async () => {
  await withFixture(kvFixture, async ({ kv, ledger }) => {
    const lease = ["leases", LEDGER_ID];
    await kv.set(lease, { owner: "me", expires_at: 0 });
    let stamp = (await kv.get(lease)).versionstamp!;
    const held = testFence(LEDGER_ID, {
      kvCheck: () => ({ key: lease, versionstamp: stamp }),
      recheck: async () => {
        stamp = (await kv.get(lease)).versionstamp!;
        return true;
      },
    });
    await ledger.append(records([1, entry(10)]), held);
    assert.equal(held.rechecks, 0);
    await kv.set(lease, { owner: "me", expires_at: 1 }); // renewed: the versionstamp moved
    await ledger.append(records([2, entry(20)]), held);
    assert.equal(held.rechecks, 1);
    const table = await ledger.load();
    await ledger.compact(table, held);
    assert.deepEqual(entriesOf(await ledger.load()), [[ID(1), entry(10)], [ID(2), entry(20)]]);
  });
});

Deno.test("KvLedger: appends number their chunks on from the last key, in any process", async () => {
  await withFixture(kvFixture, async ({ kv, ledger, reopen }) => {
    await ledger.append(records([1, entry(10)]), fence);
    await ledger.append(records([2, entry(20)]), fence);
    const other: Ledger = await reopen();
    await other.append(records([3, entry(30)]), fence);
    assert.deepEqual(await chunkKeys(kv), [
      ["0", "000000000000"],
      ["0", "000000000001"],
      ["0", "000000000002"],
    ]);
    assert.equal((await ledger.load()).size, 3);
  });
});

Deno.test("KvLedger: a compaction leaves only its own generation, whatever a crash left", async () => {
  await withFixture(kvFixture, async ({ kv, ledger }) => {
    await ledger.append(records([1, entry(10)], [2, entry(20)]), fence);
    // Compactions that crashed before their switch left generations nobody reads, one sorting
    // before any generation a compaction names and one after.
    for (const crashed of ["0-crashed", "zz-crashed"]) {
      await kv.set(["ledger2", LEDGER_ID, crashed, "000000000000"], records([9, entry(90)]));
    }
    assert.deepEqual(entriesOf(await ledger.load()), [[ID(1), entry(10)], [ID(2), entry(20)]]);
    const table = await ledger.load();
    table.delete(ID(1));
    for (let i = 100; i < 4200; i++) table.set(ID(i), entry(i));
    await ledger.compact(table, fence);
    const generation = (await kv.get<string>(["ledger2-generation", LEDGER_ID])).value!;
    const keys = await chunkKeys(kv);
    assert.deepEqual(keys, [0, 1, 2].map((seq) => [generation, String(seq).padStart(12, "0")]));
    assert.deepEqual(entriesOf(await ledger.load()), entriesOf(table));
  });
});

Deno.test("KvLedger: an id-only ledger replaced by an earlier release is read from its generation", async () => {
  await withFixture(kvFixture, async ({ kv, ledger, legacyLeft }) => {
    // The earlier release's replace: the new generation written and switched to, the old
    // one's deletion cut short by a crash.
    await kv.set(["ledger", LEDGER_ID, "0", crypto.randomUUID()], packIds([ID(7)]));
    await kv.set(["ledger", LEDGER_ID, "g1", "00000000"], packIds([ID(1), ID(2)]));
    await kv.set(["ledger-generation", LEDGER_ID], "g1");
    const table = await ledger.load();
    assert.deepEqual(entriesOf(table).map(([id]) => id), [ID(1), ID(2)]);
    await ledger.compact(table, fence);
    assert.equal(await legacyLeft!(), false);
    assert.deepEqual(entriesOf(await ledger.load()).map(([id]) => id), [ID(1), ID(2)]);
  });
});
