/**
 * Reads one window of a list — the members whose `last_changed` lies in [lower, U) — as a
 * sequence of slices in `last_changed` order, each complete up to its `doneBefore` bound.
 * See docs/ARCHITECTURE.md ("Why nothing is lost") for the argument; in short, nothing in
 * an answer is trusted beyond what the pages themselves prove:
 *
 * - Only a short page (fewer members than asked for) ends the window. A full page always
 *   means there may be more, whatever `total_items` says.
 * - A page that cannot be one moment's sorted listing — members out of order, a member
 *   before the `since` we sent, past the `before` we sent, or twice — is torn (a member
 *   changed while Mailchimp wrote it out): it is read again, never concluded from.
 * - A tie group (more members sharing one second than a page holds) is complete only when
 *   the passes read over it, while it provably did not change, cover every position.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { DEFAULT_MAX_TORN_RETRIES } from "../config/defaults.ts";
import type { InvalidMember, Member, MemberStatus } from "../mailchimp/member.ts";
import { formatMailchimpTime, parseMailchimpTime } from "../mailchimp/time.ts";
import type { MembersQuery, MembersResult, MemberStampsResult } from "../mailchimp/client.ts";
import type { MembersSource } from "./ports.ts";

const SECOND = 1000;
// Tries of an unbounded page that proves nothing because its members all changed since the
// request went out (see `_unchangedBefore`): enough for Mailchimp's clock to reach the next
// second at ordinary request times.
const _UNBOUNDED_STALLS = 30;
const _TIE_PAGE = 1000;
// A run of one second this large (a share of the page) ending a full page is taken for a
// bulk import's tie group and read as one at once: below it, the next page reads it again.
const _TIE_RUN = 0.25;

/** A member read with `last_changed` at or after U, with how its answer was read. */
export interface BeyondMember {
  member: Member;
  /** The answer's `Date`. */
  readAtMs: number | undefined;
  /** The request's number in the writer's order (`WindowReaderOptions.readSeq`). */
  readSeq: number;
}

/**
 * Every member of the window with `doneBefore_prev ≤ last_changed < doneBefore` (sorted by
 * `last_changed`). `last` is true for the slice that ends the window (`doneBefore = U`).
 * `invalid` are members served malformed in the pages behind this slice (to quarantine).
 * `beyond` are members those pages (torn ones included) showed at or after U: newer than
 * anything Ometria can hold of them, so they are pushed too, but they never move the cursor.
 * `toNow` is true on the last slice when one short answer without an upper bound read the
 * range: it then held every member changed since its lower edge up to that answer.
 */
export interface WindowSlice {
  members: Member[];
  invalid: InvalidMember[];
  doneBefore: number;
  last: boolean;
  beyond: BeyondMember[];
  toNow: boolean;
  /** The `Date` of the answer the members came in (the earliest, for a tie group). */
  readAtMs: number | undefined;
  /** That answer's request number in the writer's order (the earliest, for a tie group). */
  readSeq: number;
}

/**
 * What {@linkcode SliceRange.split} learns from a full page of a range: the page's first
 * and last `last_changed`, its size, and `total_items` (a hint, never a proof). Everything
 * before `from` is handed out; [`from`, `end`) is still to read.
 */
export interface FirstPage {
  from: number;
  end: number;
  firstMs: number;
  lastMs: number;
  size: number;
  totalItems: number;
}

/** Which part of the window one `slices()` reads. */
export interface SliceRange {
  /** Exclusive upper edge (whole seconds, ≤ U); U when absent. */
  end?: number;
  /**
   * No upper edge at all (the final read after a window, from U on): every member read is
   * `beyond`, and a short page ends the read. @default {false}
   */
  unbounded?: boolean;
  /**
   * Called after every full page of the range, before the next page is requested.
   * Returns a new end (inside (`from`, `end`)) when the caller reads the rest from there
   * itself, or undefined to read the whole range here.
   */
  split?: (first: FirstPage) => number | undefined;
}

/**
 * How many pages of members in full the readers of one run may hold at once: asked for (in
 * flight), or read and not yet handed on. A reader takes a place before it asks for a page
 * and gives it back once the slice made of that page has been taken by its consumer, so
 * however many readers run, the pages they hold stay bounded, and a reader beyond the budget
 * waits with nothing in hand. Places beyond `base` are handed out only while no page that
 * came back is waiting to be handed on: more requests at once help while answers are slow
 * to come, and only hold memory while the pages already read are slow to go. Places go in
 * the order asked for.
 */
