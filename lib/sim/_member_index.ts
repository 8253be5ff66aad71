/**
 * The storage behind one simulated Mailchimp list, built so that a 1,000,000-member list
 * answers the sync's requests (`sort_field=last_changed`, a `since`/`before` window, an
 * offset, 1000 per page) in O(log n + page):
 *
 * - members live in creation order ("slots"), which is Mailchimp's default order;
 * - every change appends a "version" to a second sequence ordered by `last_changed`; the
 *   version it supersedes becomes a tombstone, so an update costs O(log n) and nothing moves;
 * - both sequences carry a Fenwick tree of live entries per status, so "how many members
 *   of these statuses lie before position p" and "where is the k-th of them" are O(log n),
 *   whatever the status filter;
 * - when tombstones outnumber live entries, or a change was stamped earlier than the
 *   newest version (a clock that went backwards), the next read rebuilds both sequences
 *   in O(n log n): rare, and it keeps every other operation simple.
 *
 * @module
 */
import { MEMBER_STATUSES, type MemberStatus } from "../mailchimp/member.ts";

/**
 * One member as the simulator stores it: immutable (a change replaces the record), times
 * in whole seconds since the epoch so that windows compare numbers, not strings.
 */
export interface MemberRecord {
  /** MD5 of the lowercased email address, as Mailchimp computes it. */
  readonly id: string;
  /** The address as first written (case kept). */
  readonly email: string;
  /** The member's status. */
  readonly status: MemberStatus;
  /** `merge_fields.FNAME` (may be empty). */
  readonly fname: string;
  /** `merge_fields.LNAME` (may be empty). */
  readonly lname: string;
  /** `last_changed` in whole seconds. */
  readonly changed: number;
  /** `timestamp_opt` in whole seconds, or -1 when Mailchimp would send "". */
  readonly opt: number;
  /** `timestamp_signup` in whole seconds, or -1 when Mailchimp would send "". */
  readonly signup: number;
  /**
   * Fields set by hand (`upsertMember`) beyond the names: merge fields, tags, interests,
   * language, VIP, rating, country. Absent, they are derived from the id and the list's
   * profile, which costs no memory on a million members.
   */
  readonly extra?: MemberExtras;
}

/** A member's fields beyond id, email, status, names and times (see `member_data.ts`). */
export interface MemberExtras {
  /** Merge fields other than FNAME and LNAME, by tag (an address is an object). */
  readonly merge: Readonly<Record<string, unknown>>;
  /** Tag names. */
  readonly tags: readonly string[];
  /** Interest id → whether the member has it. */
  readonly interests: Readonly<Record<string, boolean>>;
  readonly language: string;
  readonly vip: boolean;
  /** 1 to 5 stars. */
  readonly member_rating: number;
  /** `location.country_code` (ISO 3166-1 alpha-2, or ""). */
  readonly country_code: string;
}

/** Index of each status in {@linkcode MEMBER_STATUSES}: the class a Fenwick tree counts. */
export const STATUS_CLASS: Readonly<Record<MemberStatus, number>> = Object.fromEntries(
  MEMBER_STATUSES.map((s, i) => [s, i]),
) as Record<MemberStatus, number>;

/** The class mask that selects every status. */
export const ALL_STATUSES_MASK: number = (1 << MEMBER_STATUSES.length) - 1;

/** The class mask selecting the given statuses (an OR of `1 << STATUS_CLASS[s]`). */
export function statusMask(statuses: readonly MemberStatus[]): number {
  let mask = 0;
  for (const s of statuses) mask |= 1 << STATUS_CLASS[s];
  return mask;
}

const _K = MEMBER_STATUSES.length;
const _DEAD = -1;
const _MIN_CAPACITY = 1024;

/** Class lists of every mask, so the hot loops iterate only the classes asked for. */
const _MASK_CLASSES: readonly number[][] = Array.from(
  { length: 1 << _K },
  (_, mask) => Array.from({ length: _K }, (_, c) => c).filter((c) => (mask >> c) & 1),
);

/**
 * An append-only sequence of entries, each dead or of one class in [0, K), with a Fenwick
 * tree per class (interleaved in one array for locality). Positions never move until
 * {@linkcode ClassedSequence.load} replaces the whole content.
 */
export class ClassedSequence {
  #cap = 0;
  #len = 0;
  #top = 1;
  #cls = new Int8Array(0);
  #tree = new Int32Array(0);

  constructor() {
    this.load(new Int8Array(0), 0);
  }

  /** Number of entries, dead ones included. */
  get length(): number {
    return this.#len;
  }

