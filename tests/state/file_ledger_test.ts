import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { FileStore } from "../../lib/state/file_store.ts";
import { packIds } from "../../lib/state/id_set.ts";
import { LEDGER_RECORD_BYTES } from "../../lib/state/ledger_table.ts";
import { FileLedger } from "../../lib/state/ledgers.ts";
import { StateError } from "../../lib/state/store.ts";
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
