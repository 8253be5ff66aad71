/**
 * One run of the engine over one connection: read the window of changed members from
 * Mailchimp, push them to Ometria in batches, checkpoint after every acknowledged batch,
 * and move the watermark when the whole window is done.
 *
 * Why it is lossless (invariants 1–3 of DESIGN.md):
 *
 * - Times. Mailchimp stamps `last_changed` in whole seconds. The window's upper bound U is
 *   Mailchimp's own clock (the `Date` header of the run's first response) minus a safety
 *   margin, so no member can still receive a `last_changed` below U once the run has seen it
 *   (a change is stamped "now", and now > U). The run covers `lower ≤ last_changed < U`;
 *   the edges are enforced on our side, so whether Mailchimp treats `since_last_changed` or
 *   `before_last_changed` as inclusive does not matter: we ask for one second more than we
 *   need (`since = T − 1 s`) and drop what is outside. Once a response shows a member at
 *   exactly the `since` we sent, Mailchimp is known to be inclusive and we ask for `T`.
 * - Keyset paging. Every page is requested from offset 0 with `since` = the cursor T, sorted
 *   by `last_changed` ascending. One response is one consistent snapshot, so if its last
 *   member has `last_changed = t`, every member with `T ≤ last_changed < t` is in that
 *   response: those are pushed and the cursor moves to t. Members sharing t are deferred to
 *   the next page, which starts at t. Offsets over a changing set (members moving out of
 *   the window when they change mid-run) are never trusted, so nobody is skipped; a member
 *   that changes mid-run leaves the window with `last_changed ≥ U` and is the next run's.
 * - Ties larger than a page (bulk imports). When a full page holds nothing but the tie group
 *   at T, the group is read on its own (`since ≈ T`, `before = T + 1 s`) with offsets, in as
 *   many passes as it takes until the ids seen equal `total_items` with `total_items`
 *   unchanged since the previous pass. Nobody can join a past tie group, so a constant total
 *   means nobody left it either, and a complete set of ids is proof whatever the order of
 *   ties (stable or not). Then the cursor moves to T + 1 s.
 * - Checkpoints. The cursor means "every member of the window with `last_changed` < cursor is
 *   acknowledged by Ometria". It moves only over a contiguous prefix of acknowledged batches
 *   (batches are in `last_changed` order). A restarted run starts a new window at the cursor,
 *   so a crash between any two requests costs at most re-reading and re-pushing the
 *   unacknowledged part (pushes are idempotent upserts). The watermark (= fresh_as_of) moves
 *   to U only when the whole window is acknowledged.
 * - Cost. A run where nothing changed sends one Mailchimp request (the first page, which also
 *   gives U) and no Ometria request; in a clean run no member is pushed twice.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import type { Member } from "../mailchimp/member.ts";
import { formatMailchimpTime, parseMailchimpTime } from "../mailchimp/time.ts";
import { type OmetriaRecord, toLegacyRecord, toOmetriaContact } from "../mapping/contact.ts";
import { type ConnectionState, newConnectionState, type RunProgress } from "../state/schema.ts";
import type { StateStore } from "../state/store.ts";

/** The part of the Mailchimp client the engine uses. */
export interface MembersSource {
  getMembers(
    listId: string,
    query: {
      count: number;
      offset?: number;
      sinceMs?: number;
      beforeMs?: number;
      sortField?: "last_changed";
      sortDir?: "ASC" | "DESC";
    },
    signal?: AbortSignal,
  ): Promise<{ members: Member[]; totalItems: number; serverTimeMs?: number | undefined }>;
}

/** The part of the Ometria client the engine uses. */
export interface RecordsSink {
  push(
    records: OmetriaRecord[],
    options?: { signal?: AbortSignal; label?: string },
  ): Promise<{ accepted: number; rejected: number; tooLarge?: string[]; errors?: string[] }>;
}

/** Options of {@linkcode runConnection}. */
export interface RunConnectionOptions {
  connection: { id: string; listId: string };
  mailchimp: MembersSource;
  ometria: RecordsSink;
  /** Which record format to send. @default {"push"} */
  endpoint?: "push" | "record";
  store: StateStore;
  clock: Clock;
  logger: Logger;
  /** Members per Mailchimp page (≤ 1000). @default {1000} */
  pageSize?: number;
  /** Records per Ometria request (≤ 100). @default {100} */
  batchSize?: number;
  /** Ometria requests in flight at once for this run. @default {4} */
  pushConcurrency?: number;
  /**
   * Seconds taken off Mailchimp's clock for U, so late-stamped changes still land in the
   * next window. @default {60}
   */
  marginSeconds?: number;
  /** Most passes over one tie group before the run gives up. @default {20} */
  maxTiePasses?: number;
  /** Stops the run between requests (graceful shutdown): progress is kept. */
  signal?: AbortSignal;
  /** Aborts requests in flight (hard stop); progress up to the last checkpoint is kept. */
  hardSignal?: AbortSignal;
  /** Called after every acknowledged batch. */
  onProgress?: (progress: { read: number; pushed: number }) => void;
}

