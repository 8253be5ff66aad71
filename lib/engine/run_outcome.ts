/**
 * How a run ends in the state: the one place that turns what a run did into `run-completed`,
 * `run-failed` or `run-aborted`, and into the result the scheduler and the summary line see.
 * Two rules live here: a run over a member still held in quarantine is never `ok`; and a run
 * whose lease was lost records nothing (its writes would be refused, and another process owns
 * the connection now).
 *
 * @module
 */
import type { RunProgress } from "../state/schema.ts";
import type { RunFindings } from "../state/transitions.ts";
import type { ConnectionWriter } from "../writer/connection_writer.ts";

/** What a run did. */
export interface RunResult {
  outcome: "ok" | "failed" | "aborted";
  /** True when the whole window was acknowledged (the watermark moved to U). */
  completed: boolean;
  /** Members read from Mailchimp by this run (in the window, and past U). */
  read: number;
  /** Records Ometria took. */
  pushed: number;
  rejected: number;
  /** Members read but not sent: Ometria had acknowledged the very same record before. */
  unchanged: number;
  /** Members in quarantine when the run ended. */
  quarantined: number;
  durationMs: number;
  mailchimpRequests: number;
  ometriaRequests: number;
  /** U of the run (Mailchimp time, ISO) once known. */
  upper?: string;
  error?: string;
  /** True when this run's listing showed archived members among the others. */
  sawArchivedInListing: boolean;
  /** True when the run stopped because this process no longer held the connection's lease. */
  fenced?: boolean;
  /** Errors Ometria listed after answering OK that no member can be tied to. */
  rejectedAsync?: string[];
}

/** The counts a run keeps. */
export interface RunCounts {
  read: number;
  pushed: number;
  rejected: number;
  unchanged: number;
  mailchimpRequests: number;
  ometriaRequests: number;
}

/** What {@linkcode recordOutcome} is told. */
export interface RunEnd {
  writer: ConnectionWriter;
  outcome: "ok" | "failed" | "aborted";
  error: string | undefined;
  /** The whole window up to U is acknowledged (or held), past-U reads included. */
  completed: boolean;
  upperMs: number | undefined;
  /** The run read the whole list (no watermark): unidentifiable held members it did not meet are gone. */
  fullRead: boolean;
  startedMs: number;
  /** `started_at` of the run this one resumed, when it resumed one. */
  resumedStartedAt: string | undefined;
  counts: RunCounts;
  findings: RunFindings;
  /** The checkpoint to keep when the run did not complete. */
  progress: RunProgress | null;
  sawArchived: boolean;
  /** Errors Ometria listed after answering OK that no member can be tied to. */
  untiedRejections?: readonly string[];
}

function _iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Records how the run ended and returns its result. */
export async function recordOutcome(end: RunEnd): Promise<RunResult> {
  const { writer, counts } = end;
  const finished = Math.max(end.startedMs, writer.clock.now());
  let { outcome, error } = end;
  const result = (quarantined: number, fenced = false): RunResult => ({
    outcome,
    completed: end.completed && !fenced,
    read: counts.read,
    pushed: counts.pushed,
    rejected: counts.rejected,
    unchanged: counts.unchanged,
    quarantined,
    durationMs: finished - end.startedMs,
    mailchimpRequests: counts.mailchimpRequests,
    ometriaRequests: counts.ometriaRequests,
    sawArchivedInListing: end.sawArchived,
    ...(end.upperMs !== undefined ? { upper: _iso(end.upperMs) } : {}),
    ...(error !== undefined ? { error } : {}),
    ...(fenced ? { fenced } : {}),
    ...(end.untiedRejections?.length ? { rejectedAsync: [...end.untiedRejections] } : {}),
  });
  if (writer.fence.signal.aborted) {
    // Another process may be running the connection now: nothing more is written.
    outcome = "failed";
    error = `${
      errorOf(writer.fence.signal.reason)
    } Another process may run this connection now; this one stopped before its next write.`;
    return result(0, true);
  }
  let quarantine = (await writer.store.get(writer.connection.id))?.quarantine ?? [];
  if (end.completed && end.fullRead && quarantine.some((e) => e.id === null)) {
    const after = await writer.record({
      type: "quarantine",
      at: finished,
      add: [],
      release: [],
      forgetUnidentifiedBefore: end.startedMs,
    });
    quarantine = after.quarantine;
  }
  if (outcome === "ok" && quarantine.length > 0) {
    // Never "ok" over a member that was not delivered.
    outcome = "failed";
    const shown = quarantine.slice(0, 3).map((e) => `${e.id ?? "(no id)"}: ${e.reason}`);
    error = `${quarantine.length} member(s) quarantined, not in Ometria as they are in ` +
      `Mailchimp (${shown.join("; ")}${quarantine.length > 3 ? "; …" : ""}); see status`;
  }
  const summary = {
    started_at: end.resumedStartedAt ?? _iso(end.startedMs),
    finished_at: _iso(finished),
    read: counts.read,
    pushed: counts.pushed,
    rejected: counts.rejected,
    duration_ms: finished - end.startedMs,
    mailchimp_requests: counts.mailchimpRequests,
    ometria_requests: counts.ometriaRequests,
  };
  if (end.completed) {
    // The whole window is acknowledged or held in quarantine. The connection is healthy and
    // moves on without backoff; the quarantine makes the outcome a failure until it empties.
    await writer.record({
      type: "run-completed",
      ...end.findings,
      upperMs: end.upperMs!,
      error: error ?? null,
      summary: { ...summary, outcome: outcome === "ok" ? "ok" : "failed" },
    });
  } else if (outcome === "failed") {
    await writer.record({
      type: "run-failed",
      ...end.findings,
      at: finished,
      run: end.progress,
      error: error ?? "unknown error",
      summary: { ...summary, outcome: "failed" },
    });
  } else {
    await writer.record({ type: "run-aborted", ...end.findings, run: end.progress });
  }
  return result(quarantine.length);
}

function errorOf(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
