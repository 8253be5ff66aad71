/**
 * The cases every {@linkcode Ledger} backend must pass, registered by {@linkcode ledgerCases}
 * for one backend (as hono's routers share `common.case.test.ts`): a new backend is one small
 * test file calling it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type LedgerEntry, LedgerTable } from "../../lib/state/ledger_table.ts";
import { FencedError, type Ledger } from "../../lib/state/store.ts";
import { testFence } from "./_fence.ts";

/** One backend's ledger of connection {@linkcode LEDGER_ID}, in a place of its own. */
export interface LedgerFixture {
  /** The ledger under test. */
  ledger: Ledger;
  /** The same ledger as the next process would open it (the memory backend: itself). */
  reopen(): Promise<Ledger>;
  /** Everything the backend has stored, to show that a refused write wrote nothing. */
  stored(): Promise<unknown>;
  /**
   * Writes ids the way the id-only ledger of earlier releases did (absent for a backend that
   * never had one).
   */
  writeLegacy?: (ids: readonly string[]) => Promise<void>;
  /** Whether anything of the id-only ledger is still stored. */
  legacyLeft?: () => Promise<boolean>;
  /** Closes what the fixture opened and removes its place. */
  close(): Promise<void>;
}

/** The connection every case writes. */
export const LEDGER_ID = "conn/1";

/** A member id from a number. */
export const ID = (n: number): string => n.toString(16).padStart(32, "0");

/** An acknowledged entry of version `seconds`. */
export function entry(seconds: number, more: Partial<LedgerEntry> = {}): LedgerEntry {
  return {
    versionMs: seconds * 1000,
    hash: (seconds + 1).toString(16).padStart(16, "0"),
    acked: true,
    gone: false,
    final: false,
    ...more,
  };
}

/** The table's entries, for comparing two tables. */
export function entriesOf(table: LedgerTable): [string, LedgerEntry][] {
  return [...table.entries()];
}

/** Packed records of the ids of numbers: upserts, or removals where the entry is undefined. */
export const records = (...pairs: [number, LedgerEntry | undefined][]): Uint8Array =>
  LedgerTable.packRecords(pairs.map(([n, e]) => [ID(n), e]));

/** Runs `fn` with a fixture `open` makes, closed afterwards. */
export async function withFixture<F extends LedgerFixture>(
  open: () => Promise<F>,
  fn: (fixture: F) => Promise<void>,
): Promise<void> {
  const fixture = await open();
  try {
    await fn(fixture);
  } finally {
    await fixture.close();
  }
}

