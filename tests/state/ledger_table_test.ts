import assert from "node:assert/strict";
import { IdSet } from "../../lib/state/id_set.ts";
import {
  LEDGER_RECORD_BYTES,
  type LedgerEntry,
  LedgerTable,
} from "../../lib/state/ledger_table.ts";
import { seededRandom } from "./_helpers.ts";

const HEX = "0123456789abcdef";

function randomHex(random: () => number, digits: number): string {
  let s = "";
  for (let i = 0; i < digits; i++) s += HEX[Math.floor(random() * 16)];
  return s;
}

/**
 * Ids for the property tests: one for every first-byte value, a crowd sharing their first 12
 * bits (one bucket, so its unsorted tail is merged many times), and a few at the extremes.
 */
function idPool(random: () => number): string[] {
  const ids = new Set<string>(["0".repeat(32), "f".repeat(32), "fff" + "0".repeat(29)]);
  for (let b = 0; b < 256; b++) ids.add(b.toString(16).padStart(2, "0") + randomHex(random, 30));
  for (let i = 0; i < 300; i++) ids.add("abc" + randomHex(random, 29));
  for (let i = 0; i < 300; i++) ids.add(randomHex(random, 32));
  return [...ids];
}

function randomEntry(random: () => number): LedgerEntry {
  const unknownHash = random() < 0.2;
  return {
    versionMs: random() < 0.1 ? 0 : Math.floor(random() * 0xffffffff) * 1000,
    // "0000000000000000" is the one 16-digit hash the table refuses (it stands for "").
    hash: unknownHash ? "" : randomHex(random, 15) + "1",
    acked: random() < 0.5,
    gone: random() < 0.2,
    final: random() < 0.3,
  };
}

/** What replaying `records` must give, applied to a plain Map the obvious way. */
function replay(reference: Map<string, LedgerEntry>, log: [string, LedgerEntry | undefined][]) {
  for (const [id, entry] of log) {
    if (entry === undefined) reference.delete(id);
    else reference.set(id, entry);
  }
}

/** Asserts equal lists element by element: the first difference is reported, and quickly. */
function assertSameList<T>(actual: Iterable<T>, expected: readonly T[], what: string) {
  const list = [...actual];
  for (let i = 0; i < Math.min(list.length, expected.length); i++) {
    assert.deepEqual(list[i], expected[i], `${what}, item ${i}`);
  }
  assert.equal(list.length, expected.length, `${what}: length`);
}

function assertSame(table: LedgerTable, reference: Map<string, LedgerEntry>, pool: string[]) {
  assert.equal(table.size, reference.size);
  const live = [...reference].filter(([, e]) => !e.gone).map(([id]) => id);
  assert.equal(table.liveSize, live.length);
  for (const id of pool) assert.deepEqual(table.get(id), reference.get(id), id);
  const sorted = [...reference].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
  assertSameList(table.entries(), sorted, "entries()");
  assertSameList(table.liveIds(), [...IdSet.of(live)], "liveIds()");
  assertSameList(LedgerTable.fromRecords(table.toRecords()).entries(), sorted, "toRecords()");
  assertSameList(
    LedgerTable.fromRecords(table.toRecords({ dropGone: true })).entries(),
    sorted.filter(([, e]) => !e.gone),
    "toRecords({ dropGone: true })",
  );
}

