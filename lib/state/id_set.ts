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
  for (let i = 0; i < ID_BYTES; i++) {
    into[offset + i] = parseInt(id.slice(2 * i, 2 * i + 2), 16);
  }
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

function _compare(a: Uint8Array, i: number, b: Uint8Array, j: number): number {
  for (let k = 0; k < ID_BYTES; k++) {
    const d = a[i + k]! - b[j + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** A sorted set of member ids in one buffer. Immutable once built. */
export class IdSet {
  /** `size` ids of 16 bytes, sorted, distinct. */
  readonly bytes: Uint8Array;

  private constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  /** The empty set. */
  static empty(): IdSet {
    return new IdSet(new Uint8Array(0));
  }

  /**
   * Builds a set from packed ids in any order, with repeats (e.g. a ledger file's appends).
   * `packed` is not kept.
   */
  static fromPacked(packed: Uint8Array): IdSet {
    const n = Math.floor(packed.length / ID_BYTES);
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((x, y) => _compare(packed, x * ID_BYTES, packed, y * ID_BYTES));
    const out = new Uint8Array(n * ID_BYTES);
    let size = 0;
    for (let k = 0; k < n; k++) {
      const from = order[k]! * ID_BYTES;
      if (size > 0 && _compare(out, (size - 1) * ID_BYTES, packed, from) === 0) continue;
      out.set(packed.subarray(from, from + ID_BYTES), size * ID_BYTES);
      size++;
    }
    return new IdSet(out.slice(0, size * ID_BYTES));
  }

  /** Builds a set from ids given as text. */
  static of(ids: Iterable<string>): IdSet {
    return IdSet.fromPacked(packIds([...ids]));
  }

  /** Number of ids. */
  get size(): number {
    return this.bytes.length / ID_BYTES;
  }

  /** Whether `id` is in the set (binary search). */
  has(id: string): boolean {
    if (!_HEX.test(id)) return false;
    const probe = new Uint8Array(ID_BYTES);
    packId(id, probe, 0);
    let lo = 0;
    let hi = this.size - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = _compare(this.bytes, mid * ID_BYTES, probe, 0);
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

  /** The ids of this set that are not in `other` (a merge of two sorted buffers). */
  minus(other: IdSet): string[] {
    const out: string[] = [];
    const a = this.bytes;
    const b = other.bytes;
    let i = 0;
    let j = 0;
    while (i < a.length) {
      const c = j < b.length ? _compare(a, i, b, j) : -1;
      if (c < 0) {
        out.push(unpackId(a, i));
        i += ID_BYTES;
      } else if (c === 0) {
        i += ID_BYTES;
        j += ID_BYTES;
      } else j += ID_BYTES;
    }
    return out;
  }
}