/** Registers the shared ledger cases for the backend `name`, each with a fresh fixture. */
export function ledgerCases(name: string, open: () => Promise<LedgerFixture>): void {
  const test = (what: string, fn: (f: LedgerFixture) => Promise<void>) =>
    Deno.test(`${name}: ${what}`, () => withFixture(open, fn));
  const fence = testFence(LEDGER_ID);

  test("an empty ledger loads as an empty table", async ({ ledger }) => {
    assert.equal((await ledger.load()).size, 0);
  });

  test("loads what was appended, from this and the next process", async (f) => {
    await f.ledger.append(records([5, entry(100)], [1, entry(101, { gone: true })]), fence);
    await f.ledger.append(records([9, entry(102, { acked: false, hash: "" })]), fence);
    await f.ledger.append(new Uint8Array(0), fence);
    const expected = [
      [ID(1), entry(101, { gone: true })],
      [ID(5), entry(100)],
      [ID(9), entry(102, { acked: false, hash: "" })],
    ];
    assert.deepEqual(entriesOf(await f.ledger.load()), expected);
    assert.deepEqual(entriesOf(await (await f.reopen()).load()), expected);
  });

  test("a later record of an id wins, within an append and across appends", async (f) => {
    await f.ledger.append(records([1, entry(100)], [1, entry(200)], [2, entry(300)]), fence);
    await f.ledger.append(records([2, entry(50)]), fence);
    assert.deepEqual(entriesOf(await f.ledger.load()), [[ID(1), entry(200)], [ID(2), entry(50)]]);
  });

  test("a removal record deletes the id's entry, and one of an unknown id changes nothing", async (f) => {
    await f.ledger.append(records([1, entry(100)], [2, entry(100)]), fence);
    await f.ledger.append(records([1, undefined], [3, undefined]), fence);
    assert.deepEqual(entriesOf(await f.ledger.load()), [[ID(2), entry(100)]]);
    await f.ledger.append(records([1, entry(400)]), fence);
    assert.deepEqual(entriesOf(await f.ledger.load()), [[ID(1), entry(400)], [ID(2), entry(100)]]);
  });

  test("appends of many records, in several chunks, load whole", async (f) => {
    const many = Array.from({ length: 4500 }, (_, i) => [i, entry(i)] as [number, LedgerEntry]);
    await f.ledger.append(records(...many), fence);
    await f.ledger.append(records([4499, undefined]), fence);
    const table = await f.ledger.load();
    assert.equal(table.size, 4499);
    assert.deepEqual(table.get(ID(4321)), entry(4321));
  });

  test("compaction leaves exactly the table, and it survives reopening", async (f) => {
    await f.ledger.append(records([1, entry(1)], [2, entry(2)], [3, entry(3)]), fence);
    const table = await f.ledger.load();
    table.delete(ID(2));
    table.set(ID(3), entry(33, { gone: true }));
    for (let i = 10; i < 4010; i++) table.set(ID(i), entry(i));
    await f.ledger.compact(table, fence);
    assert.deepEqual(entriesOf(await f.ledger.load()), entriesOf(table));
    assert.deepEqual(entriesOf(await (await f.reopen()).load()), entriesOf(table));
    // And again, over the compacted one.
    table.delete(ID(10));
    await f.ledger.compact(table, fence);
    assert.deepEqual(entriesOf(await (await f.reopen()).load()), entriesOf(table));
    await f.ledger.compact(LedgerTable.empty(), fence);
    assert.equal((await (await f.reopen()).load()).size, 0);
  });

  test("appends after a compaction go on from it", async (f) => {
    await f.ledger.append(records([1, entry(1)], [2, entry(2)]), fence);
    const table = await f.ledger.load();
    table.delete(ID(1));
    await f.ledger.compact(table, fence);
    await f.ledger.append(records([3, entry(3)], [2, undefined]), fence);
    const again = await f.reopen();
    await again.append(records([4, entry(4)]), fence);
    assert.deepEqual(entriesOf(await again.load()), [[ID(3), entry(3)], [ID(4), entry(4)]]);
  });

  test("a lost fence stops append and compact before anything is written", async (f) => {
    await f.ledger.append(records([1, entry(1)]), fence);
    const before = await f.stored();
    const lost = testFence(LEDGER_ID);
    lost.lose();
    await assert.rejects(f.ledger.append(records([2, entry(2)]), lost), FencedError);
    await assert.rejects(f.ledger.compact(LedgerTable.empty(), lost), FencedError);
    assert.deepEqual(await f.stored(), before);
    assert.deepEqual(entriesOf(await f.ledger.load()), [[ID(1), entry(1)]]);
  });

  test("an append of part of a record is refused", async (f) => {
    await assert.rejects(f.ledger.append(new Uint8Array(33), fence), RangeError);
    assert.equal((await f.ledger.load()).size, 0);
  });

  test("the id-only ledger of earlier releases loads as legacy entries under the records", async (f) => {
    if (!f.writeLegacy || !f.legacyLeft) return; // a backend that never had one
    await f.writeLegacy([ID(1), ID(2), ID(3), ID(2)]);
    const legacy = { versionMs: 0, hash: "", acked: true, gone: false, final: false };
    assert.deepEqual(entriesOf(await f.ledger.load()), [
      [ID(1), legacy],
      [ID(2), legacy],
      [ID(3), legacy],
    ]);
    await f.ledger.append(records([1, entry(10)], [2, undefined], [4, entry(40)]), fence);
    const table = await (await f.reopen()).load();
    const expected = [[ID(1), entry(10)], [ID(3), legacy], [ID(4), entry(40)]];
    assert.deepEqual(entriesOf(table), expected);
    await f.ledger.compact(table, fence);
    assert.equal(await f.legacyLeft(), false);
    assert.deepEqual(entriesOf(await (await f.reopen()).load()), expected);
  });
}