export class PageBudget {
  /** The most pages held at once. */
  readonly max: number;
  /** Pages held at once whatever the backlog. */
  readonly base: number;
  #held = 0;
  /** Pages that came back and are not handed on yet. */
  #backlog = 0;
  #queue: (() => void)[] = [];

  constructor(max: number, base = max) {
    if (!Number.isInteger(max) || max < 1 || !Number.isInteger(base) || base < 1 || base > max) {
      throw new RangeError(
        `Cannot budget pages as 'max' and 'base' must be integers with 1 <= base <= max: current values ${max} and ${base}`,
      );
    }
    this.max = max;
    this.base = base;
  }

  /** Pages held now. */
  get held(): number {
    return this.#held;
  }

  /**
   * Resolves once a place is free: `arrived` is called when the page came back, `release`
   * once it is handed on (or when no page will come); both may be called more than once.
   */
  async take(): Promise<{ arrived: () => void; release: () => void }> {
    if (this.#queue.length > 0 || !this.#free()) {
      await new Promise<void>((resolve) => this.#queue.push(resolve));
    } else this.#held++;
    let arrived = false;
    let released = false;
    return {
      arrived: () => {
        if (arrived || released) return;
        arrived = true;
        this.#backlog++;
      },
      release: () => {
        if (released) return;
        released = true;
        this.#held--;
        if (arrived) this.#backlog--;
        this.#grant();
      },
    };
  }

  #free(): boolean {
    return this.#held < this.base || (this.#held < this.max && this.#backlog === 0);
  }

  #grant(): void {
    while (this.#queue.length > 0 && this.#free()) {
      this.#held++;
      this.#queue.shift()!();
    }
  }
}

/** Options of {@linkcode WindowReader}. */
export interface WindowReaderOptions {
  listId: string;
  source: MembersSource;
  logger: Logger;
  /** Members per page (≤ 1000). */
  pageSize: number;
  /** Milliseconds taken off Mailchimp's clock for U. */
  marginMs: number;
  /** Most passes over one tie group. */
  maxTiePasses: number;
  /** Most torn answers in a row for one request before the run gives up. @default {10} */
  maxTornRetries?: number;
  /** Aborts requests in flight. */
  hardSignal?: AbortSignal | undefined;
  /** Bounds the pages in full this reader's slices hold with those of others (none: 2 each). */
  pages?: PageBudget | undefined;
  /** Called before every request; throws to stop between requests. */
  beforeRequest: () => void;
  /**
   * Numbers every request as it starts (the connection writer's order of reads and pushes,
   * writer/gate.ts); the number travels with the members read. @default {() => 0}
   */
  readSeq?: () => number;
  /**
   * Our clock, to time an answer: the first answer of a run has no earlier `Date` to tell
   * what Mailchimp's clock said when the request went out. @default {() => 0}
   */
  now?: () => number;
  /**
   * Called once, with Mailchimp's clock from the first answer and the lower edge asked for;
   * returns a lower edge to read from instead when Mailchimp's clock stepped back (see
   * run_connection.ts), or undefined to go on.
   */
  rewind?: (serverTimeMs: number, lower: number | undefined) => number | undefined;
}

/** The `last_changed` of a member in epoch ms (whole seconds). */
export function lastChangedOf(member: Member): number {
  const t = parseMailchimpTime(member.last_changed);
  if (t === undefined) {
    throw new TypeError(
      `Mailchimp returned member ${member.id} with an unreadable last_changed "${member.last_changed}"`,
    );
  }
  return t;
}

/**
 * The second before which no member of an unbounded answer can have changed while the answer
 * was written: the second Mailchimp's clock showed in the last answer before the request went
 * out, or, for a run's first request, its own `Date` less the time it took (a change is
 * stamped with its second, and that second is at or after the request's).
 */
function _unchangedBefore(
  sentAfterMs: number | undefined,
  page: { serverTimeMs: number | undefined; tookMs: number },
): number {
  if (sentAfterMs !== undefined) return Math.floor(sentAfterMs / SECOND) * SECOND;
  if (page.serverTimeMs === undefined) return -Infinity;
  return Math.floor((page.serverTimeMs - page.tookMs) / SECOND) * SECOND - SECOND;
}

