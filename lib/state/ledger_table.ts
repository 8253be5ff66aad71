/**
 * The content ledger of one connection, in memory: for each member id, what this program last
 * sent Ometria for it. Packed (no object per member), so a million entries stay well under
 * 40 MB. The connection's writer keeps one while it holds the lease and consults it before
 * every push: a push whose version is older than the entry's is stale and is not sent; one
 * whose record hash equals an acknowledged entry's is unchanged and is not sent either.
 *
 * Records (the unit of a ledger's appends, 32 bytes each, little-endian):
 * `id` 16 bytes (the subscriber hash's hex digits packed) | `hash` 8 bytes | `version` u32
 * (whole seconds since the epoch) | `flags` u8 (bit 0 acked, bit 1 gone, bit 2 final, bit 7
 * removed) | 3 bytes zero.
 *
 * The hash's 8 bytes are its 16 hex digits packed, as the id's are; all zero stands for the
 * unknown hash "" (which `recordHash` never gives).
 *
 * @module
 */
import { ID_BYTES, IdSet } from "./id_set.ts";

/** Bytes of one packed ledger record. */
export const LEDGER_RECORD_BYTES = 32;

/** Byte arrays (packed records) one after the other, in one array; the one itself when alone. */
export function concatRecords(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return bytes;
}

/** What this program last sent Ometria for one member. */
export interface LedgerEntry {
  /**
   * The version sent, in epoch ms (whole seconds): the member's `last_changed` for a push;
   * for the opt-out of a member gone from Mailchimp, the `Date` of Mailchimp's 404 answer.
   * 0 when unknown (an entry migrated from the id-only ledger).
   */
  versionMs: number;
  /** The record's hash as 16 hex digits (`recordHash`); "" when unknown. */
  hash: string;
  /**
   * Ometria acknowledged the request that carried it. False while written ahead of a push
   * that may or may not have landed: such an entry never makes a member count as unchanged.
   */
  acked: boolean;
  /** The member is gone from Mailchimp and this is the opt-out sent for it (a tombstone). */
  gone: boolean;
  /**
   * The version was read when it could no longer change within its second (its answer's
   * `Date` at least 2 s after it), so no other read of the same version can be newer.
   */
  final: boolean;
  /**
   * In memory only, never persisted: when the writer holding the table issued this entry's
   * push, in its numbering of reads and pushes (writer/gate.ts); 0 or absent for entries
   * loaded from the ledger (issued before any read of this writer).
   */
  issuedSeq?: number;
}

const _ACKED = 1;
const _GONE = 2;
const _FINAL = 4;
const _REMOVED = 0x80;
// Offsets inside a record.
const _HASH_AT = 16;
const _VERSION_AT = 24;
const _FLAGS_AT = 28;

// 4,096 buckets by the id's first 12 bits: a million entries make buckets of about 250, so a
// binary search takes 8 steps and an insertion or deletion moves a few hundred entries at most.
const _BUCKET_SHIFT = 20;
const _BUCKETS = 1 << (32 - _BUCKET_SHIFT);
// New ids wait unsorted at a bucket's end until there are more than this many: a scan of a few
// dozen is as fast as a search, and merging them in at once moves the bucket once, not each time.
const _TAIL_MAX = 32;
// Arrays grow by a quarter (not double): the slack stays about an eighth of the table. Small
// buckets double instead, up to `_DOUBLE_BELOW`: growing a bucket of 4 by a quarter at a time
// would take eight copies to reach 32, and the slack that saves is a few entries a bucket.
const _GROWTH = 1.25;
// A bucket's first entry makes room for eight: the slack of a small table stays under 1 MB
// (4,096 buckets × 8 × 33 bytes), and a table of 100,000 grows each bucket twice, not thrice.
const _MIN_CAPACITY = 8;
const _DOUBLE_BELOW = 64;
// A bucket of capacity c keeps its words in one array, a section per field: [0, c) each id's
// first word (the one searched, dense so a search touches few cache lines), [c, 4c) the
// id's other three, [4c, 6c) the hash's two, [6c, 7c) the version, [7c, 8c) when the writer
// issued the entry (in memory only, see `LedgerEntry.issuedSeq`). Flags are bytes beside.
const _WORDS = 8;
// Bytes one entry takes: id 16, hash 8, version 4, issued 4, flags 1.
const _ENTRY_BYTES = 4 * _WORDS + 1;

