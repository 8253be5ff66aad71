/**
 * Reads one window of a list — the members whose `last_changed` lies in [lower, U) — as a
 * sequence of slices in `last_changed` order, each complete up to its `doneBefore` bound.
 * See the comment at the top of `run_connection.ts` for why no member can be skipped.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Member, MemberStatus } from "../mailchimp/member.ts";
import { formatMailchimpTime, parseMailchimpTime } from "../mailchimp/time.ts";
import type { MembersQuery } from "../mailchimp/client.ts";
import type { MembersSource } from "./members_source.ts";

const SECOND = 1000;

/**
 * Every member of the window with `doneBefore_prev ≤ last_changed < doneBefore` (sorted by
 * `last_changed`). `last` is true for the slice that ends the window (`doneBefore = U`).
 */
export interface WindowSlice {
  members: Member[];
  doneBefore: number;
  last: boolean;
}

/** Options of {@linkcode WindowReader}. */
export interface WindowReaderOptions {
  listId: string;
  source: MembersSource;
  logger: Logger;
  /** Members per page (≤ 1000). */
  pageSize: number;
  /** Seconds taken off Mailchimp's clock for U. */
  marginMs: number;
  /** Most passes over one tie group. */
  maxTiePasses: number;
  /** Aborts requests in flight. */
  hardSignal?: AbortSignal | undefined;
  /** Called before every request; throws to stop between requests. */
  beforeRequest: () => void;
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
 * Pages through windows of one list. The first response of the reader fixes U (Mailchimp's
 * `Date` less the margin); what it learns about Mailchimp (inclusive `since`, archived
 * members in the default listing) is kept for the reader's later requests.
 */
export class WindowReader {
  /** The window's upper bound U, once the first response fixed it. */
  upper: number | undefined;
  /** True once a response showed that `since_last_changed` is inclusive. */
  sinceInclusive = false;
  /** True once the default listing returned an archived member. */
  sawArchived = false;
  readonly #o: WindowReaderOptions;

  constructor(options: WindowReaderOptions) {
    this.#o = options;
  }

  /**
   * The slices of the window from `lower` (undefined: the list's beginning) to U, for the
   * members with `status` (all when undefined). The next page is requested before a slice is
   * handed out, so reading overlaps with whatever the caller does with the slice.
   */
  async *slices(lower: number | undefined, status?: MemberStatus): AsyncGenerator<WindowSlice> {
    const o = this.#o;
    let stalled = 0;
    const request = () => {
      const sinceMs = lower === undefined
        ? undefined
        : this.sinceInclusive
        ? lower
        : lower - SECOND;
      const page = this.#fetch({ sinceMs, beforeMs: this.upper, count: o.pageSize, status });
      // Marked as handled now: a prefetch may fail while the caller works on the previous
      // slice, and its error is only looked at when the loop gets to it.
      page.catch(() => {});
      return { sinceMs, page };
    };
    let next = request();
    for (;;) {
      const { sinceMs } = next;
      const page = await next.page;
      if (this.upper === undefined) {
        if (page.serverTimeMs === undefined) {
          // Our own clock may be ahead of Mailchimp's: a bound taken from it could pass
          // changes that are not stamped yet. No bound is safer than a wrong one.
          throw new Error(
            `Mailchimp's answer for list ${o.listId} had no Date header, so the window cannot be bounded safely`,
          );
        }
        this.upper = Math.floor((page.serverTimeMs - o.marginMs) / SECOND) * SECOND;
        // A margin reaching back before the lower edge: nothing new can be complete yet.
        if (lower !== undefined && this.upper < lower) this.upper = lower;
      }
      const upper = this.upper;
      const raw = page.members;
      const times = raw.map(lastChangedOf);
      for (let i = 1; i < times.length; i++) {
        if (times[i]! < times[i - 1]!) {
          throw new TypeError(
            `Mailchimp returned members out of last_changed order for list ${o.listId}`,
          );
        }
      }
      if (status === undefined && raw.some((m) => m.status === "archived")) this.sawArchived = true;
      if (!this.sinceInclusive && sinceMs !== undefined && times.includes(sinceMs)) {
        this.sinceInclusive = true;
      }
      const from = lower ?? -Infinity;
      const exhausted = raw.length < o.pageSize || times.some((t) => t >= upper);
      const lastTime = times[times.length - 1];
      let doneBefore: number;
      let members: Member[];
      if (exhausted || lastTime === undefined) {
        doneBefore = upper;
        members = raw.filter((_, i) => times[i]! >= from && times[i]! < upper);
      } else if (lastTime > from) {
        doneBefore = lastTime;
        members = raw.filter((_, i) => times[i]! >= from && times[i]! < lastTime);
      } else if (lastTime === from) {
        members = await this.#readTieGroup(lastTime, status);
        doneBefore = lastTime + SECOND;
      } else {
        // A full page of members before the lower edge: Mailchimp's `since` must be
        // inclusive (now noted), so the next request starts at the edge itself.
        if (++stalled > 2) {
          throw new Error(`Mailchimp's paging made no progress for list ${o.listId}`);
        }
        this.sinceInclusive = true;
        next = request();
        continue;
      }
      stalled = 0;
      const last = doneBefore >= upper;
      lower = doneBefore;
      if (!last) next = request();
      yield { members, doneBefore, last };
      if (last) return;
    }
  }

  #fetch(query: {
    sinceMs?: number | undefined;
    beforeMs?: number | undefined;
    offset?: number;
    count: number;
    status?: MemberStatus | undefined;
  }) {
    this.#o.beforeRequest();
    const q: MembersQuery = {
      count: query.count,
      sortField: "last_changed",
      sortDir: "ASC",
    };
    if (query.offset) q.offset = query.offset;
    if (query.sinceMs !== undefined) q.sinceMs = query.sinceMs;
    if (query.beforeMs !== undefined) q.beforeMs = query.beforeMs;
    if (query.status !== undefined) q.status = query.status;
    return this.#o.source.getMembers(this.#o.listId, q, this.#o.hardSignal);
  }

  /** Reads the whole tie group at `t` whatever the order of ties; see run_connection.ts. */
  async #readTieGroup(t: number, status: MemberStatus | undefined): Promise<Member[]> {
    const tie = new Map<string, Member>();
    // Ids seen since total_items last changed: while it stays the same nobody left the group
    // (nobody can join a past second), so these ids all belong to one unchanging set.
    let seen = new Set<string>();
    let total: number | undefined;
    for (let pass = 1; pass <= this.#o.maxTiePasses; pass++) {
      let offset = 0;
      for (;;) {
        const page = await this.#fetch({
          sinceMs: this.sinceInclusive ? t : t - SECOND,
          beforeMs: t + SECOND,
          offset,
          count: 1000,
          status,
        });
        if (page.totalItems !== total) seen = new Set();
        total = page.totalItems;
        for (const m of page.members) {
          seen.add(m.id);
          if (lastChangedOf(m) === t) tie.set(m.id, m);
        }
        offset += page.members.length;
        if (page.members.length < 1000 || offset >= page.totalItems) break;
      }
      if (seen.size >= total!) return [...tie.values()];
      this.#o.logger.debug(
        "Tie group at {at}: pass {pass} has seen {seen} of {total}; reading again",
        { at: formatMailchimpTime(t), pass, seen: seen.size, total },
      );
    }
    throw new Error(
      `Could not read every member changed at ${
        formatMailchimpTime(t)
      } in ${this.#o.maxTiePasses} passes (Mailchimp's order of members sharing one last_changed keeps changing); the run will be retried.`,
    );
  }
}