/** What a run did. */
export interface RunResult {
  outcome: "ok" | "failed" | "aborted";
  /** Members read from Mailchimp that were inside the window. */
  read: number;
  pushed: number;
  rejected: number;
  durationMs: number;
  mailchimpRequests: number;
  ometriaRequests: number;
  /** U of the run (Mailchimp time, ISO) once known. */
  upper?: string;
  error?: string;
}

class _Aborted extends Error {}

const SECOND = 1000;

function _lastChanged(member: Member): number {
  const t = parseMailchimpTime(member.last_changed);
  if (t === undefined) {
    throw new TypeError(
      `Mailchimp returned member ${member.id} with an unreadable last_changed "${member.last_changed}"`,
    );
  }
  return t;
}

function _iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Runs one connection once and records the outcome in the store. Never throws for API
 * failures: they become `outcome: "failed"` with the error, and the checkpoint stays.
 */
export async function runConnection(options: RunConnectionOptions): Promise<RunResult> {
  const {
    connection,
    mailchimp,
    ometria,
    store,
    clock,
    logger,
    signal,
    hardSignal,
  } = options;
  const pageSize = options.pageSize ?? 1000;
  const batchSize = options.batchSize ?? 100;
  const pushConcurrency = options.pushConcurrency ?? 4;
  const marginMs = (options.marginSeconds ?? 60) * SECOND;
  const maxTiePasses = options.maxTiePasses ?? 20;
  const endpoint = options.endpoint ?? "push";
  const log = logger.with({ connection: connection.id, list_id: connection.listId });

  if (pageSize < 1 || pageSize > 1000) {
    throw new RangeError(`Cannot run as 'pageSize' must be 1..1000: current value ${pageSize}`);
  }

  const started = clock.now();
  let state: ConnectionState = (await store.get(connection.id)) ??
    newConnectionState(connection.id, connection.listId);
  const resumed = state.run;
  const watermarkMs = state.watermark ? Date.parse(state.watermark) : undefined;
  const resumeCursorMs = resumed?.cursor ? Date.parse(resumed.cursor) : undefined;
  /** Every window member with last_changed < cursor is acknowledged (undefined: none yet). */
  let cursor: number | undefined = resumeCursorMs ?? (resumed ? undefined : watermarkMs);
  let upper: number | undefined;
  let sinceInclusive = false;
  const counts = {
    read: resumed?.read ?? 0,
    pushed: resumed?.pushed ?? 0,
    rejected: resumed?.rejected ?? 0,
    mailchimpRequests: 0,
    ometriaRequests: 0,
  };
  const rejectedBatches: string[] = [];
  if (resumed) {
    log.info("Resuming an interrupted run from {cursor}", {
      cursor: resumed.cursor ?? "the beginning",
    });
  }

  const checkStop = () => {
    if (signal?.aborted || hardSignal?.aborted) throw new _Aborted();
  };

  const persistProgress = async () => {
    if (upper === undefined) return;
    const run: RunProgress = {
      upper: _iso(upper),
      cursor: cursor === undefined ? null : _iso(cursor),
      started_at: resumed?.started_at ?? _iso(started),
      read: counts.read,
      pushed: counts.pushed,
      rejected: counts.rejected,
    };
    state = { ...state, run };
    await store.put(state);
  };

  const fetchPage = async (query: {
    sinceMs?: number | undefined;
    beforeMs?: number | undefined;
    offset?: number;
    count: number;
  }) => {
    checkStop();
    counts.mailchimpRequests++;
    const q: Parameters<MembersSource["getMembers"]>[1] = {
      count: query.count,
      sortField: "last_changed",
      sortDir: "ASC",
    };
    if (query.offset) q.offset = query.offset;
    if (query.sinceMs !== undefined) q.sinceMs = query.sinceMs;
    if (query.beforeMs !== undefined) q.beforeMs = query.beforeMs;
    return await mailchimp.getMembers(connection.listId, q, hardSignal);
  };

  /** Pushes members (sorted by last_changed) and advances the cursor to `doneBefore`. */
  const pushSorted = async (members: Member[], doneBefore: number) => {
    const records = members.map((m) =>
      endpoint === "push" ? toOmetriaContact(m, connection.listId) : toLegacyRecord(m)
    );
    const batches: { records: OmetriaRecord[]; firstChanged: number }[] = [];
    for (let i = 0; i < records.length; i += batchSize) {
      batches.push({
        records: records.slice(i, i + batchSize),
        firstChanged: _lastChanged(members[i]!),
      });
    }
    const acked = new Array<boolean>(batches.length).fill(false);
    let contiguous = 0;
    let next = 0;
    let failure: unknown;
    const worker = async () => {
      while (failure === undefined && next < batches.length) {
        const index = next++;
        const batch = batches[index]!;
        counts.ometriaRequests++;
        const label = `${connection.id} batch ${index + 1}/${batches.length} (from ${
          formatMailchimpTime(batch.firstChanged)
        })`;
        try {
          // Pushes are not cancelled by a graceful stop: an in-flight batch is allowed to
          // finish so its acknowledgement can be checkpointed.
          const result = await ometria.push(
            batch.records,
            hardSignal ? { signal: hardSignal, label } : { label },
          );
          const rejected = result.rejected;
          if (rejected > 0) {
            counts.rejected += rejected;
            rejectedBatches.push(label);
            log.error("Ometria rejected {rejected} record(s) of {batch}: {errors}", {
              rejected,
              batch: label,
              errors: (result.errors ?? []).join("; ") || "no detail given",
            });
          }
          counts.pushed += batch.records.length - rejected;
        } catch (error) {
          failure ??= error;
          return;
        }
        acked[index] = true;
        const before = contiguous;
        while (contiguous < batches.length && acked[contiguous]) contiguous++;
        if (contiguous > before) {
          cursor = contiguous === batches.length ? doneBefore : batches[contiguous]!.firstChanged;
          await persistProgress();
          options.onProgress?.({ read: counts.read, pushed: counts.pushed });
        }
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(pushConcurrency, batches.length) }, worker),
    );
    if (failure !== undefined) throw failure;
    if (batches.length === 0) {
      cursor = doneBefore;
      await persistProgress();
    }
  };

  /** Reads the whole tie group at `t` whatever the order of ties; see the module comment. */
  const readTieGroup = async (t: number): Promise<Member[]> => {
    const tie = new Map<string, Member>();
    // Ids seen since total_items last changed: while it stays the same nobody left the group
    // (nobody can join a past second), so these ids all belong to one unchanging set.
    let seen = new Set<string>();
    let total: number | undefined;
    for (let pass = 1; pass <= maxTiePasses; pass++) {
      let offset = 0;
      for (;;) {
        const page = await fetchPage({
          sinceMs: sinceInclusive ? t : t - SECOND,
          beforeMs: t + SECOND,
          offset,
          count: 1000,
        });
        if (page.totalItems !== total) seen = new Set();
        total = page.totalItems;
        for (const m of page.members) {
          seen.add(m.id);
          if (_lastChanged(m) === t) tie.set(m.id, m);
        }
        offset += page.members.length;
        if (page.members.length < 1000 || offset >= page.totalItems) break;
      }
      if (seen.size >= total!) return [...tie.values()].sort((a, b) => a.id < b.id ? -1 : 1);
      log.debug("Tie group at {at}: pass {pass} has seen {seen} of {total}; reading again", {
        at: formatMailchimpTime(t),
        pass,
        seen: seen.size,
        total,
      });
    }
    throw new Error(
      `Could not read every member changed at ${
        formatMailchimpTime(t)
      } in ${maxTiePasses} passes (Mailchimp's order of members sharing one last_changed keeps changing); the run will be retried.`,
    );
  };

  let outcome: RunResult["outcome"] = "ok";
  let errorText: string | undefined;
  try {
    let stalled = 0;
    /** Lower edge of the next page's query: every member before it is pushed or pushing. */
    let lower = cursor;
    const request = () => {
      const sinceMs = lower === undefined ? undefined : sinceInclusive ? lower : lower - SECOND;
      const page = fetchPage({ sinceMs, beforeMs: upper, count: pageSize });
      // Marked as handled now: a prefetch may fail while the previous page is being pushed,
      // and its error is only looked at when the loop gets to it.
      page.catch(() => {});
      return { sinceMs, page };
    };
    let next = request();
    for (;;) {
      const { sinceMs } = next;
      const page = await next.page;
      if (upper === undefined) {
        const serverTime = page.serverTimeMs;
        if (serverTime === undefined) {
          log.warning("Mailchimp sent no Date header; using our clock for the window's bound");
        }
        upper = Math.floor(((serverTime ?? clock.now()) - marginMs) / SECOND) * SECOND;
        if (lower !== undefined && upper <= lower) {
          // Our margin reaches back before the watermark: nothing can be complete yet.
          upper = lower;
        }
      }
      const raw = page.members;
      const times = raw.map(_lastChanged);
      for (let i = 1; i < times.length; i++) {
        if (times[i]! < times[i - 1]!) {
          throw new TypeError(
            `Mailchimp returned members out of last_changed order for list ${connection.listId}`,
          );
        }
      }
      if (!sinceInclusive && sinceMs !== undefined && times.includes(sinceMs)) {
        sinceInclusive = true;
      }
      const from = lower ?? -Infinity;
      const exhausted = raw.length < pageSize || times.some((t) => t >= upper!);
      const lastTime = times[times.length - 1];
      let doneBefore: number;
      let take: Member[];
      if (exhausted || lastTime === undefined) {
        doneBefore = upper;
        take = raw.filter((_, i) => times[i]! >= from && times[i]! < upper!);
      } else if (lastTime > from) {
        doneBefore = lastTime;
        take = raw.filter((_, i) => times[i]! >= from && times[i]! < lastTime);
      } else if (lastTime === from) {
        take = await readTieGroup(lastTime);
        doneBefore = lastTime + SECOND;
      } else {
        // A full page of members before the cursor: Mailchimp's `since` must be inclusive
        // (now noted), so the next request starts at the cursor itself.
        if (++stalled > 2) {
          throw new Error(`Mailchimp's paging made no progress for list ${connection.listId}`);
        }
        sinceInclusive = true;
        next = request();
        continue;
      }
      stalled = 0;
      counts.read += take.length;
      const last = doneBefore >= upper;
      lower = doneBefore;
      // The next page only depends on where this one ends, so it is read while this one is
      // pushed; the cursor still moves only with acknowledgements.
      if (!last) next = request();
      if (take.length > 0 || doneBefore !== cursor) await pushSorted(take, doneBefore);
      if (last) break;
    }
  } catch (error) {
    if (error instanceof _Aborted || (hardSignal?.aborted && error === hardSignal.reason)) {
      outcome = "aborted";
    } else {
      outcome = "failed";
      errorText = error instanceof Error ? error.message : String(error);
    }
  }

  const finished = clock.now();
  if (outcome === "ok" && counts.rejected > 0) {
    outcome = "failed";
    errorText = `Ometria rejected ${counts.rejected} record(s) in ${
      rejectedBatches.slice(0, 3).join(", ")
    }${rejectedBatches.length > 3 ? ` and ${rejectedBatches.length - 3} more batch(es)` : ""}`;
  }
  const summary = {
    started_at: resumed?.started_at ?? _iso(started),
    finished_at: _iso(finished),
    read: counts.read,
    pushed: counts.pushed,
    rejected: counts.rejected,
    duration_ms: finished - started,
    mailchimp_requests: counts.mailchimpRequests,
    ometria_requests: counts.ometriaRequests,
  };
  const completed = cursor !== undefined && upper !== undefined && cursor >= upper;
  if (completed) {
    // The whole window is acknowledged: even a run whose records were rejected (Ometria
    // received them and will not take them as they are) moves on, and reports the rejection.
    state = {
      ...state,
      watermark: _iso(upper!),
      fresh_as_of: _iso(upper!),
      run: null,
    };
  } else if (outcome !== "aborted") {
    await persistProgress();
  }
  if (outcome === "ok") {
    state = {
      ...state,
      status: "ok",
      failures: 0,
      retry_at: null,
      last_error: null,
      last_run: { ...summary, outcome: "ok" },
    };
  } else if (outcome === "failed") {
    state = {
      ...state,
      status: "failed",
      failures: state.failures + 1,
      last_error: errorText ?? "unknown error",
      last_run: { ...summary, outcome: "failed" },
    };
  }
  await store.put(state);
  await store.flush();

  const result: RunResult = {
    outcome,
    read: counts.read,
    pushed: counts.pushed,
    rejected: counts.rejected,
    durationMs: finished - started,
    mailchimpRequests: counts.mailchimpRequests,
    ometriaRequests: counts.ometriaRequests,
  };
  if (upper !== undefined) result.upper = _iso(upper);
  if (errorText !== undefined) result.error = errorText;
  return result;
}