// The id being looked up, as four big-endian words (numeric order is the hex digits' order),
// and the tail being merged: scratch shared by every table, so a lookup allocates nothing.
const _probe = new Uint32Array(4);
const _tailWords = new Uint32Array(_WORDS * (_TAIL_MAX + 1));
const _tailFlags = new Uint8Array(_TAIL_MAX + 1);
const _idCodes: number[] = new Array(32).fill(0);
const _hashCodes: number[] = new Array(16).fill(0);

const _EMPTY_WORDS = new Uint32Array(0);
const _EMPTY_FLAGS = new Uint8Array(0);

/**
 * A packed, in-memory table of ledger entries keyed by member id.
 *
 * Entries live in 4,096 buckets chosen by the id's first 12 bits. A bucket is a
 * struct-of-arrays (the id as four 32-bit words, the hash as two, the version in seconds, the
 * flags as a byte): a sorted run, searched by bisection, followed by a short unsorted tail of
 * ids added since, merged into the run once it passes a few dozen. So an entry costs 29 bytes
 * plus the arrays' slack (they grow by a quarter), a million about 33 MB, and nothing the
 * garbage collector has to trace per member. Iteration (`entries`, `toRecords`) is in the
 * ids' hex order; a table must not be changed while one of its iterators is in use.
 */
export class LedgerTable {
  // Per bucket (see _WORDS); its capacity is its flags' length. A bucket's first
  // `#sorted[b]` entries are in order, the rest up to `#count[b]` its tail.
  #words: Uint32Array[] = new Array(_BUCKETS).fill(_EMPTY_WORDS);
  #flags: Uint8Array[] = new Array(_BUCKETS).fill(_EMPTY_FLAGS);
  #count = new Uint32Array(_BUCKETS);
  #sorted = new Uint32Array(_BUCKETS);
  #capacity = 0;
  #size = 0;
  #live = 0;
  // The last lookup by `get`: its id ("" for none), the words it parsed, and where it found
  // the entry (-1: absent), so that a `set` of the same id right after (the writer's gate
  // judges an entry, then replaces it) neither parses the id nor searches again. Forgotten at
  // every change that can move entries or add one.
  #lastId = "";
  #lastAt = -1;
  readonly #lastWords = new Uint32Array(4);

  private constructor() {}

  /** An empty table. */
  static empty(): LedgerTable {
    return new LedgerTable();
  }

  /**
   * Replays packed records (appends of a ledger, in order): a later record of an id replaces
   * an earlier one, a removed record deletes it. A torn last record (fewer than 32 bytes) is
   * ignored.
   */
  static fromRecords(records: Uint8Array): LedgerTable {
    const table = new LedgerTable();
    table.apply(records);
    return table;
  }

  /** Entries for ids of the id-only ledger of earlier releases: version and hash unknown, acked. */
  static fromLegacyIds(ids: IdSet): LedgerTable {
    const table = new LedgerTable();
    const bytes = ids.bytes;
    for (let at = 0; at + ID_BYTES <= bytes.length; at += ID_BYTES) {
      _idFromBytes(bytes, at);
      table.#put(0, 0, 0, _ACKED);
    }
    return table;
  }

  /** Packs one record: an upsert of `entry`, or the removal of `id` when `entry` is undefined. */
  static packRecord(id: string, entry: LedgerEntry | undefined): Uint8Array {
    const record = new Uint8Array(LEDGER_RECORD_BYTES);
    LedgerTable.packRecordInto(id, entry, record, 0);
    return record;
  }

  /**
   * Packs records into one buffer, in the order given (what an append of several entries
   * takes): each an upsert, or a removal where the entry is undefined.
   */
  static packRecords(
    records: readonly (readonly [id: string, entry: LedgerEntry | undefined])[],
  ): Uint8Array {
    const bytes = new Uint8Array(records.length * LEDGER_RECORD_BYTES);
    records.forEach(([id, entry], i) =>
      LedgerTable.packRecordInto(id, entry, bytes, i * LEDGER_RECORD_BYTES)
    );
    return bytes;
  }

  /**
   * Packs one record as {@linkcode packRecord} does, into `into` at `offset` (32 bytes), for
   * callers that fill one buffer with many. Throws a TypeError for an id that is not a
   * subscriber hash or an entry {@linkcode set} would refuse.
   */
  static packRecordInto(
    id: string,
    entry: LedgerEntry | undefined,
    into: Uint8Array,
    offset: number,
  ): void {
    _checkRoom(into, offset);
    if (entry === undefined) {
      _parseId(id);
      _writeRecord(into, offset, _probe, 0, 1, 0, 0, 0, _REMOVED);
      return;
    }
    const flags = _flagsOf(entry);
    const hi = _hashWord(entry.hash, 0);
    const lo = _hashWord(entry.hash, 8);
    const seconds = _seconds(entry.versionMs);
    _parseId(id);
    _writeRecord(into, offset, _probe, 0, 1, hi, lo, seconds, flags);
  }