Deno.test("LedgerTable agrees with a Map over random sets, deletes and applied records", async (t) => {
  for (const seed of [1, 2, 3, 4, 5]) {
    await t.step(`seed ${seed}`, () => {
      const random = seededRandom(seed);
      const pool = idPool(random);
      const pick = () => pool[Math.floor(random() * pool.length)]!;
      const table = LedgerTable.empty();
      const reference = new Map<string, LedgerEntry>();
      for (let step = 0; step < 6000; step++) {
        const kind = random();
        if (kind < 0.3) {
          const id = pick();
          const entry = randomEntry(random);
          table.set(id, entry);
          reference.set(id, entry);
        } else if (kind < 0.45) {
          // As the writer's gate does: look the entry up, then replace it and pack the change,
          // sometimes with another change in between (which the table must not mistake).
          const id = pick();
          assert.deepEqual(table.get(id), reference.get(id), id);
          const other = random();
          if (other < 0.2) {
            const id2 = pick();
            table.delete(id2);
            reference.delete(id2);
          } else if (other < 0.4) {
            // Another id, or the same one (which the table may have had no entry for).
            const [id2, entry2] = [random() < 0.3 ? id : pick(), randomEntry(random)];
            table.set(id2, entry2);
            reference.set(id2, entry2);
          } else if (other < 0.5) {
            table.get(pick());
          }
          const entry = randomEntry(random);
          const out = new Uint8Array(3 * LEDGER_RECORD_BYTES);
          table.setAndPack(id, entry, out, LEDGER_RECORD_BYTES);
          reference.set(id, entry);
          assert.deepEqual(
            out.subarray(LEDGER_RECORD_BYTES, 2 * LEDGER_RECORD_BYTES),
            LedgerTable.packRecord(id, entry),
          );
        } else if (kind < 0.6) {
          // An acknowledgement: of the entry as it is (mostly), or of one replaced since.
          const id = pick();
          const now = reference.get(id);
          const sent = now !== undefined && random() < 0.7 ? now : randomEntry(random);
          const expected = now !== undefined && !now.acked && now.versionMs === sent.versionMs &&
            now.hash === sent.hash && now.gone === sent.gone;
          const out = new Uint8Array(LEDGER_RECORD_BYTES);
          assert.equal(table.acknowledge(id, sent, out, 0), expected);
          if (expected) {
            reference.set(id, { ...now, acked: true });
            assert.deepEqual(out, LedgerTable.packRecord(id, { ...now, acked: true }));
          } else {
            assert.deepEqual(out, new Uint8Array(LEDGER_RECORD_BYTES), "nothing packed");
          }
        } else if (kind < 0.8) {
          const id = pick();
          table.delete(id);
          reference.delete(id);
        } else {
          // A batch of records as an append carries them, repeats and removals included.
          const log: [string, LedgerEntry | undefined][] = Array.from(
            { length: 1 + Math.floor(random() * 40) },
            () => [pick(), random() < 0.25 ? undefined : randomEntry(random)],
          );
          table.apply(LedgerTable.packRecords(log));
          replay(reference, log);
        }
        if (step % 1500 === 0) assertSame(table, reference, pool);
      }
      assertSame(table, reference, pool);
    });
  }
});

Deno.test("LedgerTable.fromRecords() replays a log with repeats, removals and a torn tail", async (t) => {
  for (const seed of [11, 12, 13]) {
    await t.step(`seed ${seed}`, () => {
      const random = seededRandom(seed);
      const pool = idPool(random);
      const log: [string, LedgerEntry | undefined][] = Array.from({ length: 20_000 }, () => [
        pool[Math.floor(random() * pool.length)]!,
        random() < 0.15 ? undefined : randomEntry(random),
      ]);
      const reference = new Map<string, LedgerEntry>();
      replay(reference, log);
      const records = LedgerTable.packRecords(log);
      for (const torn of [0, 1, 16, LEDGER_RECORD_BYTES - 1]) {
        // A crash in the middle of an append leaves part of a record at the end.
        const bytes = new Uint8Array(records.length + torn);
        bytes.set(records);
        bytes.set(
          LedgerTable.packRecord(pool[0]!, randomEntry(random)).subarray(0, torn),
          records.length,
        );
        assertSame(LedgerTable.fromRecords(bytes), reference, pool);
      }
    });
  }
});

