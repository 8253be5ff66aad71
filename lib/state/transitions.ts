/**
 * The one owner of a connection's state: every change is an event applied by the pure
 * function {@linkcode nextState}, through `StateStore.update`, so no module reads a record,
 * changes a field and writes it back on its own (on Deno KV, `update` is a
 * versionstamp-checked write that is retried on conflict, which is why this must be pure).
 *
 * @module
 */
import {
  type AlertState,
  type ConnectionState,
  newConnectionState,
  type QuarantineEntry,
  type ReconcileSummary,
  type RunProgress,
  type RunSummary,
  type VerifySummary,
} from "./schema.ts";
import type { Fence, StateStore } from "./store.ts";
import {
  type ErasureEvent,
  nextErasures,
  nextOptoutBack,
  type OptoutEvent,
} from "./consent_transitions.ts";

const _MINUTE = 60_000;

/** Most quarantined members remembered per connection; beyond that a run cannot complete. */
export const QUARANTINE_LIMIT = 10_000;

/**
 * Backoff before retrying a failed connection: 1 minute, doubling, at most 30 minutes.
 * `failures` counts consecutive failed runs (≥ 1).
 */
export function retryDelayMs(failures: number): number {
  return Math.min(30, 2 ** Math.max(0, failures - 1)) * _MINUTE;
}

/** A member to hold back, as the engine found it. */
export interface QuarantineFinding {
  id: string | null;
  reason: string;
}

/** What a run learnt about Mailchimp, recorded with its outcome. */
export interface RunFindings {
  /** Mailchimp's clock in the run's first answer, and ours when the run started. */
  clockSeen?: { mailchimpMs: number; localMs: number } | undefined;
  /** The default listing showed an archived member. */
  archivedInListing?: boolean | undefined;
}

function _seen(state: ConnectionState, f: RunFindings): ConnectionState {
  return {
    ...state,
    archived_in_listing: f.archivedInListing ? true : state.archived_in_listing,
    clock_seen: f.clockSeen
      ? { mailchimp_at: _iso(f.clockSeen.mailchimpMs), local_at: _iso(f.clockSeen.localMs) }
      : state.clock_seen,
  };
}

/** Everything that can happen to a connection's state. Times are epoch ms. */
export type ConnectionEvent =
  /** A run begins: remembers the threshold and when the connection was first attempted. */
  | { type: "run-started"; at: number; thresholdSeconds?: number | undefined }
  /**
   * Acknowledged progress inside a window (the checkpoint), with what the run has learnt of
   * Mailchimp so far: a run killed after its listing showed archived members must not read
   * them on their own again, re-sending every archived member past its cursor per crash.
   */
  | { type: "progress"; run: RunProgress; archivedInListing?: boolean | undefined }
  /** Mailchimp's clock stepped back: the next window starts no later than `lowerMs`. */
  | { type: "rewind"; lowerMs: number }
  /** The whole window up to `upperMs` is acknowledged or quarantined. */
  | ({
    type: "run-completed";
    upperMs: number;
    summary: RunSummary;
    error: string | null;
  } & RunFindings)
  /** The run stopped short of its window; the checkpoint in `run` (if any) stays. */
  | ({
    type: "run-failed";
    at: number;
    run: RunProgress | null;
    summary: RunSummary;
    error: string;
  } & RunFindings)
  /** A stop signal ended the run; the checkpoint stays. */
  | ({ type: "run-aborted"; run: RunProgress | null } & RunFindings)
  /** The freshness evaluation changed the alert memory. */
  | { type: "alert"; alert: AlertState }
  /**
   * `reset`: the next run reads the whole list; with `repush`, it sends every member, those
   * the ledger calls unchanged too (remembered until that run completes its window).
   */
  | { type: "reset"; repush?: boolean | undefined }
  /**
   * Members held back (`add`) and members that went through or are gone (`release`, by id).
   * `at` is when this happened; `forgetUnidentifiedBefore` drops entries without an id last
   * met before then (a full read of the list did not meet them again).
   */
  | {
    type: "quarantine";
    at: number;
    add: readonly QuarantineFinding[];
    release: readonly string[];
    forgetUnidentifiedBefore?: number;
  }
  /** A reconciliation finished. */
  | { type: "reconciled"; summary: ReconcileSummary }
  /** A verify finished (`diverged_since` is carried on from the last one here). */
  | { type: "verified"; summary: Omit<VerifySummary, "diverged_since"> }
  /** The list's name was read from Mailchimp. */
  | { type: "list-named"; name: string }
  /** Ometria's validation errors were read: these are the ones seen now. */
  | { type: "async-errors-seen"; seen: readonly string[] }
  /** A Mailchimp webhook event was acted on (`firedAt`: its `fired_at`, when readable). */
  | { type: "webhook"; at: number; firedAt: number | null; eventType: string }
  /** Ometria → Mailchimp unsubscribes (see `consent_transitions.ts`). */
  | OptoutEvent
  /** Data-protection erasures (see `consent_transitions.ts`). */
  | ErasureEvent;

