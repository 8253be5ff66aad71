/**
 * One run of the engine over one connection: read the window of changed members from
 * Mailchimp, push them to Ometria in batches, checkpoint after every acknowledged batch,
 * and move the watermark when the whole window is done.
 *
 * Why it is lossless (invariants 1–3 of DESIGN.md):
 *
 * - Times. Mailchimp stamps `last_changed` in whole seconds. The window's upper bound U is
 *   Mailchimp's own clock (the `Date` header of the run's first response) minus a safety
 *   margin of at least 2 s, so no member can still receive a `last_changed` below U + 1 s
 *   once the run has seen it (a change is stamped "now", and now > U + 1 s). A response
 *   without a `Date` header fails the run: our clock may be ahead of Mailchimp's. The run
 *   covers `lower ≤ last_changed < U`; the edges are enforced on our side, so whether
 *   Mailchimp treats `since_last_changed` or `before_last_changed` as inclusive does not
 *   matter: we ask for one second more than we need (`since = T − 1 s`) and drop what is
 *   outside. Once a response shows a member at exactly the `since` we sent, Mailchimp is
 *   known to be inclusive and we ask for `T`.
 * - Keyset paging (window_reader.ts). Every page is requested from offset 0 with `since` =
 *   the cursor T, sorted by `last_changed` ascending. One response is one consistent
 *   snapshot, so if its last member has `last_changed = t`, every member with
 *   `T ≤ last_changed < t` is in that response: those are pushed and the cursor moves to t.
 *   Members sharing t are deferred to the next page, which starts at t. Offsets over a
 *   changing set (members moving out of the window when they change mid-run) are never
 *   trusted, so nobody is skipped; a member that changes mid-run leaves the window with
 *   `last_changed ≥ U` and is the next run's. The next page is requested while the current
 *   one is pushed: it depends only on where the current one ends.
 * - Ties larger than a page (bulk imports). When a full page holds nothing but the tie group
 *   at T, the group is read on its own (`since ≈ T`, `before = T + 1 s`) with offsets, in as
 *   many passes as it takes until the ids seen since `total_items` last changed cover
 *   `total_items`. Nobody can join the seconds T − 1 s … T + 1 s (they are before U + 1 s),
 *   so a constant total means nobody left either, and a complete set of ids is proof
 *   whatever the order of ties (stable or not). Then the cursor moves to T + 1 s.
 * - Archived members. Whether the default listing includes them is not confirmed. Until a
 *   listing of this list has shown one, each run first reads the window with
 *   `status=archived` and pushes what it finds; that pass never moves the cursor, so a crash
 *   in or after it cannot leave an archived member behind the cursor.
 * - Checkpoints (push_in_order.ts). The cursor means "every member of the window with
 *   `last_changed` < cursor is acknowledged by Ometria". It moves only over a contiguous
 *   prefix of acknowledged batches (batches are in `last_changed` order). A restarted run
 *   starts a new window at the cursor, so a crash between any two requests costs at most
 *   re-reading and re-pushing the unacknowledged part (pushes are idempotent upserts). The
 *   watermark (= fresh_as_of) moves to U only when the whole window is acknowledged.
 * - Cost. A run where nothing changed sends one Mailchimp request (the first page, which also
 *   gives U) and no Ometria request — two Mailchimp requests while archived members still
 *   have to be read on their own; in a clean run no member version is pushed twice.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import type { ConnectionState, RunProgress } from "../state/schema.ts";
import type { StateStore } from "../state/store.ts";
import { record } from "../state/transitions.ts";
import type { MembersSource, RecordsSink } from "./members_source.ts";
import { pushInOrder, StoppedError } from "./push_in_order.ts";
import { WindowReader } from "./window_reader.ts";

/** Options of {@linkcode runConnection}. */
export interface RunConnectionOptions {
  /** `thresholdSeconds` is recorded in the state for `status`. */
  connection: { id: string; listId: string; thresholdSeconds?: number };
  mailchimp: MembersSource;
  ometria: RecordsSink;
  /** Which record format to send. @default {"push"} */
  endpoint?: "push" | "record";
  store: StateStore;
  clock: Clock;
  logger: Logger;
  /** Members per Mailchimp page (≤ 1000). @default {1000} */
  pageSize?: number;
  /** Ometria requests in flight at once for this run. @default {4} */
  pushConcurrency?: number;
  /**
   * Seconds taken off Mailchimp's clock for U, so late-stamped changes still land in the
   * next window; at least 2 (see the tie-group argument above). @default {60}
   */
  marginSeconds?: number;
  /** Most passes over one tie group before the run gives up. @default {20} */
  maxTiePasses?: number;
  /** Stops the run between requests and batches (graceful shutdown): progress is kept. */
  signal?: AbortSignal;
  /** Aborts requests in flight (hard stop); progress up to the last checkpoint is kept. */
  hardSignal?: AbortSignal;
  /** Called after every acknowledged batch. */
  onProgress?: (progress: { read: number; pushed: number }) => void;
  /**
   * Mailchimp's default listing is known (from another list) to include archived members:
   * skip the separate archived pass. It is the API's behaviour, not a list's.
   * @default {false}
   */
  archivedInListing?: boolean;
}

