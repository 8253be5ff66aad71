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
import type { MembersQuery, MembersResult } from "../mailchimp/client.ts";
import type { MembersSource } from "./ports.ts";

const SECOND = 1000;
// Tries of an unbounded page that proves nothing because its members all changed since the
// request went out (see `_unchangedBefore`): enough for Mailchimp's clock to reach the next
// second at ordinary request times.
const _UNBOUNDED_STALLS = 30;
const _TIE_PAGE = 1000;

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
  const ids = new Set<string>();
  for (let i = 0; i < times.length; i++) {
    const t = times[i]!;
    if (i > 0 && t < times[i - 1]!) return "members out of last_changed order";
    if (sinceMs !== undefined && t < sinceMs) return "a member changed before since_last_changed";
    // `before` may be inclusive: a member exactly at it is not a tear.
    if (beforeMs !== undefined && t > beforeMs) return "a member changed after before_last_changed";
    const id = page.members[i]!.id;
    if (ids.has(id)) return `member ${id} twice`;
    ids.add(id);
  }
  return undefined;
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
      const page = this.#fetch({ sinceMs, beforeMs, count: o.pageSize, status });
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
    for (;;) {
      const { sinceMs, beforeMs, page: pending, sentAfterMs } = next;
      const page = await pending;
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
      if (status === undefined && raw.some((m) => m.status === "archived")) this.sawArchived = true;
      if (!this.sinceInclusive && sinceMs !== undefined && times.includes(sinceMs)) {
        this.sinceInclusive = true;
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
        } else if (lastIn > from) {
          // A full page proves only what lies before its last second: the members sharing
          // that second may go on in the next page, which starts there.
          doneBefore = lastIn;
          members = members.filter((m) => lastChangedOf(m) < lastIn);
        } else {
          // Nothing but the tie group at the lower edge fills a whole page.
          const group = await this.#readTieGroup(from, status);
          members = group.members;
          invalid = [...invalid, ...group.invalid];
          doneBefore = from + SECOND;
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
      if (!last) next = request();
      const out = beyond;
      beyond = [];
      yield {
        members,
        invalid,
        doneBefore,
        last,
        beyond: out,
        toNow,
        readAtMs: page.serverTimeMs,
        readSeq: page.readSeq,
      };
      if (last) return;
    }
  }

  async #fetch(query: {
    sinceMs?: number | undefined;
    beforeMs?: number | undefined;
    offset?: number;
    count: number;
    status?: MemberStatus | undefined;
  }): Promise<MembersResult & { readSeq: number; tookMs: number }> {
    this.#o.beforeRequest();
    const readSeq = this.#o.readSeq?.() ?? 0;
    const sentAt = this.#o.now?.() ?? 0;
    const q: MembersQuery = {
      count: query.count,
      sortField: "last_changed",
      sortDir: "ASC",
    };
    if (query.offset) q.offset = query.offset;
    if (query.sinceMs !== undefined) q.sinceMs = query.sinceMs;
    if (query.beforeMs !== undefined) q.beforeMs = query.beforeMs;
    if (query.status !== undefined) q.status = query.status;
    const page = await this.#o.source.getMembers(this.#o.listId, q, this.#o.hardSignal);
    return { ...page, readSeq, tookMs: Math.max(0, (this.#o.now?.() ?? 0) - sentAt) };
  }

  /**
   * Reads the whole tie group at second `t`, whatever the order of ties. A pass reads pages
   * at offsets 0, 1000, … until a short page; its positions are what the pages held. Nobody
   * can join a past second, so the group only shrinks (a member that changes leaves it), and
   * a pass ending with as many positions as the pass before shows that nobody left between
   * the two ends: such a pass read an unchanging group. The ids read by consecutive such
   * passes are all in that group; once they number as many as its positions, every member
   * has been read. `total_items` is never needed, and a wrong one changes nothing.
   */
  async #readTieGroup(
    t: number,
    status: MemberStatus | undefined,
  ): Promise<{ members: Member[]; invalid: InvalidMember[] }> {
    const tie = new Map<string, Member>();
    const invalid = new Map<string, InvalidMember>();
    let previous: number | undefined;
    let seen = new Set<string>();
    let counts = "";
    for (let pass = 1; pass <= this.#o.maxTiePasses; pass++) {
      const ids = new Set<string>();
      let positions = 0;
      let anonymous = 0;
      let left = false;
      let total: number | undefined;
      for (let offset = 0;;) {
        const page = await this.#fetch({
          sinceMs: this.sinceInclusive ? t : t - SECOND,
          beforeMs: t + SECOND,
          offset,
          count: _TIE_PAGE,
          status,
        });
        total = page.totalItems;
        positions += page.size;
        for (const m of page.members) {
          const at = lastChangedOf(m);
          if (at === t) {
            tie.set(m.id, m);
            ids.add(m.id);
          } else if (at > t + SECOND) {
            // It changed while the pass ran (a torn page): the group did not stand still.
            left = true;
            ids.add(m.id);
          } else positions--; // the second before or after, when an edge is inclusive
        }
        for (const m of page.invalid) {
          if (m.id === null) anonymous++;
          else {
            ids.add(m.id);
            invalid.set(m.id, m);
          }
        }
        if (page.size < _TIE_PAGE) break;
        offset += page.size;
      }
      positions -= anonymous;
      counts = `${positions} members in pages, total_items ${total}`;
      if (left || previous !== positions) {
        seen = new Set();
        previous = left ? undefined : positions;
      } else {
        for (const id of ids) seen.add(id);
        if (seen.size === positions) {
          return {
            members: [...tie.values()].filter((m) => seen.has(m.id)),
            invalid: [...invalid.values()],
          };
        }
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
}
