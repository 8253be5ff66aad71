/**
 * A compact, sorted set of Mailchimp member ids (32 hex digits, the MD5 of the lowercased
 * email): 16 bytes an id, so a million ids take 16 MB instead of the ~100 MB a `Set` of
 * strings would. Reconciliation compares two of these.
 *
 * @module
 */

/** Bytes one id takes. */
export const ID_BYTES = 16;

const _HEX = /^[0-9a-f]{32}$/;

/** True when `id` has the shape of a Mailchimp member id (32 lowercase hex digits). */
export function isMemberId(id: string): boolean {
  return _HEX.test(id);
}

/** Writes the 16 bytes of `id` at `offset` of `into`. Throws a TypeError for another shape. */
export function packId(id: string, into: Uint8Array, offset: number): void {
  if (!_HEX.test(id)) {
    throw new TypeError(`Cannot store member id '${id}': it is not 32 lowercase hex digits`);
  }
  // Character codes, not parseInt of substrings: a million ids would make 16 million strings.
  for (let i = 0; i < ID_BYTES; i++) {
    into[offset + i] = (_nibble(id.charCodeAt(2 * i)) << 4) | _nibble(id.charCodeAt(2 * i + 1));
  }
}

// '0'–'9' are 48–57 and 'a'–'f' 97–102 (the id was checked to be lowercase hex).
function _nibble(code: number): number {
  return code <= 57 ? code - 48 : code - 87;
}

const _HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** The id stored at `offset` of `bytes`. */
export function unpackId(bytes: Uint8Array, offset: number): string {
  let s = "";
  for (let i = 0; i < ID_BYTES; i++) s += _HEX_BYTE[bytes[offset + i]!];
  return s;
}

/** Packs ids into a fresh buffer, 16 bytes each, in the order given. */
export function packIds(ids: readonly string[]): Uint8Array {
  const bytes = new Uint8Array(ids.length * ID_BYTES);
  ids.forEach((id, i) => packId(id, bytes, i * ID_BYTES));
  return bytes;
}

// Ids are compared as four 32-bit words (the platform's byte order): any total order serves
// a set, as long as sorting, searching and merging all use the same one.
function _compare(a: Uint32Array, i: number, b: Uint32Array, j: number): number {
  for (let k = 0; k < 4; k++) {
    const d = a[i + k]! - b[j + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

function _swap(w: Uint32Array, i: number, j: number): void {
  for (let k = 0; k < 4; k++) {
    const t = w[i + k]!;
    w[i + k] = w[j + k]!;
    w[j + k] = t;
  }
}

// In-place quicksort of 4-word records (median of three, insertion sort for short runs): no
// index array and no second buffer, so sorting a million ids needs no memory beyond them.
function _sort(w: Uint32Array, lo: number, hi: number): void {
  while (hi - lo > 16) {
    const mid = lo + ((hi - lo) >> 1);
    if (_compare(w, mid * 4, w, lo * 4) < 0) _swap(w, mid * 4, lo * 4);
    if (_compare(w, hi * 4, w, lo * 4) < 0) _swap(w, hi * 4, lo * 4);
    if (_compare(w, hi * 4, w, mid * 4) < 0) _swap(w, hi * 4, mid * 4);
    _swap(w, mid * 4, (hi - 1) * 4);
    const pivot = (hi - 1) * 4;
    let i = lo;
    let j = hi - 1;
    for (;;) {
      while (_compare(w, (++i) * 4, w, pivot) < 0);
      while (_compare(w, (--j) * 4, w, pivot) > 0);
      if (i >= j) break;
      _swap(w, i * 4, j * 4);
    }
    _swap(w, i * 4, (hi - 1) * 4);
    // Recurse into the smaller side, loop over the larger: the stack stays O(log n).
    if (i - lo < hi - i) {
      _sort(w, lo, i - 1);
      lo = i + 1;
    } else {
      _sort(w, i + 1, hi);
      hi = i - 1;
    }
  }
  for (let i = lo + 1; i <= hi; i++) {
    for (let j = i; j > lo && _compare(w, j * 4, w, (j - 1) * 4) < 0; j--) {
      _swap(w, j * 4, (j - 1) * 4);
    }
  }
}

/** A sorted set of member ids in one buffer. Immutable once built. */
export class IdSet {
  /** `size` ids of 16 bytes, sorted, distinct. */
  readonly bytes: Uint8Array;
  #words: Uint32Array;

  private constructor(words: Uint32Array) {
    this.#words = words;
    this.bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  }

  /** The empty set. */
  static empty(): IdSet {
    return new IdSet(new Uint32Array(0));
  }

  /**
   * Builds a set from packed ids in any order, with repeats (e.g. a ledger file's appends).
   * Sorts `packed` in place when it is aligned, so the caller must not use it afterwards.
   */
  static fromPacked(packed: Uint8Array): IdSet {
    const n = Math.floor(packed.length / ID_BYTES);
    const aligned = packed.byteOffset % 4 === 0 ? packed : packed.slice();
    const w = new Uint32Array(aligned.buffer, aligned.byteOffset, n * 4);
    if (n > 1) _sort(w, 0, n - 1);
    let size = 0;
    for (let i = 0; i < n; i++) {
      if (size > 0 && _compare(w, (size - 1) * 4, w, i * 4) === 0) continue;
      if (size !== i) w.copyWithin(size * 4, i * 4, i * 4 + 4);
      size++;
    }
    // A copy of the distinct part, so a large buffer with many repeats is not kept.
    return new IdSet(size === n ? w : w.slice(0, size * 4));
  }

  /** Builds a set from ids given as text. */
  static of(ids: Iterable<string>): IdSet {
    return IdSet.fromPacked(packIds([...ids]));
  }

  /** Number of ids. */
  get size(): number {
    return this.#words.length / 4;
  }

  /** Whether `id` is in the set (binary search). */
  has(id: string): boolean {
    if (!_HEX.test(id)) return false;
    const probe = new Uint8Array(ID_BYTES);
    packId(id, probe, 0);
    const p = new Uint32Array(probe.buffer);
    let lo = 0;
    let hi = this.size - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = _compare(this.#words, mid * 4, p, 0);
      if (c === 0) return true;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  /** The ids in order, as text. */
  *[Symbol.iterator](): IterableIterator<string> {
    for (let i = 0; i < this.bytes.length; i += ID_BYTES) yield unpackId(this.bytes, i);
  }

  /**
   * This set without the ids of `remove`, compacted in place: it reuses this set's buffer,
   * so a million ids need no second copy. This set must not be used afterwards.
   */
  consumeWithout(remove: IdSet): IdSet {
    if (remove.size === 0) return this;
    const a = this.#words;
    const r = remove.#words;
    let n = 0;
    let j = 0;
    for (let i = 0; i < a.length; i += 4) {
      while (j < r.length && _compare(r, j, a, i) < 0) j += 4;
      if (j < r.length && _compare(r, j, a, i) === 0) continue;
      if (n !== i) a.copyWithin(n, i, i + 4);
      n += 4;
    }
    return new IdSet(a.subarray(0, n));
  }

  /** The ids of this set that are not in `other` (a merge of two sorted buffers). */
  minus(other: IdSet): string[] {
    const out: string[] = [];
    const a = this.#words;
    const b = other.#words;
    let i = 0;
    let j = 0;
    while (i < a.length) {
      const c = j < b.length ? _compare(a, i, b, j) : -1;
      if (c < 0) {
        out.push(unpackId(this.bytes, i * 4));
        i += 4;
      } else if (c === 0) {
        i += 4;
        j += 4;
      } else j += 4;
    }
    return out;
  }
}