Deno.test("LedgerTable.packRecord() lays a record out as documented", () => {
  const id = "00112233445566778899aabbccddeeff";
  const record = LedgerTable.packRecord(id, {
    versionMs: 0x01020304 * 1000,
    hash: "0123456789abcdef",
    acked: true,
    gone: false,
    final: true,
  });
  assert.deepEqual(
    [...record],
    [
      ...[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77],
      ...[0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
      ...[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
      ...[0x04, 0x03, 0x02, 0x01, 0b101, 0, 0, 0],
    ],
  );
  const removal = LedgerTable.packRecord(id, undefined);
  assert.deepEqual([...removal.subarray(16)], [...new Array(12).fill(0), 0x80, 0, 0, 0]);
});

Deno.test("LedgerTable.fromLegacyIds() gives acked entries of unknown version and hash", () => {
  const ids = ["ff" + "0".repeat(30), "0".repeat(31) + "1", "a".repeat(32)];
  const table = LedgerTable.fromLegacyIds(IdSet.of(ids));
  assert.equal(table.size, 3);
  assert.equal(table.liveSize, 3);
  assert.deepEqual([...table.entries()].map(([id]) => id), [...ids].sort());
  for (const id of ids) {
    assert.deepEqual(table.get(id), {
      versionMs: 0,
      hash: "",
      acked: true,
      gone: false,
      final: false,
    });
  }
});

Deno.test("LedgerTable refuses what it cannot store, and changes nothing then", () => {
  const table = LedgerTable.empty();
  const id = "0".repeat(32);
  const entry = { versionMs: 1000, hash: "", acked: true, gone: false, final: false };
  assert.throws(() => table.set("not-an-id", entry), TypeError);
  assert.throws(() => table.set("A".repeat(32), entry), TypeError);
  assert.throws(() => table.set(id, { ...entry, hash: "xyz" }), TypeError);
  assert.throws(() => table.set(id, { ...entry, hash: "0".repeat(16) }), TypeError);
  assert.throws(() => table.set(id, { ...entry, versionMs: 1500 }), RangeError);
  assert.throws(() => table.set(id, { ...entry, versionMs: -1000 }), RangeError);
  assert.throws(() => table.set(id, { ...entry, versionMs: 2 ** 32 * 1000 }), RangeError);
  assert.throws(() => LedgerTable.packRecord("x", undefined), TypeError);
  assert.equal(table.size, 0);
  assert.equal(table.get("not-an-id"), undefined);
  table.delete("not-an-id");
  table.set(id, { ...entry, versionMs: 0xffffffff * 1000, gone: true });
  assert.equal(table.get(id)?.versionMs, 0xffffffff * 1000);
  assert.equal(table.liveSize, 0);
  table.set(id, entry);
  assert.equal(table.liveSize, 1);
});

Deno.test("LedgerTable.acknowledge() marks only the entry that was sent, and keeps the rest of it", () => {
  const table = LedgerTable.empty();
  const id = "0123456789abcdef0123456789abcdef";
  const sent = { versionMs: 5000, hash: "00000000000000a1", gone: false };
  const entry = { ...sent, acked: false, final: true, issuedSeq: 7 };
  table.set(id, entry);
  const out = new Uint8Array(LEDGER_RECORD_BYTES);
  for (
    const other of [
      { ...sent, versionMs: 6000 },
      { ...sent, hash: "00000000000000a2" },
      { ...sent, hash: "" },
      { ...sent, hash: "not a hash at all" },
      { ...sent, gone: true },
    ]
  ) {
    assert.equal(table.acknowledge(id, other, out, 0), false, JSON.stringify(other));
  }
  assert.equal(table.acknowledge("f".repeat(32), sent, out, 0), false, "no entry");
  assert.equal(table.acknowledge("not-an-id", sent, out, 0), false);
  assert.deepEqual(table.get(id), entry);
  assert.deepEqual(out, new Uint8Array(LEDGER_RECORD_BYTES));
  assert.equal(table.acknowledge(id, sent, out, 0), true);
  assert.deepEqual(table.get(id), { ...entry, acked: true });
  assert.deepEqual(out, LedgerTable.packRecord(id, { ...entry, acked: true }));
  assert.equal(table.acknowledge(id, sent, out, 0), false, "acknowledged already");
  assert.throws(() => table.acknowledge(id, sent, out, 1), RangeError);
});

Deno.test("LedgerTable.setAndPack() refuses what set() refuses, or a buffer too short, changing nothing", () => {
  const table = LedgerTable.empty();
  const id = "0".repeat(32);
  const entry = { versionMs: 1000, hash: "", acked: true, gone: false, final: false };
  const out = new Uint8Array(LEDGER_RECORD_BYTES);
  table.get(id); // a remembered lookup must not let a refused entry in either
  assert.throws(() => table.setAndPack(id, { ...entry, versionMs: 1500 }, out, 0), RangeError);
  assert.throws(() => table.setAndPack(id, entry, out, 1), RangeError);
  assert.throws(() => table.setAndPack("A".repeat(32), entry, out, 0), TypeError);
  assert.equal(table.size, 0);
  assert.deepEqual(out, new Uint8Array(LEDGER_RECORD_BYTES));
  table.setAndPack(id, entry, out, 0);
  assert.deepEqual(table.get(id), entry);
});

Deno.test("LedgerTable holds 1,000,000 entries in at most 40 MB", () => {
  const random = seededRandom(99);
  const table = LedgerTable.empty();
  const entry = { versionMs: 0, hash: "", acked: true, gone: false, final: true };
  for (let i = 0; i < 1_000_000; i++) {
    entry.versionMs = (1_700_000_000 + i) * 1000;
    entry.hash = randomHex(random, 15) + "1";
    table.set(randomHex(random, 32), entry);
  }
  assert.ok(table.size > 999_000, `${table.size} distinct ids`);
  assert.ok(
    table.byteSize <= 40_000_000,
    `a million entries take ${table.byteSize} bytes`,
  );
});

Deno.test("LedgerTable.recordChunks() gives toRecords() in pieces of one bounded buffer", () => {
  const random = seededRandom(19);
  const table = LedgerTable.empty();
  // Random ids: buckets of a few entries each, all far below a piece.
  for (let i = 0; i < 5_000; i++) table.set(randomHex(random, 32), randomEntry(random));
  const whole = table.toRecords();
  const chunkBytes = 4096;
  const pieces: Uint8Array[] = [];
  const buffers = new Set<ArrayBufferLike>();
  for (const piece of table.recordChunks(chunkBytes)) {
    // A piece is valid until the next is asked for: copied here, as a writer writes it.
    pieces.push(piece.slice());
    buffers.add(piece.buffer);
    assert.equal(piece.length % LEDGER_RECORD_BYTES, 0);
    // Whole buckets up to the chunk's size (a bucket of this table is far below 4 KiB).
    assert.ok(piece.length <= chunkBytes, `${piece.length} bytes`);
  }
  assert.ok(pieces.length > 10, `${pieces.length} pieces`);
  // One buffer for every piece, not a copy of the whole table.
  assert.equal(buffers.size, 1);
  const joined = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of pieces) joined.set(p, (at += p.length) - p.length);
  assert.deepEqual(joined, whole);
});

Deno.test("LedgerTable.recordChunks() packs whole buckets, so the table may change between pieces", () => {
  const table = LedgerTable.empty();
  const entry: LedgerEntry = { versionMs: 1000, hash: "", acked: true, gone: false, final: false };
  // Two entries in each of the first and last buckets (a bucket is an id's first 12 bits).
  for (const id of ["000a", "000b", "fffa", "fffb"]) table.set(id + "0".repeat(28), entry);
  const pieces = table.recordChunks(2 * LEDGER_RECORD_BYTES);
  const first = LedgerTable.fromRecords(pieces.next().value!.slice());
  assert.deepEqual([...first.entries()].map(([id]) => id.slice(0, 4)), ["000a", "000b"]);
  // Changed while the compaction is being written: one in a bucket already packed, one still
  // to come. The first is in an append after the compaction; the second is packed as it is.
  table.set("000c" + "0".repeat(28), entry);
  table.set("fffc" + "0".repeat(28), entry);
  const rest = [...pieces].map((p) => [...LedgerTable.fromRecords(p.slice()).entries()]).flat();
  assert.deepEqual(rest.map(([id]) => id.slice(0, 4)), ["fffa", "fffb", "fffc"]);
});