  /** Entries in the table, gone ones included. */
  get size(): number {
    return this.#size;
  }

  /** Entries that are not gone: the members Ometria may hold opted in. */
  get liveSize(): number {
    return this.#live;
  }

  /** Bytes the table holds (its arrays), for the memory budget. */
  get byteSize(): number {
    return this.#capacity * _ENTRY_BYTES + this.#count.byteLength + this.#sorted.byteLength;
  }

  /** The entry of `id`, or undefined. */
  get(id: string): LedgerEntry | undefined {
    if (!_tryParseId(id)) return undefined;
    const b = _probe[0]! >>> _BUCKET_SHIFT;
    const i = this.#find(b);
    this.#lastId = id;
    this.#lastAt = i;
    this.#lastWords[0] = _probe[0]!;
    this.#lastWords[1] = _probe[1]!;
    this.#lastWords[2] = _probe[2]!;
    this.#lastWords[3] = _probe[3]!;
    return i < 0 ? undefined : _entryAt(this.#words[b]!, this.#flags[b]!, i);
  }

  /** Sets the entry of `id`. Throws a TypeError when `id` is not a subscriber hash. */
  set(id: string, entry: LedgerEntry): void {
    this.#set(id, entry);
  }

  /**
   * Sets the entry of `id` as {@linkcode set} does, and packs the record of that change into
   * `into` at `offset` (32 bytes) as {@linkcode LedgerTable.packRecordInto} does: what the
   * append that makes it durable takes, without reading the id again. Nothing changes when it
   * throws.
   */
  setAndPack(id: string, entry: LedgerEntry, into: Uint8Array, offset: number): void {
    _checkRoom(into, offset);
    const at = this.#set(id, entry);
    const b = _probe[0]! >>> _BUCKET_SHIFT;
    this.#packEntry(b, at, into, offset);
  }

  /**
   * Marks the entry of `id` acknowledged (Ometria took the request that carried it), in
   * place, when it is still the one `sent` describes (same version, hash and gone; a newer
   * push may have replaced it meanwhile) and not acknowledged yet; then packs its record into
   * `into` at `offset` (32 bytes) and returns true. Returns false, changing and packing
   * nothing, otherwise.
   */
  acknowledge(
    id: string,
    sent: Pick<LedgerEntry, "versionMs" | "hash" | "gone">,
    into: Uint8Array,
    offset: number,
  ): boolean {
    _checkRoom(into, offset);
    if (!_tryParseId(id)) return false;
    const b = _probe[0]! >>> _BUCKET_SHIFT;
    const i = this.#find(b);
    if (i < 0) return false;
    const words = this.#words[b]!;
    const flags = this.#flags[b]!;
    const c = flags.length;
    const f = flags[i]!;
    if (
      (f & _ACKED) !== 0 || ((f & _GONE) !== 0) !== sent.gone ||
      words[6 * c + i]! * 1000 !== sent.versionMs || !_sameHash(sent.hash, words, 4 * c + 2 * i)
    ) return false;
    // Only a flag changes: nothing moves, so a remembered lookup stays right.
    flags[i] = f | _ACKED;
    this.#packEntry(b, i, into, offset);
    return true;
  }

  /** Deletes the entry of `id` (nothing when it has none). */
  delete(id: string): void {
    if (_tryParseId(id)) this.#remove();
  }

  /** Applies packed records in order, as `fromRecords` does. */
  apply(records: Uint8Array): void {
    const end = records.length - (records.length % LEDGER_RECORD_BYTES);
    for (let at = 0; at < end; at += LEDGER_RECORD_BYTES) {
      _idFromBytes(records, at);
      const flags = records[at + _FLAGS_AT]!;
      if ((flags & _REMOVED) !== 0) {
        this.#remove();
        continue;
      }
      const v = at + _VERSION_AT;
      const seconds = (records[v]! | (records[v + 1]! << 8) | (records[v + 2]! << 16) |
        (records[v + 3]! << 24)) >>> 0;
      // Bits 3 to 6 are kept free for later releases: ignored, not refused.
      this.#put(
        _getBigEndian(records, at + _HASH_AT),
        _getBigEndian(records, at + _HASH_AT + 4),
        seconds,
        flags & (_ACKED | _GONE | _FINAL),
      );
    }
  }