/** What a run did. */
export interface RunResult {
  outcome: "ok" | "failed" | "aborted";
  /** True when the whole window was acknowledged (the watermark moved to U). */
  completed: boolean;
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
  /** True when this run's listing showed archived members among the others. */
  sawArchivedInListing: boolean;
}

class _Aborted extends Error {}

function _iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Runs one connection once and records the outcome in the store. Never throws for API
 * failures: they become `outcome: "failed"` with the error, and the checkpoint stays.
 */
export async function runConnection(options: RunConnectionOptions): Promise<RunResult> {
  const { connection, store, clock, logger, signal, hardSignal } = options;
  const pageSize = options.pageSize ?? 1000;
  const marginSeconds = options.marginSeconds ?? 60;
  const log = logger.with({ connection: connection.id, list_id: connection.listId });
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
    throw new RangeError(`Cannot run as 'pageSize' must be 1..1000: current value ${pageSize}`);
  }
  if (!(marginSeconds >= 2)) {
    throw new RangeError(
      `Cannot run as 'marginSeconds' must be >= 2: current value ${marginSeconds}`,
    );
  }

  const started = clock.now();
  const conn = { id: connection.id, listId: connection.listId };
  const state: ConnectionState = await record(store, conn, {
    type: "run-started",
    at: started,
    thresholdSeconds: connection.thresholdSeconds,
  });
  const resumed = state.run;
  /** Every window member with last_changed < cursor is acknowledged (undefined: none yet). */
  let cursor: number | undefined = resumed
    ? (resumed.cursor ? Date.parse(resumed.cursor) : undefined)
    : (state.watermark ? Date.parse(state.watermark) : undefined);
  const lowerEdge = cursor;
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

  const reader = new WindowReader({
    listId: connection.listId,
    source: options.mailchimp,
    logger: log,
    pageSize,
    marginMs: marginSeconds * 1000,
    maxTiePasses: options.maxTiePasses ?? 20,
    hardSignal,
    beforeRequest: () => {
      if (signal?.aborted || hardSignal?.aborted) throw new _Aborted();
      counts.mailchimpRequests++;
    },
  });

  const progress = (): RunProgress | null =>
    reader.upper === undefined ? null : {
      upper: _iso(reader.upper),
      cursor: cursor === undefined ? null : _iso(cursor),
      started_at: resumed?.started_at ?? _iso(started),
      read: counts.read,
      pushed: counts.pushed,
      rejected: counts.rejected,
    };
  const persistProgress = async () => {
    const run = progress();
    if (run) await record(store, conn, { type: "progress", run });
  };

  const ometria: RecordsSink = {
    maxBatchSize: options.ometria.maxBatchSize,
    push: (records, o) => {
      counts.ometriaRequests++;
      return options.ometria.push(records, o);
    },
  };
  const push = (
    members: Parameters<typeof pushInOrder>[0],
    doneBefore: number,
    movesCursor: boolean,
  ) =>
    pushInOrder(members, doneBefore, {
      sink: ometria,
      endpoint: options.endpoint ?? "push",
      connectionId: connection.id,
      listId: connection.listId,
      logger: log,
      batchSize: options.ometria.maxBatchSize,
      concurrency: options.pushConcurrency ?? 4,
      signal,
      hardSignal,
      onAcknowledged: async (reach, pushed, rejected) => {
        counts.pushed += pushed;
        counts.rejected += rejected;
        if (movesCursor) cursor = reach;
        await persistProgress();
        options.onProgress?.({ read: counts.read, pushed: counts.pushed });
      },
      onRejected: (label, rejected, errors) => {
        rejectedBatches.push(label);
        log.error("Ometria rejected {rejected} record(s) of {batch}: {errors}", {
          rejected,
          batch: label,
          errors: errors.join("; ") || "no detail given",
        });
      },
    });

  let outcome: RunResult["outcome"] = "ok";
  let errorText: string | undefined;
  try {
    /** Archived members pushed by the archived pass, by id, with their last_changed. */
    const archivedPushed = new Map<string, string>();
    if (state.archived_in_listing !== true && options.archivedInListing !== true) {
      // Until Mailchimp has shown that its default listing includes archived members, they
      // are read on their own first. This pass never moves the cursor, so a crash in it or
      // after it cannot leave an archived member behind it.
      for await (const slice of reader.slices(lowerEdge, "archived")) {
        counts.read += slice.members.length;
        for (const m of slice.members) archivedPushed.set(m.id, m.last_changed);
        if (slice.members.length > 0) await push(slice.members, slice.doneBefore, false);
      }
    }
    for await (const slice of reader.slices(cursor)) {
      // The same version of a member is not sent twice in one run.
      const members = archivedPushed.size === 0
        ? slice.members
        : slice.members.filter((m) => archivedPushed.get(m.id) !== m.last_changed);
      counts.read += members.length;
      await push(members, slice.doneBefore, true);
    }
  } catch (error) {
    if (
      error instanceof _Aborted || error instanceof StoppedError ||
      (hardSignal?.aborted && error === hardSignal.reason)
    ) {
      outcome = "aborted";
    } else {
      outcome = "failed";
      errorText = error instanceof Error ? error.message : String(error);
    }
  }

  const finished = Math.max(started, clock.now());
  const upper = reader.upper;
  const completed = outcome === "ok" && upper !== undefined && cursor !== undefined &&
    cursor >= upper;
  if (reader.sawArchived) await record(store, conn, { type: "archived-in-listing" });
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
  // Not flushed here: the store coalesces writes (a full rewrite per run would be quadratic
  // with thousands of connections), the tick flushes at its end, and a write lost to a crash
  // only makes the next run resend what this one acknowledged.
  if (completed) {
    // The whole window is acknowledged. Records Ometria rejected (it received them and will
    // not take them as they are; resending the same record cannot help) are reported as a
    // failed outcome, but the connection itself is healthy and moves on without backoff.
    await record(store, conn, {
      type: "run-completed",
      upperMs: upper!,
      error: errorText ?? null,
      summary: { ...summary, outcome: outcome === "ok" ? "ok" : "failed" },
    });
  } else if (outcome === "failed") {
    await record(store, conn, {
      type: "run-failed",
      at: finished,
      run: progress(),
      error: errorText ?? "unknown error",
      summary: { ...summary, outcome: "failed" },
    });
  } else {
    await record(store, conn, { type: "run-aborted", run: progress() });
  }

  const result: RunResult = {
    outcome,
    completed,
    read: counts.read,
    pushed: counts.pushed,
    rejected: counts.rejected,
    durationMs: finished - started,
    mailchimpRequests: counts.mailchimpRequests,
    ometriaRequests: counts.ometriaRequests,
    sawArchivedInListing: reader.sawArchived,
  };
  if (upper !== undefined) result.upper = _iso(upper);
  if (errorText !== undefined) result.error = errorText;
  return result;
}