/** Why a page cannot be one moment's sorted listing, or undefined when it can. */
function _tear(
  page: MembersResult,
  times: readonly number[],
  sinceMs: number | undefined,
  beforeMs: number | undefined,
): string | undefined {
  const members = page.members;
  const seen = _seenTable(members.length);
  for (let i = 0; i < times.length; i++) {
    const t = times[i]!;
    if (i > 0 && t < times[i - 1]!) return "members out of last_changed order";
    if (sinceMs !== undefined && t < sinceMs) return "a member changed before since_last_changed";
    // `before` may be inclusive: a member exactly at it is not a tear.
    if (beforeMs !== undefined && t > beforeMs) return "a member changed after before_last_changed";
    const id = members[i]!.id;
    if (_seenBefore(seen, members, i)) return `member ${id} twice`;
  }
  return undefined;
}

/**
 * The table {@linkcode _tear} finds a member twice with: open addressing over the members'
 * indexes, in typed arrays kept from page to page (a `Set` of a page's ids was made, grown
 * and dropped on every page read). A slot is in use for this page when its stamp is the
 * page's.
 */
interface SeenTable {
  stamp: number;
  stamps: Int32Array;
  slots: Int32Array;
  mask: number;
}

let _seen: SeenTable = { stamp: 0, stamps: new Int32Array(0), slots: new Int32Array(0), mask: 0 };

/** The table, emptied, with room for `n` ids at most half full. */
function _seenTable(n: number): SeenTable {
  if (_seen.stamps.length < 2 * n || _seen.stamp === 0x7fffffff) {
    let size = 16;
    while (size < 2 * n) size *= 2;
    _seen = { stamp: 0, stamps: new Int32Array(size), slots: new Int32Array(size), mask: size - 1 };
  }
  _seen.stamp++;
  return _seen;
}

/** Whether member `i`'s id is one of an earlier member's in this page (and notes it if not). */
function _seenBefore(seen: SeenTable, members: readonly { id: string }[], i: number): boolean {
  const id = members[i]!.id;
  let h = 0x811c9dc5;
  for (let k = 0; k < id.length; k++) h = Math.imul(h ^ id.charCodeAt(k), 0x01000193);
  let slot = (h ^ (h >>> 15)) & seen.mask;
  while (seen.stamps[slot] === seen.stamp) {
    if (members[seen.slots[slot]!]!.id === id) return true;
    slot = (slot + 1) & seen.mask;
  }
  seen.stamps[slot] = seen.stamp;
  seen.slots[slot] = i;
  return false;
}

/**
 * Pages through windows of one list. The first response of the reader fixes U (Mailchimp's
 * `Date` less the margin); what it learns about Mailchimp (inclusive `since`, archived
 * members in the default listing) is kept for the reader's later requests.
 */
export class WindowReader {
  /** The window's upper bound U, once the first response fixed it. */
  upper: number | undefined;
  /** Mailchimp's clock in the first response. */
  serverTimeMs: number | undefined;
  /** True once a response showed that `since_last_changed` is inclusive. */
  sinceInclusive = false;
  /** True once a response showed that `before_last_changed` is inclusive. */
  beforeInclusive = false;
  /** True once the default listing returned an archived member. */
  sawArchived = false;
  /**
   * `total_items` of the first page of the last `slices()` over the whole window: how many
   * members Mailchimp counted in it (a hint for progress estimates, never a proof).
   */
  totalHint: number | undefined;
  /** Torn answers read again so far. */
  tornPages = 0;
  readonly #o: WindowReaderOptions;
  /** Whether a tie group's second was asked for with an inclusive `since` (see #learnSince). */
  #sinceProbed = false;
  /** Whether that answer came: `sinceInclusive` is then what Mailchimp does. */
  #sinceSettled = false;
  /** The latest `Date` of any answer so far: Mailchimp's clock had reached it. */
  #lastAnswerMs: number | undefined;

  constructor(options: WindowReaderOptions) {
    this.#o = options;
  }