  /** Every entry, sorted by id. */
  *entries(): IterableIterator<[string, LedgerEntry]> {
    // A bucket at a time: one bucket's entries are made while the iterator is in it.
    const bucket: [string, LedgerEntry][] = [];
    for (let b = 0; b < _BUCKETS; b++) {
      this.#visit(b, true, (words, flags, i) => {
        const c = flags.length;
        _idCodesOf(words[i]!, words[c + 3 * i]!, words[c + 3 * i + 1]!, words[c + 3 * i + 2]!);
        bucket.push([String.fromCharCode.apply(null, _idCodes), _entryAt(words, flags, i)]);
      });
      yield* bucket;
      bucket.length = 0;
    }
  }

  /** The ids of the entries that are not gone, as a sorted set. */
  liveIds(): IdSet {
    const packed = new Uint8Array(this.#live * ID_BYTES);
    let at = 0;
    for (let b = 0; b < _BUCKETS; b++) {
      // Unsorted is fine: IdSet keeps its own order (by native-endian words) and sorts.
      this.#visit(b, false, (words, flags, i) => {
        if ((flags[i]! & _GONE) !== 0) return;
        const c = flags.length;
        _putBigEndian(packed, at, words[i]!);
        for (let k = 0; k < 3; k++) _putBigEndian(packed, at + 4 + 4 * k, words[c + 3 * i + k]!);
        at += ID_BYTES;
      });
    }
    return IdSet.fromPacked(packed);
  }

  /** Every entry as packed records, sorted by id; gone ones left out when `dropGone`. */
  toRecords(options?: { dropGone?: boolean }): Uint8Array {
    const dropGone = options?.dropGone ?? false;
    const out = new Uint8Array((dropGone ? this.#live : this.#size) * LEDGER_RECORD_BYTES);
    let at = 0;
    for (let b = 0; b < _BUCKETS; b++) at = this.#packBucket(b, out, at, dropGone);
    return out;
  }

  /**
   * Every entry as packed records, sorted by id, as {@linkcode LedgerTable.toRecords} gives
   * them, but in pieces of about `chunkBytes` (whole buckets, so at least one bucket) packed
   * into one buffer used again for every piece: a piece is valid only until the next is asked
   * for. Writing a compaction this way takes one small buffer instead of a second copy of the
   * whole table (32 MB at a million members, the peak of a full run's end). Each bucket is
   * packed at once, so the table may change between pieces (a writer's pushes go on while its
   * ledger is compacted): a bucket still to come is packed as it is then, and a change to one
   * already packed is in an append that follows the compaction.
   */
  *recordChunks(chunkBytes = 1 << 20): Generator<Uint8Array, void, void> {
    let buffer = new Uint8Array(Math.max(chunkBytes, LEDGER_RECORD_BYTES));
    let at = 0;
    for (let b = 0; b < _BUCKETS; b++) {
      if (at > 0 && at + this.#count[b]! * LEDGER_RECORD_BYTES > buffer.length) {
        yield buffer.subarray(0, at);
        at = 0;
      }
      // Counted again after the yield: the bucket may have grown meanwhile.
      const bytes = this.#count[b]! * LEDGER_RECORD_BYTES;
      if (at + bytes > buffer.length) {
        const grown = new Uint8Array(at + bytes);
        grown.set(buffer.subarray(0, at));
        buffer = grown;
      }
      at = this.#packBucket(b, buffer, at, false);
    }
    if (at > 0) yield buffer.subarray(0, at);
  }

  /**
   * Sets the entry of `id`, parsing and finding it unless the last `get` just did; returns
   * where it is in its bucket (the id's, left in `_probe`).
   */
  #set(id: string, entry: LedgerEntry): number {
    // Everything is checked before anything changes: a refused entry leaves the table as it was.
    const flags = _flagsOf(entry);
    const hi = _hashWord(entry.hash, 0);
    const lo = _hashWord(entry.hash, 8);
    const seconds = _seconds(entry.versionMs);
    const issued = _issued(entry.issuedSeq);
    if (id === this.#lastId) {
      _probe[0] = this.#lastWords[0]!;
      _probe[1] = this.#lastWords[1]!;
      _probe[2] = this.#lastWords[2]!;
      _probe[3] = this.#lastWords[3]!;
      return this.#put(hi, lo, seconds, flags, issued, this.#lastAt);
    }
    _parseId(id);
    return this.#put(hi, lo, seconds, flags, issued);
  }

  /** Packs entry `i` of bucket `b` into `out` at `at`. */
  #packEntry(b: number, i: number, out: Uint8Array, at: number): void {
    const words = this.#words[b]!;
    const c = this.#flags[b]!.length;
    const h = 4 * c + 2 * i;
    _writeRecord(
      out,
      at,
      words,
      i,
      c,
      words[h]!,
      words[h + 1]!,
      words[6 * c + i]!,
      this.#flags[b]![i]!,
    );
  }

  /** Packs bucket `b`'s entries into `out` from `at`, in id order; returns where it ended. */
  #packBucket(b: number, out: Uint8Array, at: number, dropGone: boolean): number {
    this.#visit(b, true, (words, flags, i) => {
      const f = flags[i]!;
      if (dropGone && (f & _GONE) !== 0) return;
      const c = flags.length;
      const h = 4 * c + 2 * i;
      _writeRecord(out, at, words, i, c, words[h]!, words[h + 1]!, words[6 * c + i]!, f);
      at += LEDGER_RECORD_BYTES;
    });
    return at;
  }

  /** Calls `visit` with each entry of bucket `b`, in id order when `sorted`. */
  #visit(
    b: number,
    sorted: boolean,
    visit: (words: Uint32Array, flags: Uint8Array, i: number) => void,
  ): void {
    if (sorted) this.#merge(b);
    const words = this.#words[b]!;
    const flags = this.#flags[b]!;
    for (let i = 0, n = this.#count[b]!; i < n; i++) visit(words, flags, i);
  }

  /** Where the id in `_probe` is in bucket `b`, or -1. */
  #find(b: number): number {
    const words = this.#words[b]!;
    const c = this.#flags[b]!.length;
    const p0 = _probe[0]!;
    const p1 = _probe[1]!;
    const p2 = _probe[2]!;
    const p3 = _probe[3]!;
    let lo = 0;
    let hi = this.#sorted[b]! - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const w = words[mid]!;
      let d = w === p0 ? 0 : w < p0 ? -1 : 1;
      if (d === 0) {
        const r = c + 3 * mid;
        d = _compare(w, words[r]!, words[r + 1]!, words[r + 2]!, p0, p1, p2, p3);
        if (d === 0) return mid;
      }
      if (d < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    for (let i = this.#sorted[b]!, n = this.#count[b]!; i < n; i++) {
      if (words[i] !== p0) continue;
      const r = c + 3 * i;
      if (words[r] === p1 && words[r + 1] === p2 && words[r + 2] === p3) return i;
    }
    return -1;
  }

  /**
   * Sets the entry of the id in `_probe`; `found` is where it is when the caller knows
   * (-1: absent). Returns where it is now.
   */
  #put(
    hi: number,
    lo: number,
    seconds: number,
    flags: number,
    issued = 0,
    found?: number,
  ): number {
    this.#lastId = "";
    const b = _probe[0]! >>> _BUCKET_SHIFT;
    let i = found ?? this.#find(b);
    if (i >= 0) {
      const before = this.#flags[b]![i]!;
      this.#live += ((before & _GONE) !== 0 ? 1 : 0) - ((flags & _GONE) !== 0 ? 1 : 0);
    } else {
      i = this.#count[b]!;
      if (i === this.#flags[b]!.length) this.#grow(b);
      const c = this.#flags[b]!.length;
      const words = this.#words[b]!;
      words[i] = _probe[0]!;
      words[c + 3 * i] = _probe[1]!;
      words[c + 3 * i + 1] = _probe[2]!;
      words[c + 3 * i + 2] = _probe[3]!;
      this.#count[b] = i + 1;
      this.#size++;
      if ((flags & _GONE) === 0) this.#live++;
    }
    const words = this.#words[b]!;
    const c = this.#flags[b]!.length;
    words[4 * c + 2 * i] = hi;
    words[4 * c + 2 * i + 1] = lo;
    words[6 * c + i] = seconds;
    words[7 * c + i] = issued;
    this.#flags[b]![i] = flags;
    if (this.#count[b]! - this.#sorted[b]! <= _TAIL_MAX) return i;
    this.#merge(b);
    return this.#find(b);
  }

  /** Deletes the entry of the id in `_probe`, if any. */
  #remove(): void {
    this.#lastId = "";
    const b = _probe[0]! >>> _BUCKET_SHIFT;
    const i = this.#find(b);
    if (i < 0) return;
    const words = this.#words[b]!;
    const flags = this.#flags[b]!;
    const c = flags.length;
    const n = this.#count[b]!;
    if ((flags[i]! & _GONE) === 0) this.#live--;
    this.#size--;
    this.#count[b] = n - 1;
    if (i >= this.#sorted[b]!) {
      // From the tail, whose order does not matter: its last entry takes the place.
      _copyEntry(words, flags, n - 1, words, flags, i);
      return;
    }
    // From the sorted run: everything after it (the tail too) moves down one, field by field.
    words.copyWithin(i, i + 1, n);
    words.copyWithin(c + 3 * i, c + 3 * (i + 1), c + 3 * n);
    words.copyWithin(4 * c + 2 * i, 4 * c + 2 * (i + 1), 4 * c + 2 * n);
    words.copyWithin(6 * c + i, 6 * c + i + 1, 6 * c + n);
    words.copyWithin(7 * c + i, 7 * c + i + 1, 7 * c + n);
    flags.copyWithin(i, i + 1, n);
    this.#sorted[b] = this.#sorted[b]! - 1;
  }

  /**
   * Moves bucket `b` to arrays of the next capacity: one allocation (words and flags share a
   * buffer) and plain loops, which for buckets of a few dozen beat a subarray and a `set` per
   * section.
   */
  #grow(b: number): void {
    const from = this.#words[b]!;
    const fromFlags = this.#flags[b]!;
    const old = fromFlags.length;
    const c = Math.max(_MIN_CAPACITY, old < _DOUBLE_BELOW ? 2 * old : Math.ceil(old * _GROWTH));
    const n = this.#count[b]!;
    const buffer = new ArrayBuffer(_ENTRY_BYTES * c);
    const words = new Uint32Array(buffer, 0, _WORDS * c);
    const flags = new Uint8Array(buffer, 4 * _WORDS * c, c);
    for (let i = 0; i < n; i++) {
      words[i] = from[i]!;
      words[6 * c + i] = from[6 * old + i]!;
      words[7 * c + i] = from[7 * old + i]!;
      flags[i] = fromFlags[i]!;
    }
    for (let i = 0; i < 3 * n; i++) words[c + i] = from[old + i]!;
    for (let i = 0; i < 2 * n; i++) words[4 * c + i] = from[4 * old + i]!;
    this.#words[b] = words;
    this.#flags[b] = flags;
    this.#capacity += c - old;
  }

  /**
   * Merges bucket `b`'s tail into its sorted run: the tail is insertion-sorted into scratch,
   * then both are merged from the back, so nothing larger than the tail is copied aside.
   */
  #merge(b: number): void {
    const s = this.#sorted[b]!;
    const n = this.#count[b]!;
    if (s === n) return;
    this.#lastId = "";
    const words = this.#words[b]!;
    const flags = this.#flags[b]!;
    const m = n - s;
    for (let t = 0; t < m; t++) {
      let j = t;
      while (j > 0 && _compareEntries(_tailWords, _tailFlags, j - 1, words, flags, s + t) > 0) {
        _copyEntry(_tailWords, _tailFlags, j - 1, _tailWords, _tailFlags, j);
        j--;
      }
      _copyEntry(words, flags, s + t, _tailWords, _tailFlags, j);
    }
    let i = s - 1;
    let j = m - 1;
    for (let k = n - 1; j >= 0; k--) {
      if (i >= 0 && _compareEntries(words, flags, i, _tailWords, _tailFlags, j) > 0) {
        _copyEntry(words, flags, i, words, flags, k);
        i--;
      } else {
        _copyEntry(_tailWords, _tailFlags, j, words, flags, k);
        j--;
      }
    }
    this.#sorted[b] = n;
  }
}

