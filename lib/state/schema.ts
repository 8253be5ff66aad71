/**
 * The state document: what the sync remembers between runs, per connection. It holds no
 * secrets. Times are ISO 8601 UTC strings; Mailchimp times (`watermark`, `fresh_as_of`,
 * `upper`, `cursor`) come from Mailchimp's clock, the others from ours.
 *
 * @module
 */
import { z } from "zod";

/** Current version of the state document. */
export const STATE_VERSION = 1;

const isoTime = z.iso.datetime({ offset: true });

/** A run that started and has not completed: what a restarted run resumes from. */
export const runProgressSchema = z.object({
  /** The window's upper bound U (Mailchimp time, exclusive). */
  upper: isoTime,
  /**
   * Every member of the window with `last_changed` before this time has been acknowledged by
   * Ometria. Starts at the window's lower edge (the watermark, or null for a full sync).
   */
  cursor: isoTime.nullable(),
  /** When the run started (our clock). */
  started_at: isoTime,
  /** Members read and pushed so far by this run (carried across restarts for the summary). */
  read: z.number().int().nonnegative().default(0),
  pushed: z.number().int().nonnegative().default(0),
  rejected: z.number().int().nonnegative().default(0),
});

/** The numbers of a finished run. */
export const runSummarySchema = z.object({
  started_at: isoTime,
  finished_at: isoTime,
  outcome: z.enum(["ok", "failed"]),
  read: z.number().int().nonnegative(),
  pushed: z.number().int().nonnegative(),
  rejected: z.number().int().nonnegative(),
  duration_ms: z.number().nonnegative(),
  mailchimp_requests: z.number().int().nonnegative().default(0),
  ometria_requests: z.number().int().nonnegative().default(0),
});

/** Alerting memory of one connection (so a restart does not re-alert). */
export const alertStateSchema = z.object({
  /** When the current "behind" incident was first alerted; null when not behind. */
  behind_since: isoTime.nullable().default(null),
  /** When the last alert (or reminder) for the current incident was sent. */
  last_alert_at: isoTime.nullable().default(null),
});

/** Everything remembered about one connection. */
export const connectionStateSchema = z.object({
  id: z.string().min(1),
  list_id: z.string().min(1),
  /**
   * Lower edge of the next window: every member with `last_changed` before it is in Ometria.
   * Null before the first completed run (next run is a full sync).
   */
  watermark: isoTime.nullable().default(null),
  /** Mailchimp time up to which Ometria is known complete (U of the last completed run). */
  fresh_as_of: isoTime.nullable().default(null),
  /** The run in progress, if one started and did not complete. */
  run: runProgressSchema.nullable().default(null),
  /** Outcome of the last run: never run, ok, failed. */
  status: z.enum(["never", "ok", "failed"]).default("never"),
  /** Consecutive failed runs (drives retry backoff). */
  failures: z.number().int().nonnegative().default(0),
  /** Earliest time (our clock) a failed connection is retried. */
  retry_at: isoTime.nullable().default(null),
  last_run: runSummarySchema.nullable().default(null),
  last_error: z.string().nullable().default(null),
  /**
   * Whether Mailchimp's default member listing includes archived members for this list:
   * true once seen; until then each run also reads the window with `status=archived`.
   */
  archived_in_listing: z.boolean().nullable().default(null),
  /**
   * The connection's threshold when it last ran, so `status --check` judges it by its own
   * threshold even without the connections file that set it.
   */
  threshold_seconds: z.number().positive().nullable().default(null),
  /**
   * When a run of this connection was first attempted (our clock): the lag of a connection
   * that never completed a run counts from here, across restarts.
   */
  first_seen_at: isoTime.nullable().default(null),
  /** Where the state came from when it was migrated from the original tool. */
  imported_from: z.string().nullable().default(null),
  alert: alertStateSchema.default({ behind_since: null, last_alert_at: null }),
});

/** Everything remembered about one connection. */
export type ConnectionState = z.infer<typeof connectionStateSchema>;
/** A run in progress. */
export type RunProgress = z.infer<typeof runProgressSchema>;
/** The numbers of a finished run. */
export type RunSummary = z.infer<typeof runSummarySchema>;

/** The whole state document as stored. */
export const stateDocumentSchema = z.object({
  version: z.literal(STATE_VERSION),
  connections: z.record(z.string(), connectionStateSchema),
});

/** The whole state document. */
export type StateDocument = z.infer<typeof stateDocumentSchema>;

/** A connection that has never run. */
export function newConnectionState(id: string, listId: string): ConnectionState {
  return connectionStateSchema.parse({ id, list_id: listId });
}

/**
 * Describes validation problems in plain words, separated by semicolons, each with where it is
 * (`connections.abc.watermark: Invalid ISO datetime`), so that a message about a damaged state
 * document tells the user exactly what is wrong. At most `max` problems are listed.
 */
export function describeIssues(issues: readonly z.core.$ZodIssue[], max = 10): string {
  const lines = issues.slice(0, max).map((issue) => {
    const where = issue.path.length === 0
      ? "the whole document"
      : issue.path.map((key, i) =>
        typeof key === "number" ? `[${key}]` : `${i === 0 ? "" : "."}${String(key)}`
      ).join("");
    return `${where}: ${issue.message}`;
  });
  if (issues.length > max) lines.push(`…and ${issues.length - max} more`);
  return lines.join("; ");
}