  /**
   * The slices of the window from `lower` (undefined: the list's beginning) to `range.end`
   * (U when absent), for the members with `status` (all when undefined). The next page is
   * requested before a slice is handed out, so reading overlaps with whatever the caller
   * does with the slice. `range.split` may shorten the range after its first full page (see
   * {@linkcode SliceRange}); the last slice handed out then ends there.
   */
  async *slices(
    lower: number | undefined,
    status?: MemberStatus,
    range: SliceRange = {},
  ): AsyncGenerator<WindowSlice> {
    const o = this.#o;
    const maxTorn = o.maxTornRetries ?? DEFAULT_MAX_TORN_RETRIES;
    let stalled = 0;
    let torn = 0;
    let end = range.unbounded ? Infinity : range.end;
    let firstPage = range.end === undefined && !range.unbounded;
    const split = range.split;
    /** Members at or after U met in this range's answers, handed out with the next slice. */
    let beyond: BeyondMember[] = [];
    let requests = 0;
    const request = () => {
      const sinceMs = lower === undefined
        ? undefined
        : this.sinceInclusive
        ? lower
        : lower - SECOND;
      // The first request of a range that runs to U asks for everything since its lower edge:
      // a short answer then proves the range up to that moment, members changed after U
      // included. Every later request is bounded by the range's end, so a short page proves
      // the range complete.
      const bounded = requests++ > 0 || range.end !== undefined;
      const beforeMs = !bounded || end === Infinity ? undefined : end ?? this.upper;
      // Mailchimp's clock had reached the last answer's Date when this request went out: a
      // member stamped before that second did not change while this answer was written.
      const sentAfterMs = this.#lastAnswerMs;
      const page = this.#fetchHeld({ sinceMs, beforeMs, count: o.pageSize, status });
      // Marked as handled now: a prefetch may fail while the caller works on the previous
      // slice, and its error is only looked at when the loop gets to it.
      page.catch(() => {});
      return { sinceMs, beforeMs, page, sentAfterMs };
    };
    const collectBeyond = (page: MembersResult & { readSeq: number }, times: readonly number[]) => {
      // An unbounded read hands out everything as its members (they are all past U).
      if (end === Infinity) return;
      const u = this.upper!;
      for (let i = 0; i < times.length; i++) {
        if (times[i]! >= u) {
          beyond.push({
            member: page.members[i]!,
            readAtMs: page.serverTimeMs,
            readSeq: page.readSeq,
          });
        }
      }
    };
    let next = request();
    /** The tie group a full page ended in, read once the page's own members are handed out. */
    let tie: { at: number; head: readonly Member[] | undefined } | undefined;
    /** Gives back the budget's place of the page read last (see `PageBudget`). */
    let release: (() => void) | undefined;
    try {
      for (;;) {
        // The consumer is done with the last page: its slice was taken (or nothing came of it).
        release?.();
        const { sinceMs, beforeMs, page: pending, sentAfterMs } = next;
        const page = await pending;
        release = page.release;
        if (page.serverTimeMs !== undefined) {
          this.#lastAnswerMs = Math.max(this.#lastAnswerMs ?? -Infinity, page.serverTimeMs);
        }
        if (this.upper === undefined) {
          if (page.serverTimeMs === undefined) {
            // Our own clock may be ahead of Mailchimp's: a bound taken from it could pass
            // changes that are not stamped yet. No bound is safer than a wrong one.
            throw new Error(
              `Mailchimp's answer for list ${o.listId} had no Date header, so the window cannot be bounded safely`,
            );
          }
          this.serverTimeMs = page.serverTimeMs;
          this.upper = Math.floor((page.serverTimeMs - o.marginMs) / SECOND) * SECOND;
          const rewound = o.rewind?.(page.serverTimeMs, lower);
          if (rewound !== undefined && (lower === undefined || rewound < lower)) {
            lower = rewound;
            next = request();
            continue;
          }
          // Within the margin (two runs close together): nothing new can be complete yet.
          if (lower !== undefined && this.upper < lower) this.upper = lower;
        }
        const upper = end ?? this.upper;
        const raw = page.members;
        const times = raw.map(lastChangedOf);
        const tear = _tear(page, times, sinceMs, beforeMs);
        // Whatever an answer shows at or after U is at least as new as Ometria's copy, torn or
        // not; a torn answer proves nothing, but its members are still worth sending.
        collectBeyond(page, times);
        if (tear !== undefined) {
          this.tornPages++;
          if (++torn > maxTorn) {
            throw new Error(
              `Mailchimp's pages of list ${o.listId} kept changing while being read (${maxTorn} torn answers in a row, last: ${tear}); nothing after ${
                lower === undefined ? "the beginning" : formatMailchimpTime(lower)
              } is counted as synced, and the run will be retried`,
            );
          }
          o.logger.debug("A page of list {list} was torn ({tear}): reading it again", {
            list: o.listId,
            tear,
          });
          next = request();
          if (beyond.length > 0) {
            // Handed out at once: whether or not a later answer proves anything, they go.
            const out = beyond;
            beyond = [];
            yield {
              members: [],
              invalid: [],
              doneBefore: lower ?? -Infinity,
              last: false,
              beyond: out,
              toNow: false,
              readAtMs: page.serverTimeMs,
              readSeq: page.readSeq,
            };
          }
          continue;
        }
        torn = 0;
        if (firstPage) {
          firstPage = false;
          this.totalHint = page.totalItems;
        }
        if (status === undefined && raw.some((m) => m.status === "archived")) {
          this.sawArchived = true;
        }
        if (!this.sinceInclusive && sinceMs !== undefined && times.includes(sinceMs)) {
          this.sinceInclusive = true;
        }
        if (!this.beforeInclusive && beforeMs !== undefined && times.includes(beforeMs)) {
          this.beforeInclusive = true;
        }
        const from = lower ?? -Infinity;
        const inWindow = (t: number) => t >= from && t < upper;
        let members = raw.filter((_, i) => inWindow(times[i]!));
        let invalid = page.invalid;
        let doneBefore: number;
        let toNow = false;
        if (page.size < o.pageSize) {
          // A short page: every member of [lower, U) that did not change while it was read is
          // in it, and one that changed is stamped at or after U: the window is complete.
          doneBefore = upper;
          toNow = beforeMs === undefined;
        } else {
          // Malformed members with a readable time count too: they are quarantined, and a page
          // of nothing else must still make progress. Without an upper bound, a member that
          // changed while the answer was written may show at its new place instead of the next
          // member (the page still looks sorted): only members stamped before the request went
          // out can bound what the page proves.
          const trusted = beforeMs === undefined ? _unchangedBefore(sentAfterMs, page) : Infinity;
          const proves = (t: number) => inWindow(t) && t < trusted;
          let lastIn = -Infinity;
          for (const t of times) if (proves(t) && t > lastIn) lastIn = t;
          for (const m of page.invalid) {
            const t = m.lastChangedMs;
            if (t !== undefined && proves(t) && t > lastIn) lastIn = t;
          }
          const lastT = times[times.length - 1]!;
          if (beforeMs !== undefined && lastT >= upper) {
            // A bounded full page reaching the range's end (an inclusive `before` shows members
            // at it): every member before its last second is in it, so the whole range is.
            // Not so for an unbounded one: a member that changed while it was written may show
            // at its new place, past U, instead of the next member of the window (it looks
            // sorted), so only what lies before its last member in the window is proven.
            doneBefore = upper;
          } else if (lastIn === -Infinity) {
            // Without an upper bound, a page of members that all changed since the last answer
            // proves nothing yet; Mailchimp's clock moves on with every answer, so a few more
            // tries prove them.
            if (++stalled > (beforeMs === undefined ? _UNBOUNDED_STALLS : 3)) {
              throw new Error(`Mailchimp's paging made no progress for list ${o.listId}`);
            }
            // A full page without a member of the window: before the lower edge (Mailchimp's
            // `since` is inclusive, now noted) or at or after U (the first, unbounded request).
            // The next request is bounded on both sides.
            if (times.some((t) => t < from)) this.sinceInclusive = true;
            next = request();
            continue;
          } else {
            // The run of members of the page's last second at its end, when nothing in the
            // page can sit among them (a malformed member without a time could).
            const head = times[times.length - 1] === lastIn &&
                page.invalid.every((m) => m.lastChangedMs !== undefined && m.lastChangedMs < lastIn)
              ? raw.slice(times.findIndex((x) => x === lastIn))
              : undefined;
            // A full page proves only what lies before its last second: the members sharing
            // that second may go on in the next page, which starts there.
            members = members.filter((m) => lastChangedOf(m) < lastIn);
            if (lastIn > from && (head === undefined || head.length < o.pageSize * _TIE_RUN)) {
              doneBefore = lastIn;
            } else {
              // Nothing but the tie group at the lower edge fills a whole page, or a large run
              // of one second ends it (a bulk import): that second is read on its own next, the
              // run being the first page of its first pass rather than read again.
              tie = { at: lastIn, head };
              doneBefore = lastIn + SECOND;
            }
          }
        }
        stalled = 0;
        if (split !== undefined && doneBefore < upper && page.size >= o.pageSize) {
          // After every full page, what is left may be handed to other readers: a range cut
          // once may learn from its next page that its own part is still large.
          const at = split({
            from: doneBefore,
            end: upper,
            firstMs: times[0]!,
            lastMs: times[times.length - 1]!,
            size: page.size,
            totalItems: page.totalItems,
          });
          if (at !== undefined && at > doneBefore && at < upper) end = at;
        }
        const last = doneBefore >= (end ?? upper);
        lower = doneBefore;
        const stamp = { readAtMs: page.serverTimeMs, readSeq: page.readSeq };
        /** Whether the next page was asked for already (beside a tie group's proof). */
        let asked = false;
        if (tie !== undefined) {
          // What the page proves before the group goes first, and the group's members as its
          // passes read them in full; only its last part, once the group is proven, ends
          // after its second (the parts before end at it, so no reach passes it earlier).
          const { at, head } = tie;
          tie = undefined;
          const out = beyond;
          beyond = [];
          if (members.length > 0 || invalid.length > 0 || out.length > 0) {
            yield { members, invalid, doneBefore: at, last: false, beyond: out, toNow, ...stamp };
          }
          // The page's place is kept while the group is read: the group's pages are outside
          // the budget, and this place is what counts the group in it.
          members = [];
          invalid = [];
          for await (const part of this.#readTieGroup(at, status, head)) {
            if (!part.proven) {
              // The page after the group goes out beside the passes that prove it, once
              // whether `since` is inclusive is settled (else it might be filled with the group).
              if (!last && !asked && (this.sinceInclusive || this.#sinceSettled)) {
                next = request();
                asked = true;
              }
              yield { ...part, doneBefore: at, last: false, beyond: [], toNow: false, ...stamp };
              continue;
            }
            members = part.members;
            invalid = part.invalid;
          }
        }
        if (!last && !asked) next = request();
        const out = beyond;
        beyond = [];
        yield { members, invalid, doneBefore, last, beyond: out, toNow, ...stamp };
        if (last) return;
      }
    } finally {
      release?.();
      // A prefetch nobody will look at keeps no place once it settles.
      next.page.then((p) => p.release(), () => {});
    }
  }

  async #fetch(query: _Query): Promise<MembersResult & { readSeq: number; tookMs: number }> {
    this.#o.beforeRequest();
    const readSeq = this.#o.readSeq?.() ?? 0;
    const sentAt = this.#o.now?.() ?? 0;
    const page = await this.#o.source.getMembers(
      this.#o.listId,
      _membersQuery(query),
      this.#o.hardSignal,
    );
    return { ...page, readSeq, tookMs: Math.max(0, (this.#o.now?.() ?? 0) - sentAt) };
  }

  /**
   * {@linkcode WindowReader.#fetch} once the budget has a place for the page: with the
   * release of that place (given back at once when the request fails).
   */
  async #fetchHeld(
    query: _Query,
  ): Promise<MembersResult & { readSeq: number; tookMs: number; release: () => void }> {
    const place = await this.#o.pages?.take();
    try {
      const page = await this.#fetch(query);
      place?.arrived();
      return { ...page, release: place?.release ?? (() => {}) };
    } catch (error) {
      place?.release();
      throw error;
    }
  }

  /** The same listing as {@linkcode WindowReader.#fetch}, ids and `last_changed` only. */
  async #fetchStamps(query: _Query): Promise<MemberStampsResult> {
    this.#o.beforeRequest();
    return await this.#o.source.getMemberStamps(
      this.#o.listId,
      _membersQuery(query),
      this.#o.hardSignal,
    );
  }

  /**
   * Reads the whole tie group at second `t`, whatever the order of ties, reading each member
   * in full about once. A pass reads the pages of second `t` at offsets 0, 1000, … until a
   * short page; its positions are what the pages held. Nobody can join a past second, so the
   * group only shrinks (a member that changes leaves it, stamped past U), and a pass ending
   * with as many positions as the pass before shows that nobody left between the two ends:
   * such a pass read an unchanging group. The ids read by consecutive such passes are all in
   * that group; once they number as many as its positions, and every one of them has been
   * read in full at `t` by some pass (a member still at `t` is as it was then), every member
   * has been read. The first pass reads members in full, starting with `head` (the members
   * of `t` that ended the main pass's page that found the group: the first positions of the
   * group in a listing, so the pass goes on at that offset, and it counts positions the same
   * whichever members they held); later passes read ids and `last_changed` only, all their pages at
   * once since the pass before told how many there are, until one shows an id no full read
   * has shown (the order of ties is not stable): from then on passes read in full. A pass
   * that meets a member of another second counts for nothing: the neighbouring second is in
   * because `since`/`before` are inclusive (now known: later passes ask without it), or the
   * member changed while the pass ran. `total_items` is never needed, and a wrong one
   * changes nothing. Yields what each pass in full read first (`proven: false`: the caller
   * pushes it without moving its reach past `t`), then, once the group is proven, the proven
   * members not yet yielded (`proven: true`).
   */
  async *#readTieGroup(
    t: number,
    status: MemberStatus | undefined,
    head: readonly Member[] | undefined,
  ): AsyncGenerator<{ members: Member[]; invalid: InvalidMember[]; proven: boolean }> {
    const got: _TieReads = { full: new Map(), invalid: new Map() };
    const known = (id: string) => got.full.has(id) || got.invalid.has(id);
    // The ids handed out already: a pass in full hands out the members it read first, so
    // pushing starts while the group is being proven. A member read again at `t` is as it
    // was (one that changes leaves the second), so once is enough.
    const handed = new Set<string>();
    const fresh = <T extends Member | InvalidMember>(reads: Iterable<T>, only?: Set<string>) => {
      const out: T[] = [];
      for (const r of reads) {
        const id = r.id!;
        if (handed.has(id) || (only !== undefined && !only.has(id))) continue;
        handed.add(id);
        out.push(r);
      }
      return out;
    };
    let previous: number | undefined;
    let expect: number | undefined;
    let seen = new Set<string>();
    // Once a pass of ids shows one no full read has shown, the order of ties is not stable.
    let unstable = false;
    let counts = "";
    for (let pass = 1; pass <= this.#o.maxTiePasses; pass++) {
      const full = pass === 1 || unstable;
      const read = await this.#tiePass(t, status, got, {
        full,
        ...(pass === 1 && head !== undefined ? { head } : {}),
        ...(expect !== undefined ? { expect } : {}),
      });
      const { positions } = read;
      expect = read.listed;
      counts = `${read.listed} members in pages, total_items ${read.total}`;
      if (!full && [...read.ids].some((id) => !known(id))) unstable = true;
      if (Number.isNaN(positions) || previous !== positions) {
        seen = new Set();
        previous = Number.isNaN(positions) ? undefined : positions;
      } else {
        for (const id of read.ids) seen.add(id);
        if (seen.size === positions && [...seen].every(known)) {
          await this.#learnSince(t, status);
          yield {
            members: fresh(got.full.values(), seen),
            invalid: fresh(got.invalid.values()),
            proven: true,
          };
          return;
        }
      }
      if (full) {
        // Pushed now (their reach stays at `t`): pushing an older read of a member that has
        // left the group since is what any read does, and its newer version follows it.
        const members = fresh(got.full.values());
        const invalid = fresh(got.invalid.values());
        if (members.length > 0 || invalid.length > 0) yield { members, invalid, proven: false };
      }
      this.#o.logger.debug(
        "Tie group at {at}: pass {pass} has {positions} positions, {seen} ids proven; reading again",
        { at: formatMailchimpTime(t), pass, positions, seen: seen.size },
      );
    }
    throw new Error(
      `Could not prove that every member changed at ${
        formatMailchimpTime(t)
      } was read in ${this.#o.maxTiePasses} passes (${counts}; Mailchimp's order of members sharing one last_changed, or the group itself, kept changing); nothing from that second on is counted as synced, and the run will be retried`,
    );
  }

  /**
   * One pass over the tie group at `t` (see {@linkcode WindowReader.#readTieGroup}): in full
   * (members kept in `got`) or ids only. With `expect` (how many the pass before listed),
   * every page the group should fill is asked for at once; a page short before the last
   * means the group shrank while they were read, and the pass counts for nothing.
   * `positions` is NaN for a pass that counts for nothing.
   */
  async #tiePass(
    t: number,
    status: MemberStatus | undefined,
    got: _TieReads,
    how: { full: boolean; head?: readonly Member[]; expect?: number },
  ): Promise<{ positions: number; ids: Set<string>; listed: number; total: number | undefined }> {
    const sinceMs = this.sinceInclusive ? t : t - SECOND;
    const beforeMs = this.beforeInclusive ? t : t + SECOND;
    const ids = new Set<string>();
    let anonymous = 0;
    let broken = false;
    const take = (id: string | null, at: number | undefined) => {
      if (at !== undefined && at !== t) {
        // Learned for the next passes, which ask without the neighbouring second.
        if (at === sinceMs && at < t) this.sinceInclusive = true;
        if (at === beforeMs && at > t) this.beforeInclusive = true;
        broken = true;
        return false;
      }
      if (id === null) anonymous++;
      else ids.add(id);
      return id !== null;
    };
    const fetchPage = async (offset: number) => {
      const query = { sinceMs, beforeMs, offset, count: _TIE_PAGE, status };
      if (!how.full) {
        const page = await this.#fetchStamps(query);
        return { ...page, apply: () => page.stamps.forEach((s) => take(s.id, s.lastChangedMs)) };
      }
      const page = await this.#fetch(query);
      const apply = () => {
        for (const m of page.members) if (take(m.id, lastChangedOf(m))) got.full.set(m.id, m);
        for (const m of page.invalid) if (take(m.id, m.lastChangedMs)) got.invalid.set(m.id!, m);
      };
      return { ...page, apply };
    };
    let listed = 0;
    let total: number | undefined;
    for (const m of how.head ?? []) if (take(m.id, t)) got.full.set(m.id, m);
    let offset = how.head?.length ?? 0;
    listed += offset;
    // Pages of ids are small: the whole group's at once, as many as the pass before needed.
    let batch = how.expect === undefined || how.full
      ? 1
      : Math.floor(Math.max(0, how.expect - offset) / _TIE_PAGE) + 1;
    for (;;) {
      const pages = await Promise.all(
        Array.from({ length: batch }, (_, i) => fetchPage(offset + i * _TIE_PAGE)),
      );
      for (const [i, page] of pages.entries()) {
        page.apply();
        listed += page.size;
        total = page.totalItems;
        if (page.size < _TIE_PAGE && i < pages.length - 1) broken = true;
      }
      if (pages[pages.length - 1]!.size < _TIE_PAGE) break;
      offset += batch * _TIE_PAGE;
      batch = 1;
    }
    return { positions: broken ? NaN : listed - anonymous, ids, listed, total };
  }

  /**
   * After a tie group, while nobody knows whether `since` is inclusive: one member of its
   * second, ids only, asked with `since` at it. The next page of the window asks from that
   * second on, and an inclusive `since` would fill it with the group again; this costs one
   * small answer instead of that full page, once per reader.
   */
  async #learnSince(t: number, status: MemberStatus | undefined): Promise<void> {
    if (this.sinceInclusive || this.#sinceProbed) return;
    this.#sinceProbed = true;
    const probe = await this.#fetchStamps({ sinceMs: t, beforeMs: t + SECOND, count: 1, status });
    if (probe.stamps[0]?.lastChangedMs === t) this.sinceInclusive = true;
    this.#sinceSettled = true;
  }
}

/** The members a tie group's passes read in full, by id. */
interface _TieReads {
  full: Map<string, Member>;
  invalid: Map<string, InvalidMember>;
}

/** A members query as the reader asks it. */
interface _Query {
  sinceMs?: number | undefined;
  beforeMs?: number | undefined;
  offset?: number;
  count: number;
  status?: MemberStatus | undefined;
}

/** The client's query for `q`: always sorted by `last_changed`, oldest first. */
function _membersQuery(query: _Query): MembersQuery {
  const q: MembersQuery = { count: query.count, sortField: "last_changed", sortDir: "ASC" };
  if (query.offset) q.offset = query.offset;
  if (query.sinceMs !== undefined) q.sinceMs = query.sinceMs;
  if (query.beforeMs !== undefined) q.beforeMs = query.beforeMs;
  if (query.status !== undefined) q.status = query.status;
  return q;
}