function _compare(
  a0: number,
  a1: number,
  a2: number,
  a3: number,
  b0: number,
  b1: number,
  b2: number,
  b3: number,
): number {
  if (a0 !== b0) return a0 < b0 ? -1 : 1;
  if (a1 !== b1) return a1 < b1 ? -1 : 1;
  if (a2 !== b2) return a2 < b2 ? -1 : 1;
  return a3 === b3 ? 0 : a3 < b3 ? -1 : 1;
}

/** Compares the ids of entry `i` of one bucket (or scratch) and entry `j` of another. */
function _compareEntries(
  a: Uint32Array,
  aFlags: Uint8Array,
  i: number,
  b: Uint32Array,
  bFlags: Uint8Array,
  j: number,
): number {
  const ar = aFlags.length + 3 * i;
  const br = bFlags.length + 3 * j;
  return _compare(a[i]!, a[ar]!, a[ar + 1]!, a[ar + 2]!, b[j]!, b[br]!, b[br + 1]!, b[br + 2]!);
}

/** Copies entry `i` of one bucket (or scratch) to entry `j` of another, field by field. */
function _copyEntry(
  from: Uint32Array,
  fromFlags: Uint8Array,
  i: number,
  to: Uint32Array,
  toFlags: Uint8Array,
  j: number,
): void {
  const fc = fromFlags.length;
  const tc = toFlags.length;
  to[j] = from[i]!;
  to[tc + 3 * j] = from[fc + 3 * i]!;
  to[tc + 3 * j + 1] = from[fc + 3 * i + 1]!;
  to[tc + 3 * j + 2] = from[fc + 3 * i + 2]!;
  to[4 * tc + 2 * j] = from[4 * fc + 2 * i]!;
  to[4 * tc + 2 * j + 1] = from[4 * fc + 2 * i + 1]!;
  to[6 * tc + j] = from[6 * fc + i]!;
  to[7 * tc + j] = from[7 * fc + i]!;
  toFlags[j] = fromFlags[i]!;
}