function _iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** The state after `event`. Pure: the same inputs always give the same output. */
export function nextState(state: ConnectionState, event: ConnectionEvent): ConnectionState {
  switch (event.type) {
    case "run-started": {
      const threshold = event.thresholdSeconds ?? state.threshold_seconds;
      // Unchanged is returned as is, so `record` writes nothing.
      if (state.first_seen_at !== null && threshold === state.threshold_seconds) return state;
      return {
        ...state,
        first_seen_at: state.first_seen_at ?? _iso(event.at),
        threshold_seconds: threshold,
      };
    }
    case "progress":
      return {
        ...state,
        run: event.run,
        archived_in_listing: event.archivedInListing ? true : state.archived_in_listing,
      };
    case "rewind": {
      const lower = (iso: string | null) =>
        iso !== null && Date.parse(iso) > event.lowerMs ? _iso(event.lowerMs) : iso;
      return {
        ...state,
        watermark: lower(state.watermark),
        run: state.run ? { ...state.run, cursor: lower(state.run.cursor) } : null,
      };
    }
    case "run-completed": {
      // The window is done either way; a run over members still held is a failure all the
      // same (never "ok" over a member Ometria lacks), so it is retried with backoff: the
      // held members are tried again at every retry until they go through.
      const held = event.summary.outcome === "failed";
      const failures = held ? state.failures + 1 : 0;
      // A pending repush is done: this window was read whole and every member in it sent.
      const { repush_pending: _done, ...rest } = state;
      return {
        ..._seen(rest, event),
        watermark: _iso(event.upperMs),
        fresh_as_of: _iso(event.upperMs),
        run: null,
        status: held ? "failed" : "ok",
        failures,
        retry_at: held
          ? _iso(Date.parse(event.summary.finished_at) + retryDelayMs(failures))
          : null,
        last_error: event.error,
        last_run: event.summary,
      };
    }
    case "run-failed": {
      const failures = state.failures + 1;
      return {
        ..._seen(state, event),
        run: event.run ?? state.run,
        status: "failed",
        failures,
        retry_at: _iso(event.at + retryDelayMs(failures)),
        last_error: event.error,
        last_run: event.summary,
      };
    }
    case "run-aborted":
      return { ..._seen(state, event), run: event.run ?? state.run };
    case "alert":
      return { ...state, alert: event.alert };
    case "reset":
      // fresh_as_of stays: Ometria is still complete up to then until the full run ends.
      return {
        ...state,
        watermark: null,
        run: null,
        ...(event.repush ? { repush_pending: true as const } : {}),
      };
    case "quarantine":
      return { ...state, quarantine: _quarantine(state.quarantine, event) };
    case "reconciled":
      return { ...state, last_reconcile: event.summary };
    case "verified": {
      const { summary } = event;
      const differs = summary.missing + summary.stale + summary.extra > summary.repaired;
      const since = differs ? state.last_verify?.diverged_since ?? summary.at : null;
      return { ...state, last_verify: { ...summary, diverged_since: since } };
    }
    case "list-named":
      return state.list_name === event.name ? state : { ...state, list_name: event.name };
    case "async-errors-seen":
      return { ...state, async_errors_seen: [...event.seen] };
    case "webhook":
      return {
        ...state,
        last_webhook: {
          received_at: _iso(event.at),
          fired_at: event.firedAt === null ? null : _iso(event.firedAt),
          type: event.eventType,
          count: (state.last_webhook?.count ?? 0) + 1,
        },
      };
    case "optouts":
    case "optout-failed":
      return { ...state, optout_back: nextOptoutBack(state.optout_back, event) };
    case "erasure-filed":
    case "erasures-checked":
    case "erasures-alerted":
      return { ...state, erasures: nextErasures(state.erasures, event) };
  }
}

function _quarantine(
  entries: readonly QuarantineEntry[],
  event: Extract<ConnectionEvent, { type: "quarantine" }>,
): QuarantineEntry[] {
  const at = _iso(event.at);
  const released = new Set(event.release);
  const byKey = new Map<string, QuarantineEntry>();
  const keyOf = (id: string | null, reason: string) => id ?? `?${reason}`;
  for (const e of entries) {
    if (e.id !== null && released.has(e.id)) continue;
    if (
      e.id === null && event.forgetUnidentifiedBefore !== undefined &&
      Date.parse(e.last_tried_at) < event.forgetUnidentifiedBefore
    ) continue;
    byKey.set(keyOf(e.id, e.reason), e);
  }
  for (const f of event.add) {
    const key = keyOf(f.id, f.reason);
    const old = byKey.get(key);
    byKey.set(key, {
      id: f.id,
      reason: f.reason,
      first_seen_at: old?.first_seen_at ?? at,
      last_tried_at: at,
      attempts: (old?.attempts ?? 0) + 1,
    });
  }
  return [...byKey.values()].slice(0, QUARANTINE_LIMIT);
}

/**
 * Applies `event` to connection `id` in `store` (creating its state when it has none) and
 * returns the new state. With `fence`, only while it holds (the connection's writer).
 */
export async function record(
  store: StateStore,
  connection: { id: string; listId: string },
  event: ConnectionEvent,
  fence?: Fence,
): Promise<ConnectionState> {
  const next = await store.update(connection.id, (current) => {
    const base = current ?? newConnectionState(connection.id, connection.listId);
    const changed = nextState(base, event);
    return changed === base && current !== undefined ? undefined : changed;
  }, fence);
  return next!;
}