  /** Class of the entry at `pos`, or -1 when it is dead. */
  classOf(pos: number): number {
    return this.#cls[pos] ?? _DEAD;
  }

  /** Appends an entry of class `cls` (-1 for dead) and returns its position. */
  push(cls: number): number {
    if (this.#len === this.#cap) this.#resize(this.#cap * 2);
    const pos = this.#len++;
    this.#cls[pos] = cls;
    if (cls >= 0) this.#add(pos, cls, 1);
    return pos;
  }

  /** Changes the class of the entry at `pos` (-1 kills it). */
  set(pos: number, cls: number): void {
    const old = this.#cls[pos] ?? _DEAD;
    if (old === cls) return;
    if (old >= 0) this.#add(pos, old, -1);
    this.#cls[pos] = cls;
    if (cls >= 0) this.#add(pos, cls, 1);
  }

  /** Live entries with a class in `mask` among positions [0, end). */
  prefix(end: number, mask: number): number {
    const classes = _MASK_CLASSES[mask] ?? [];
    const tree = this.#tree;
    let sum = 0;
    for (let j = Math.min(end, this.#cap); j > 0; j -= j & -j) {
      const base = j * _K;
      for (const c of classes) sum += tree[base + c]!;
    }
    return sum;
  }

  /** Position of the live entry of rank `k` (0-based) among those with a class in `mask`, or -1. */
  select(k: number, mask: number): number {
    if (k < 0) return -1;
    const classes = _MASK_CLASSES[mask] ?? [];
    const tree = this.#tree;
    let pos = 0;
    let rest = k;
    for (let step = this.#top; step > 0; step >>= 1) {
      const next = pos + step;
      if (next > this.#cap) continue;
      const base = next * _K;
      let s = 0;
      for (const c of classes) s += tree[base + c]!;
      if (s <= rest) {
        pos = next;
        rest -= s;
      }
    }
    return pos < this.#len ? pos : -1;
  }

  /** Replaces the whole content by the first `len` classes of `classes`, in O(len). */
  load(classes: Int8Array, len: number): void {
    const cap = Math.max(_MIN_CAPACITY, Math.ceil(len * 1.25));
    this.#cls = new Int8Array(cap);
    this.#cls.set(classes.subarray(0, len));
    this.#len = len;
    this.#cap = cap;
    this.#build();
  }

  #resize(cap: number): void {
    const cls = new Int8Array(cap);
    cls.set(this.#cls.subarray(0, this.#len));
    this.#cls = cls;
    this.#cap = cap;
    this.#build();
  }

  #build(): void {
    const cap = this.#cap;
    const tree = new Int32Array((cap + 1) * _K);
    for (let i = 0; i < this.#len; i++) {
      const c = this.#cls[i]!;
      if (c >= 0) tree[(i + 1) * _K + c]! += 1;
    }
    for (let i = 1; i <= cap; i++) {
      const j = i + (i & -i);
      if (j > cap) continue;
      for (let c = 0; c < _K; c++) tree[j * _K + c]! += tree[i * _K + c]!;
    }
    this.#tree = tree;
    let top = 1;
    while (top * 2 <= cap) top *= 2;
    this.#top = top;
  }

  #add(pos: number, cls: number, delta: number): void {
    const tree = this.#tree;
    for (let j = pos + 1; j <= this.#cap; j += j & -j) tree[j * _K + cls]! += delta;
  }
}

/** A `last_changed` window: whole seconds, each edge optional and inclusive or not. */
export interface ChangeWindow {
  /** Lower edge in seconds; none when undefined. */
  since?: number | undefined;
  /** Whether a member changed exactly at `since` is inside. */
  sinceInclusive: boolean;
  /** Upper edge in seconds; none when undefined. */
  before?: number | undefined;
  /** Whether a member changed exactly at `before` is inside. */
  beforeInclusive: boolean;
}

/** Which slice of an ordered, filtered listing to return. */
export interface PageRequest {
  /** Statuses to keep, as a class mask (see {@linkcode statusMask}). */
  mask: number;
  /** Rank of the first member returned. */
  offset: number;
  /** At most this many members. */
  count: number;
  /** Newest first. */
  desc?: boolean;
  /**
   * When set, members sharing one `last_changed` come in an order shuffled by this key
   * (a fresh key per request plays a server whose tie order changes between requests).
   */
  tieKey?: number | undefined;
}

/** A page of records and the number of members matching the filters. */
export interface RecordPage {
  /** Members matching the filters, whatever the page. */
  total: number;
  /** The page. */
  records: MemberRecord[];
}

/**
 * Every live member of one list, indexed by creation order and by `last_changed` (see
 * the module documentation for the structure and costs).
 */
export class MemberIndex {
  #records: (MemberRecord | undefined)[] = [];
  #slotVersion = new Int32Array(_MIN_CAPACITY);
  #slots = new ClassedSequence();
  #byId = new Map<string, number>();
  #versions = new ClassedSequence();
  #vTime = new Float64Array(_MIN_CAPACITY);
  #vSlot = new Int32Array(_MIN_CAPACITY);
  #sorted = true;
  #newest = -Infinity;

  /** Number of live members. */
  get size(): number {
    return this.#byId.size;
  }

  /** The live member with this id, if any. */
  get(id: string): MemberRecord | undefined {
    const slot = this.#byId.get(id);
    return slot === undefined ? undefined : this.#records[slot];
  }

  /**
   * Stores `record` as the current state of its member: a new member goes last in creation
   * order, an existing one keeps its place there and gets a new version. O(log n), plus a
   * deferred re-sort when `record.changed` is older than the newest version.
   */
  put(record: MemberRecord): void {
    const cls = STATUS_CLASS[record.status];
    let slot = this.#byId.get(record.id);
    if (slot === undefined) {
      slot = this.#slots.push(cls);
      this.#byId.set(record.id, slot);
    } else {
      this.#versions.set(this.#slotVersion[slot]!, _DEAD);
      this.#slots.set(slot, cls);
    }
    this.#records[slot] = record;
    if (slot >= this.#slotVersion.length) {
      const grown = new Int32Array(this.#slotVersion.length * 2);
      grown.set(this.#slotVersion);
      this.#slotVersion = grown;
    }
    this.#slotVersion[slot] = this.#pushVersion(record.changed, slot, cls);
  }

  /**
   * Stores many records as `put` would, in O(n) plus one sort: into an empty index (the
   * seeded million-member list) the records are laid out directly, without a tree update
   * per member.
   */
  putAll(records: readonly MemberRecord[]): void {
    if (this.#slots.length > 0) {
      for (const r of records) this.put(r);
      this.#fresh();
      return;
    }
    const byId = new Map<string, number>();
    const live: MemberRecord[] = [];
    for (const r of records) {
      const slot = byId.get(r.id);
      if (slot === undefined) {
        byId.set(r.id, live.length);
        live.push(r);
      } else {
        live[slot] = r;
      }
    }
    const order = new Int32Array(live.length);
    for (let s = 0; s < order.length; s++) order[s] = s;
    this.#install(live, byId, order);
  }

  /** Forgets the member with this id (permanent deletion). Returns whether it existed. */
  delete(id: string): boolean {
    const slot = this.#byId.get(id);
    if (slot === undefined) return false;
    this.#byId.delete(id);
    this.#records[slot] = undefined;
    this.#slots.set(slot, _DEAD);
    this.#versions.set(this.#slotVersion[slot]!, _DEAD);
    return true;
  }

  /** Live members with a status in `mask`. */
  count(mask: number): number {
    this.#fresh();
    return this.#slots.prefix(this.#slots.length, mask);
  }

  /** The live member of creation rank `k` (0-based) among every status. */
  at(k: number): MemberRecord | undefined {
    this.#fresh();
    const slot = this.#slots.select(k, ALL_STATUSES_MASK);
    return slot < 0 ? undefined : this.#records[slot];
  }

  /** Every live member in creation order (O(n): for rare requests and for `truth`). */
  all(): MemberRecord[] {
    const out: MemberRecord[] = [];
    for (const r of this.#records) if (r !== undefined) out.push(r);
    return out;
  }

  /** A page in creation order (Mailchimp's default order). `desc` and `tieKey` are ignored. */
  pageByCreation(page: PageRequest): RecordPage {
    this.#fresh();
    const seq = this.#slots;
    const total = seq.prefix(seq.length, page.mask);
    const records: MemberRecord[] = [];
    const n = Math.max(0, Math.min(page.count, total - page.offset));
    let pos = n > 0 ? seq.select(page.offset, page.mask) : -1;
    for (; pos >= 0 && pos < seq.length && records.length < n; pos++) {
      const c = seq.classOf(pos);
      if (c >= 0 && (page.mask >> c) & 1) records.push(this.#records[pos]!);
    }
    return { total, records };
  }

  /** A page of the members inside `window`, ordered by `last_changed`. */
  pageByChange(window: ChangeWindow, page: PageRequest): RecordPage {
    this.#fresh();
    const seq = this.#versions;
    const len = seq.length;
    const lo = window.since === undefined
      ? 0
      : window.sinceInclusive
      ? this.#lowerBound(window.since)
      : this.#upperBound(window.since);
    const hi = Math.max(
      lo,
      window.before === undefined
        ? len
        : window.beforeInclusive
        ? this.#upperBound(window.before)
        : this.#lowerBound(window.before),
    );
    const skipped = seq.prefix(lo, page.mask);
    const total = seq.prefix(hi, page.mask) - skipped;
    const n = Math.max(0, Math.min(page.count, total - page.offset));
    // Ranks counted from the window's oldest member, in the order they are returned.
    const first = page.desc ? total - 1 - page.offset : page.offset;
    const step = page.desc ? -1 : 1;
    const records: MemberRecord[] = [];
    if (n === 0) return { total, records };
    if (page.tieKey === undefined) {
      let pos = seq.select(skipped + first, page.mask);
      for (; pos >= 0 && pos < len && records.length < n; pos += step) {
        const c = seq.classOf(pos);
        if (c >= 0 && (page.mask >> c) & 1) records.push(this.#recordOfVersion(pos));
      }
      return { total, records };
    }
    // Shuffled ties: map each rank through a per-(request, second) permutation of its
    // tie group, so every request sees a different but complete order of each group.
    let groupStart = 0;
    let groupEnd = 0;
    let groupKey = 0;
    for (let i = 0, rank = first; i < n; i++, rank += step) {
      if (rank < groupStart || rank >= groupEnd) {
        const t = this.#vTime[seq.select(skipped + rank, page.mask)]!;
        groupStart = seq.prefix(this.#lowerBound(t), page.mask) - skipped;
        groupEnd = seq.prefix(this.#upperBound(t), page.mask) - skipped;
        groupKey = mix32(page.tieKey ^ mix32(t));
      }
      const shuffled = groupStart + _permute(rank - groupStart, groupEnd - groupStart, groupKey);
      records.push(this.#recordOfVersion(seq.select(skipped + shuffled, page.mask)));
    }
    return { total, records };
  }

  #recordOfVersion(pos: number): MemberRecord {
    return this.#records[this.#vSlot[pos]!]!;
  }

  #pushVersion(time: number, slot: number, cls: number): number {
    const pos = this.#versions.push(cls);
    if (pos >= this.#vTime.length) {
      const times = new Float64Array(this.#vTime.length * 2);
      times.set(this.#vTime);
      this.#vTime = times;
      const slots = new Int32Array(this.#vSlot.length * 2);
      slots.set(this.#vSlot);
      this.#vSlot = slots;
    }
    this.#vTime[pos] = time;
    this.#vSlot[pos] = slot;
    if (time < this.#newest) this.#sorted = false;
    else this.#newest = time;
    return pos;
  }

  /** First version position whose time is >= t. */
  #lowerBound(t: number): number {
    let lo = 0;
    let hi = this.#versions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#vTime[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** First version position whose time is > t. */
  #upperBound(t: number): number {
    let lo = 0;
    let hi = this.#versions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#vTime[mid]! <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Rebuilds before a read when versions are out of order or tombstones dominate. */
  #fresh(): void {
    const live = this.#byId.size;
    const slack = live + _MIN_CAPACITY;
    if (
      this.#sorted && this.#versions.length - live <= slack &&
      this.#slots.length - live <= slack
    ) return;
    this.#rebuild();
  }

  #rebuild(): void {
    const live = this.#byId.size;
    let records = this.#records as MemberRecord[];
    let byId = this.#byId;
    let newSlot: Int32Array | undefined;
    if (this.#slots.length !== live) {
      records = new Array(live);
      byId = new Map();
      newSlot = new Int32Array(this.#slots.length);
      let n = 0;
      for (let s = 0; s < this.#slots.length; s++) {
        const r = this.#records[s];
        if (r === undefined) continue;
        newSlot[s] = n;
        byId.set(r.id, n);
        records[n++] = r;
      }
    }
    // Live versions in position order: the order members sharing a second keep.
    const order = new Int32Array(live);
    let n = 0;
    for (let p = 0; p < this.#versions.length; p++) {
      if (this.#versions.classOf(p) < 0) continue;
      const slot = this.#vSlot[p]!;
      order[n++] = newSlot === undefined ? slot : newSlot[slot]!;
    }
    this.#install(records, byId, order);
  }

  /**
   * Replaces the whole content: `records` in creation order, and `order`, the slots in the
   * order their versions had (a stable sort by `last_changed` keeps it among ties).
   */
  #install(records: MemberRecord[], byId: Map<string, number>, order: Int32Array): void {
    const live = records.length;
    const sClass = new Int8Array(live);
    for (let slot = 0; slot < live; slot++) sClass[slot] = STATUS_CLASS[records[slot]!.status];
    const times = _stableSortByTime(order, (slot) => records[slot]!.changed);
    const cap = Math.max(_MIN_CAPACITY, Math.ceil(live * 1.25));
    const vTime = new Float64Array(cap);
    vTime.set(times);
    const vSlot = new Int32Array(cap);
    vSlot.set(order);
    const vClass = new Int8Array(live);
    const slotVersion = new Int32Array(cap);
    for (let i = 0; i < live; i++) {
      const slot = order[i]!;
      vClass[i] = sClass[slot]!;
      slotVersion[slot] = i;
    }
    this.#records = records;
    this.#byId = byId;
    this.#slotVersion = slotVersion;
    this.#slots.load(sClass, live);
    this.#versions.load(vClass, live);
    this.#vTime = vTime;
    this.#vSlot = vSlot;
    this.#sorted = true;
    this.#newest = live > 0 ? vTime[live - 1]! : -Infinity;
  }
}

/**
 * Sorts `items` by `time(item)`, keeping the current order among equal times, and returns
 * the times in the new order. Times are whole seconds, so a two-pass radix sort does it in
 * O(n) (a million members sort in tens of milliseconds); anything else falls back to a
 * comparison sort.
 */
function _stableSortByTime(items: Int32Array, time: (item: number) => number): Float64Array {
  const n = items.length;
  const keys = new Float64Array(n);
  let min = Infinity;
  let max = -Infinity;
  let sorted = true;
  let integers = true;
  for (let i = 0; i < n; i++) {
    const t = time(items[i]!);
    keys[i] = t;
    if (i > 0 && t < keys[i - 1]!) sorted = false;
    if (!Number.isInteger(t)) integers = false;
    if (t < min) min = t;
    if (t > max) max = t;
  }
  if (sorted) return keys;
  if (!integers || max - min >= 2 ** 32) {
    const ranks = Array.from({ length: n }, (_, i) => i);
    ranks.sort((a, b) => keys[a]! - keys[b]! || a - b);
    const copy = items.slice();
    return Float64Array.from(ranks, (from, i) => {
      items[i] = copy[from]!;
      return keys[from]!;
    });
  }
  let from: Int32Array = items;
  let fromKeys = new Uint32Array(n);
  for (let i = 0; i < n; i++) fromKeys[i] = keys[i]! - min;
  let to: Int32Array = new Int32Array(n);
  let toKeys = new Uint32Array(n);
  for (const shift of [0, 16]) {
    const counts = new Uint32Array(65537);
    for (let i = 0; i < n; i++) counts[((fromKeys[i]! >>> shift) & 0xffff) + 1]!++;
    for (let b = 1; b <= 65536; b++) counts[b]! += counts[b - 1]!;
    for (let i = 0; i < n; i++) {
      const at = counts[(fromKeys[i]! >>> shift) & 0xffff]!++;
      to[at] = from[i]!;
      toKeys[at] = fromKeys[i]!;
    }
    [from, to] = [to, from];
    [fromKeys, toKeys] = [toKeys, fromKeys];
  }
  // Two passes: the sorted data ends in `items` again.
  for (let i = 0; i < n; i++) keys[i] = fromKeys[i]! + min;
  return keys;
}

/** A 32-bit integer hash (murmur3's finaliser) of a number's low 32 bits. */
export function mix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A pseudo-random permutation of [0, n) keyed by `key`, evaluated at `i` in O(1) expected:
 * a 4-round Feistel network over the smallest even bit width covering n, cycle-walked
 * back into range. This shuffles a tie group of any size without materialising it.
 */
function _permute(i: number, n: number, key: number): number {
  if (n <= 1) return 0;
  let bits = 2;
  while (1 << bits < n) bits++;
  if (bits % 2 === 1) bits++;
  const half = bits / 2;
  const low = (1 << half) - 1;
  let x = i;
  do {
    let l = x >>> half;
    let r = x & low;
    for (let round = 0; round < 4; round++) {
      const f = mix32(r ^ Math.imul(key ^ round, 0x9e3779b1)) & low;
      const t = r;
      r = l ^ f;
      l = t;
    }
    x = (l << half) | r;
  } while (x >= n);
  return x;
}