/** Entry `i` of a bucket as the object callers get. */
function _entryAt(words: Uint32Array, flags: Uint8Array, i: number): LedgerEntry {
  const c = flags.length;
  const f = flags[i]!;
  const issued = words[7 * c + i]!;
  const versionMs = words[6 * c + i]! * 1000;
  const hash = _hashText(words[4 * c + 2 * i]!, words[4 * c + 2 * i + 1]!);
  const acked = (f & _ACKED) !== 0;
  const gone = (f & _GONE) !== 0;
  const final = (f & _FINAL) !== 0;
  // Two literals, not a spread: no object made and thrown away per entry.
  return issued > 0
    ? { versionMs, hash, acked, gone, final, issuedSeq: issued }
    : { versionMs, hash, acked, gone, final };
}

/**
 * Writes a record at `at` of `out`: the id from `ids` (its first word at `i`, the other three
 * at `c + 3i`, as in a bucket; `_probe` is such an array with i = 0, c = 1), then the rest.
 */
function _writeRecord(
  out: Uint8Array,
  at: number,
  ids: Uint32Array,
  i: number,
  c: number,
  hi: number,
  lo: number,
  seconds: number,
  flags: number,
): void {
  _putBigEndian(out, at, ids[i]!);
  for (let k = 0; k < 3; k++) _putBigEndian(out, at + 4 + 4 * k, ids[c + 3 * i + k]!);
  _putBigEndian(out, at + _HASH_AT, hi);
  _putBigEndian(out, at + _HASH_AT + 4, lo);
  out[at + _VERSION_AT] = seconds & 0xff;
  out[at + _VERSION_AT + 1] = (seconds >>> 8) & 0xff;
  out[at + _VERSION_AT + 2] = (seconds >>> 16) & 0xff;
  out[at + _VERSION_AT + 3] = seconds >>> 24;
  out[at + _FLAGS_AT] = flags;
  out[at + _FLAGS_AT + 1] = 0;
  out[at + _FLAGS_AT + 2] = 0;
  out[at + _FLAGS_AT + 3] = 0;
}

