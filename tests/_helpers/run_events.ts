/**
 * The run events tests record through the real transitions: a run that failed, one that
 * completed, with the summary a run would write.
 *
 * @module
 */
import type { RunSummary } from "../../lib/state/schema.ts";
import type { ConnectionEvent } from "../../lib/state/transitions.ts";

/** A run's summary from `startedMs` to `finishedMs` (members read and pushed, 0 rejected). */
export function runSummary(
  outcome: "ok" | "failed",
  startedMs: number,
  finishedMs: number,
  members: { read?: number; pushed?: number; rejected?: number } = {},
): RunSummary {
  return {
    started_at: new Date(startedMs).toISOString(),
    finished_at: new Date(finishedMs).toISOString(),
    outcome,
    read: members.read ?? 0,
    pushed: members.pushed ?? 0,
    rejected: members.rejected ?? 0,
    duration_ms: finishedMs - startedMs,
    mailchimp_requests: 1,
    ometria_requests: outcome === "ok" ? 1 : 0,
  };
}

/** A run from `startedMs` that failed at `finishedMs` with `error`, keeping no checkpoint. */
export function failedRun(startedMs: number, finishedMs: number, error: string): ConnectionEvent {
  return {
    type: "run-failed",
    at: finishedMs,
    run: null,
    error,
    summary: runSummary("failed", startedMs, finishedMs),
  };
}
