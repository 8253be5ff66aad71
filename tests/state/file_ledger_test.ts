import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { FileStore } from "../../lib/state/file_store.ts";
import { packIds } from "../../lib/state/id_set.ts";
import { LEDGER_RECORD_BYTES } from "../../lib/state/ledger_table.ts";
import { FileLedger } from "../../lib/state/ledgers.ts";
import { FencedError, StateError } from "../../lib/state/store.ts";
import { testFence } from "./_fence.ts";
import { withTempDir } from "./_helpers.ts";
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

async function readOrNull(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** A FileLedger in a fresh temporary folder, as FileStore places it beside its state file. */
async function fileFixture(): Promise<LedgerFixture & { ledger: FileLedger }> {
  const dir = await Deno.makeTempDir({ prefix: "file_ledger_test_" });
  const folder = `${dir}/sync_jobs.json.ledger`;
  const ledger = new FileLedger(folder, LEDGER_ID);
  return {
    ledger,
    reopen: () => Promise.resolve(new FileLedger(folder, LEDGER_ID)),
    stored: async () => [await readOrNull(ledger.path), await readOrNull(ledger.legacyPath)],
    // As the id-only FileLedger of earlier releases did: packed ids appended to `<id>.ids`.
    writeLegacy: async (ids) => {
      await Deno.mkdir(folder, { recursive: true });
      await Deno.writeFile(ledger.legacyPath, packIds(ids), { append: true });
    },
    legacyLeft: async () => (await readOrNull(ledger.legacyPath)) !== null,
    close: () => Deno.remove(dir, { recursive: true }),
  };
}

ledgerCases("FileLedger", fileFixture);

const fence = testFence(LEDGER_ID);

Deno.test("FileLedger ignores a torn last record and cuts it off before the next append", async () => {
  await withFixture(fileFixture, async (f) => {
    await f.ledger.append(records([1, entry(10)], [2, entry(20)]), fence);
    const whole = (await Deno.readFile(f.ledger.path)).length;
    // A crash in the middle of an append: part of a record at the end.
    await Deno.writeFile(f.ledger.path, records([3, entry(30)]).subarray(0, 7), { append: true });
    const again = await f.reopen();
    assert.deepEqual(entriesOf(await again.load()), [[ID(1), entry(10)], [ID(2), entry(20)]]);
    await again.append(records([4, entry(40)]), fence);
    assert.equal((await Deno.readFile(f.ledger.path)).length, whole + LEDGER_RECORD_BYTES);
    assert.deepEqual(entriesOf(await (await f.reopen()).load()), [
      [ID(1), entry(10)],
      [ID(2), entry(20)],
      [ID(4), entry(40)],
    ]);
  });
});

Deno.test("FileLedger refuses a file that is not its ledger, naming it, and leaves it alone", async () => {
  await withFixture(fileFixture, async (f) => {
    await Deno.mkdir(f.ledger.path.replace(/\/[^/]*$/, ""), { recursive: true });
    const foreign = new TextEncoder().encode("id,email\n0123,someone@example.com\n");
    await Deno.writeFile(f.ledger.path, foreign);
    for (
      const attempt of [
        () => f.ledger.load(),
        () => f.ledger.append(records([1, entry(10)]), fence),
      ]
    ) {
      const error = await attempt().then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof StateError, String(error));
      assert.ok(error.message.includes(f.ledger.path), error.message);
      assert.match(error.message, /not a ledger of this program.*Move it aside/s);
    }
    assert.deepEqual(await Deno.readFile(f.ledger.path), foreign);
  });
});

Deno.test("FileLedger refuses a ledger of a version it does not know", async () => {
  await withFixture(fileFixture, async (f) => {
    await f.ledger.append(records([1, entry(10)]), fence);
    const bytes = await Deno.readFile(f.ledger.path);
    bytes[12] = 9; // the version byte after "mc2om-ledger"
    await Deno.writeFile(f.ledger.path, bytes);
    await assert.rejects((await f.reopen()).load(), StateError, "has version 9");
  });
});

Deno.test("FileLedger ignores an id-only ledger left beside a compacted one by a crash", async () => {
  await withFixture(fileFixture, async (f) => {
    await f.writeLegacy!([ID(1), ID(2)]);
    const table = await f.ledger.load();
    table.delete(ID(2));
    await f.ledger.compact(table, fence);
    // A crash between the compaction's rename and its removal of the id-only file.
    await f.writeLegacy!([ID(1), ID(2)]);
    const loaded = await (await f.reopen()).load();
    assert.deepEqual(entriesOf(loaded), entriesOf(table));
  });
});

Deno.test("FileStore keeps each connection's ledger in <state>.ledger/<id>.ledger", async () => {
  await withTempDir(async (dir) => {
    const store = await FileStore.open(`${dir}/sync_jobs.json`, { clock: new FakeClock() });
    try {
      const ledger = store.ledger("a/b");
      assert.equal(store.ledger("a/b"), ledger, "one ledger per connection");
      await ledger.append(records([1, entry(10)]), testFence("a/b"));
      const names = [];
      for await (const e of Deno.readDir(`${dir}/sync_jobs.json.ledger`)) names.push(e.name);
      assert.deepEqual(names, ["a%2Fb.ledger"]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("FileLedger writes appends issued together in one write and one sync", async () => {
  await withFixture(fileFixture, async (f) => {
    const appends = Array.from(
      { length: 20 },
      (_, i) => f.ledger.append(records([i, entry(i + 1)]), fence),
    );
    await Promise.all(appends);
    assert.equal(f.ledger.syncs, 1, "twenty appends, one sync");
    // Each awaited before the next: each synced on its own.
    await f.ledger.append(records([20, entry(21)]), fence);
    await f.ledger.append(records([21, entry(22)]), fence);
    assert.equal(f.ledger.syncs, 3);
    const expected = Array.from({ length: 22 }, (_, i) => [ID(i), entry(i + 1)]);
    assert.deepEqual(entriesOf(await (await f.reopen()).load()), expected);
  });
});

Deno.test("FileLedger leaves out the appends whose fence went before their group is written", async () => {
  await withFixture(fileFixture, async (f) => {
    const lost = testFence(LEDGER_ID);
    const a = f.ledger.append(records([1, entry(1)]), fence);
    const b = assert.rejects(f.ledger.append(records([2, entry(2)]), lost), FencedError);
    const c = f.ledger.append(records([3, entry(3)]), fence);
    lost.lose();
    await Promise.all([a, b, c]);
    assert.deepEqual(entriesOf(await (await f.reopen()).load()), [
      [ID(1), entry(1)],
      [ID(3), entry(3)],
    ]);
  });
});

Deno.test("FileLedger rejects every append of a group whose write fails, and goes on after", async () => {
  await withFixture(fileFixture, async (f) => {
    await f.ledger.append(records([1, entry(1)]), fence);
    // The file cannot be opened for writing now: a folder stands in its place.
    await Deno.remove(f.ledger.path);
    await Deno.mkdir(f.ledger.path);
    const group = [
      f.ledger.append(records([2, entry(2)]), fence),
      f.ledger.append(records([3, entry(3)]), fence),
      f.ledger.append(new Uint8Array(0), fence),
    ];
    const settled = await Promise.allSettled(group);
    assert.deepEqual(settled.map((s) => s.status), ["rejected", "rejected", "rejected"]);
    await Deno.remove(f.ledger.path);
    await f.ledger.append(records([4, entry(4)]), fence);
    assert.deepEqual(entriesOf(await (await f.reopen()).load()), [[ID(4), entry(4)]]);
  });
});