// Each ASCII code's value as a lowercase hex digit, -1 for any other.
const _HEX_VALUE = new Int8Array(128).fill(-1);
for (let d = 0; d < 16; d++) _HEX_VALUE["0123456789abcdef".charCodeAt(d)] = d;

/** Eight hex digits of `text` at `at` as a word, or -1 when one is not lowercase hex. */
function _word(text: string, at: number): number {
  // Branch-free: a digit that is not one (a code past 127 included) makes `bad` negative.
  let w = 0;
  let bad = 0;
  for (let k = at; k < at + 8; k++) {
    const c = text.charCodeAt(k);
    const n = _HEX_VALUE[c & 127]!;
    bad |= n | (127 - c);
    w = (w << 4) | n;
  }
  return bad < 0 ? -1 : w >>> 0;
}

/** Reads `id` into `_probe`; false when it is not a subscriber hash. */
function _tryParseId(id: string): boolean {
  if (id.length !== 32) return false;
  for (let k = 0; k < 4; k++) {
    const w = _word(id, 8 * k);
    if (w < 0) return false;
    _probe[k] = w;
  }
  return true;
}

function _parseId(id: string): void {
  if (!_tryParseId(id)) {
    throw new TypeError(`Cannot store member id '${id}': it is not 32 lowercase hex digits`);
  }
}

/** Reads the 16 id bytes at `at` into `_probe`. */
function _idFromBytes(bytes: Uint8Array, at: number): void {
  for (let k = 0; k < 4; k++) _probe[k] = _getBigEndian(bytes, at + 4 * k);
}

/** Word `at` (0 or 8) of a hash's hex digits; 0 for the unknown hash "". */
function _hashWord(hash: string, at: number): number {
  if (hash === "") return 0;
  const w = hash.length === 16 ? _word(hash, at) : -1;
  if (w < 0) {
    throw new TypeError(`Cannot store record hash '${hash}': it is not 16 lowercase hex digits`);
  }
  if (hash === "0000000000000000") {
    throw new TypeError(
      "Cannot store record hash '0000000000000000': packed records keep it for an unknown " +
        'hash (""), and recordHash() never gives it',
    );
  }
  return w;
}

function _checkRoom(into: Uint8Array, offset: number): void {
  if (!(offset >= 0 && offset + LEDGER_RECORD_BYTES <= into.length)) {
    throw new RangeError(
      `Cannot pack a ledger record at offset ${offset}: it needs ${LEDGER_RECORD_BYTES} ` +
        `bytes of a buffer of ${into.length}`,
    );
  }
}

/** Whether `hash` is the one whose two words are at `at` of `words` (false for no hash). */
function _sameHash(hash: string, words: Uint32Array, at: number): boolean {
  if (hash === "") return words[at] === 0 && words[at + 1] === 0;
  if (hash.length !== 16) return false;
  const hi = _word(hash, 0);
  // -1 (not hex) is never a stored word: words are unsigned.
  return hi === words[at] && _word(hash, 8) === words[at + 1];
}

function _seconds(versionMs: number): number {
  const seconds = versionMs / 1000;
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 0xffffffff) {
    throw new RangeError(
      `Cannot store version ${versionMs}: it must be whole seconds in epoch ms, from 0 to ` +
        `${0xffffffff * 1000}`,
    );
  }
  return seconds;
}

function _issued(seq: number | undefined): number {
  if (seq === undefined) return 0;
  if (!Number.isInteger(seq) || seq < 0 || seq > 0xffffffff) {
    throw new RangeError(`Cannot store issuedSeq ${seq}: it must be an integer from 0 to 2^32 - 1`);
  }
  return seq;
}

function _flagsOf(entry: LedgerEntry): number {
  return (entry.acked ? _ACKED : 0) | (entry.gone ? _GONE : 0) | (entry.final ? _FINAL : 0);
}

function _getBigEndian(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>>
    0;
}

function _putBigEndian(bytes: Uint8Array, at: number, w: number): void {
  bytes[at] = w >>> 24;
  bytes[at + 1] = (w >>> 16) & 0xff;
  bytes[at + 2] = (w >>> 8) & 0xff;
  bytes[at + 3] = w & 0xff;
}

/** Fills `_idCodes` with the hex digits of an id's four words. */
function _idCodesOf(w0: number, w1: number, w2: number, w3: number): void {
  _wordCodes(_idCodes, 0, w0);
  _wordCodes(_idCodes, 8, w1);
  _wordCodes(_idCodes, 16, w2);
  _wordCodes(_idCodes, 24, w3);
}

function _wordCodes(codes: number[], at: number, w: number): void {
  for (let d = 0; d < 8; d++) {
    const n = (w >>> (28 - 4 * d)) & 15;
    codes[at + d] = n < 10 ? 48 + n : 87 + n;
  }
}

/** A hash's two words as its 16 hex digits (one string made); "" for the unknown hash. */
function _hashText(hi: number, lo: number): string {
  if (hi === 0 && lo === 0) return "";
  _wordCodes(_hashCodes, 0, hi);
  _wordCodes(_hashCodes, 8, lo);
  const h = _hashCodes;
  return String.fromCharCode(
    h[0]!,
    h[1]!,
    h[2]!,
    h[3]!,
    h[4]!,
    h[5]!,
    h[6]!,
    h[7]!,
    h[8]!,
    h[9]!,
    h[10]!,
    h[11]!,
    h[12]!,
    h[13]!,
    h[14]!,
    h[15]!,
  );
}
