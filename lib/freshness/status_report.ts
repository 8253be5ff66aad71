/**
 * The status report: one entry per configured connection, built from the state document, as
 * JSON for machines (`status --json`) and as an aligned table for people.
 *
 * @module
 */
import { z } from "zod";
import type { ConnectionState } from "../state/schema.ts";
import { freshnessOf } from "./freshness.ts";
import { isOverdue } from "../engine/erasure.ts";

const isoTime = z.iso.datetime({ offset: true });

/** Status of a connection in the report. */
export const connectionStatusSchema = z.enum(["never", "ok", "failed", "running"]).describe(
  "never: no run has finished; ok / failed: outcome of the last run; running: a run started " +
    "after the last one finished and has not completed (in progress, or interrupted and to be " +
    "resumed by the next run).",
);

/** The last finished run of a connection, as shown in the report. */
export const statusLastRunSchema = z.object({
  started_at: isoTime.describe("When the run started (our clock)."),
  finished_at: isoTime.describe("When the run finished (our clock)."),
  outcome: z.enum(["ok", "failed"]).describe("How the run ended."),
  read: z.number().int().nonnegative().describe("Members read from Mailchimp."),
  pushed: z.number().int().nonnegative().describe("Members accepted by Ometria."),
  rejected: z.number().int().nonnegative().describe("Members Ometria rejected."),
  duration_ms: z.number().nonnegative().describe("Duration of the run in milliseconds."),
});

/**
 * One connection in the status report (`status --json` prints `{ "connections": [...] }` of
 * these). Lag follows the freshness rule: now − (fresh_as_of ?? first seen), where first seen
 * is the earliest recorded run start; behind = lag_seconds > threshold_seconds.
 */
export const statusEntrySchema = z.object({
  id: z.string().min(1).describe("The connection's id."),
  list_id: z.string().min(1).describe("The Mailchimp list it syncs."),
  status: connectionStatusSchema,
  fresh_as_of: isoTime.nullable().describe(
    "Mailchimp time up to which Ometria is complete; null before the first completed run.",
  ),
  lag_seconds: z.number().int().nonnegative().nullable().describe(
    "Seconds since fresh_as_of (or since the first run started); null when never run.",
  ),
  threshold_seconds: z.number().nonnegative().describe("Lag above which the connection is behind."),
  behind: z.boolean().describe("True when lag_seconds > threshold_seconds."),
  behind_since: isoTime.nullable().describe(
    "When the current behind incident was first alerted; null when none.",
  ),
  last_error: z.string().nullable().describe("Error of the last failed run, if any."),
  last_run: statusLastRunSchema.nullable().describe("The last finished run; null when none."),
  retry_at: isoTime.nullable().describe("Earliest retry of a failed connection (our clock)."),
  quarantined: z.number().int().nonnegative().describe(
    "Members held back from Ometria (malformed in Mailchimp, or not taken by Ometria); " +
      "tried again on every run. Above 0, runs end as failed.",
  ),
  quarantine: z.array(z.object({
    id: z.string().nullable(),
    reason: z.string(),
    first_seen_at: isoTime,
    attempts: z.number().int(),
  })).describe("The first 20 quarantined members, with why."),
  last_reconciled_at: isoTime.nullable().describe(
    "When the last reconciliation finished; null before the first.",
  ),
  orphans: z.number().int().nonnegative().nullable().describe(
    "Ids the last reconciliation found gone from Mailchimp (and opted out); null before it.",
  ),
  missed: z.number().int().nonnegative().nullable().describe(
    "Members the last reconciliation found never pushed (polling should never miss one).",
  ),
  last_verify: z.object({
    at: isoTime.describe("When it finished (our clock)."),
    mode: z.enum(["full", "sample"]).describe(
      "full: every member and every contact; sample: members at random, looked up by id.",
    ),
    checked: z.number().int().nonnegative().describe("Mailchimp members compared."),
    missing: z.number().int().nonnegative().describe("Members Ometria held no contact for."),
    stale: z.number().int().nonnegative().describe("Members whose contact held other values."),
    extra: z.number().int().nonnegative().describe("Contacts no member has (full only)."),
    fields: z.array(z.string()).describe("The fields found different, most frequent first."),
    repaired: z.number().int().nonnegative().describe("Differences pushed by --repair."),
    diverged_since: isoTime.nullable().describe(
      "Since when verifies keep finding differences; null when the last found none.",
    ),
  }).nullable().describe(
    "What the last verify (read back from Ometria's Contact API) found; null before the first.",
  ),
  last_webhook_at: isoTime.nullable().describe(
    "When the last Mailchimp webhook event was received (our clock); null when none came.",
  ),
  webhook_lag_seconds: z.number().nonnegative().nullable().describe(
    "Delivery lag of that event: received − Mailchimp's fired_at; null when unknown.",
  ),
  optouts_applied: z.number().int().nonnegative().nullable().describe(
    "Unsubscribes made in Ometria that set the Mailchimp member to unsubscribed " +
      "(optout_back); null before the first poll.",
  ),
  optouts_polled_at: isoTime.nullable().describe(
    "When Ometria's unsubscribes were last polled to the end; null before.",
  ),
  optouts_error: z.string().nullable().describe(
    "Why the last poll failed; null after one that completed.",
  ),
  open_erasures: z.number().int().nonnegative().describe(
    "Data-protection erasures filed with Ometria (or that failed to be) and not reported complete.",
  ),
  overdue_erasures: z.number().int().nonnegative().describe(
    "Open erasures filed more than 30 days ago (Ometria promises 14): erasure.overdue.",
  ),
}).describe("One connection in the status report.");

/** The whole status report. */
export const statusReportSchema = z.object({
  connections: z.array(statusEntrySchema),
}).describe("Status of every configured connection, in configuration order.");

/** One connection in the status report. */
export type StatusEntry = z.infer<typeof statusEntrySchema>;
/** The whole status report. */
export type StatusReport = z.infer<typeof statusReportSchema>;

/** A configured connection and its stored state (absent when it never ran). */
export interface StatusRow {
  id: string;
  list_id: string;
  threshold_seconds: number;
  state?: ConnectionState | undefined;
}

/**
 * The report rows of the configured connections (in configuration order), or of every stored
 * connection when none is configured. A connection's threshold is the one its runs stored,
 * else the configured one, so the answer depends on the state alone once a run has happened.
 */
export function statusRows(
  states: readonly ConnectionState[],
  config: {
    connections: readonly { id: string; listId: string; thresholdSeconds: number }[];
    thresholdMinutes: number;
  },
): StatusRow[] {
  const byId = new Map(states.map((s) => [s.id, s]));
  if (config.connections.length === 0) {
    return states.map((s) => ({
      id: s.id,
      list_id: s.list_id,
      threshold_seconds: s.threshold_seconds ?? config.thresholdMinutes * 60,
      state: s,
    }));
  }
  return config.connections.map((c) => {
    const state = byId.get(c.id);
    return {
      id: c.id,
      list_id: c.listId,
      threshold_seconds: state?.threshold_seconds ?? c.thresholdSeconds,
      state,
    };
  });
}

/**
 * Builds the status report of `rows` at `nowMs`, in the order given. Pure: it reads only the
 * rows, so `status` can run beside a live daemon on a copy of the state.
 */
export function buildStatusReport(rows: readonly StatusRow[], nowMs: number): StatusReport {
  return {
    connections: rows.map((row): StatusEntry => {
      const state = row.state;
      const freshness = freshnessOf(state, { nowMs, thresholdSeconds: row.threshold_seconds });
      const last = state?.last_run ?? null;
      return {
        id: row.id,
        list_id: row.list_id,
        status: _status(state),
        fresh_as_of: freshness.fresh_as_of,
        lag_seconds: freshness.lag_seconds,
        threshold_seconds: row.threshold_seconds,
        behind: freshness.behind,
        behind_since: state?.alert.behind_since ?? null,
        last_error: state?.last_error ?? null,
        last_run: last === null ? null : {
          started_at: last.started_at,
          finished_at: last.finished_at,
          outcome: last.outcome,
          read: last.read,
          pushed: last.pushed,
          rejected: last.rejected,
          duration_ms: last.duration_ms,
        },
        retry_at: state?.retry_at ?? null,
        quarantined: state?.quarantine.length ?? 0,
        quarantine: (state?.quarantine ?? []).slice(0, 20).map((e) => ({
          id: e.id,
          reason: e.reason,
          first_seen_at: e.first_seen_at,
          attempts: e.attempts,
        })),
        last_reconciled_at: state?.last_reconcile?.at ?? null,
        orphans: state?.last_reconcile?.orphans ?? null,
        missed: state?.last_reconcile?.missing ?? null,
        last_verify: state?.last_verify ? { ...state.last_verify } : null,
        last_webhook_at: state?.last_webhook?.received_at ?? null,
        webhook_lag_seconds: webhookLagSeconds(state),
        optouts_applied: state?.optout_back?.applied ?? null,
        optouts_polled_at: state?.optout_back?.last_polled_at ?? null,
        optouts_error: state?.optout_back?.last_error ?? null,
        open_erasures: state?.erasures.open.length ?? 0,
        overdue_erasures: state?.erasures.open.filter((r) => isOverdue(r, nowMs)).length ?? 0,
      };
    }),
  };
}

/**
 * The delivery lag of a connection's last webhook event in seconds (received − `fired_at`,
 * at least 0, since the two clocks differ), or null when none came or it had no `fired_at`.
 */
export function webhookLagSeconds(state: ConnectionState | undefined): number | null {
  const w = state?.last_webhook;
  if (!w || w.fired_at === null) return null;
  return Math.max(0, Math.round((Date.parse(w.received_at) - Date.parse(w.fired_at)) / 1000));
}

function _status(state: ConnectionState | undefined): StatusEntry["status"] {
  if (state === undefined) return "never";
  if (state.run !== null) {
    const started = Date.parse(state.run.started_at);
    const finished = state.last_run ? Date.parse(state.last_run.finished_at) : Number.NaN;
    // A failed run may keep its progress for the retry: that connection is failed, not running.
    if (Number.isNaN(finished) || started >= finished) return "running";
  }
  return state.status;
}

/**
 * Formats a duration in seconds for people: `45s`, `1m 30s`, `12m`, `2h 5m`, `3d 4h`; `-`
 * when null. Two units at most, a lag is read at a glance; seconds are kept below ten
 * minutes, where a short threshold would otherwise read as its own lag ("1m of 1m").
 */
export function formatLag(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "-";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 600 && s % 60 !== 0) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) {
    const m = Math.floor((s % 3600) / 60);
    return m === 0 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 3600)}h ${m}m`;
  }
  const h = Math.floor((s % 86_400) / 3600);
  return h === 0 ? `${Math.floor(s / 86_400)}d` : `${Math.floor(s / 86_400)}d ${h}h`;
}

/** Options of {@linkcode formatStatusTable}. */
export interface FormatStatusTableOptions {
  /** Longest last error shown; longer ones end with "…". @default {60} */
  errorWidth?: number;
}

/**
 * Formats a status report as an aligned plain-text table for a terminal: connection, list,
 * status, fresh as of, lag and threshold (human units), a `BEHIND` marker, the last run's
 * numbers and the last error on one line, truncated. Control characters in ids and errors
 * are replaced, so stored text cannot drive the terminal.
 */
export function formatStatusTable(
  report: StatusReport,
  options: FormatStatusTableOptions = {},
): string {
  if (report.connections.length === 0) return "No connections configured.\n";
  const errorWidth = Math.max(1, options.errorWidth ?? 60);
  const header = [
    "CONNECTION",
    "LIST",
    "STATUS",
    "FRESH AS OF",
    "LAG",
    "THRESHOLD",
    "BEHIND",
    "LAST RUN",
    "HELD",
    "LAST WEBHOOK",
    "LAST ERROR",
  ];
  const rows = report.connections.map((e) => [
    _clean(e.id),
    _clean(e.list_id),
    e.status,
    e.fresh_as_of === null ? "-" : _shortTime(e.fresh_as_of),
    formatLag(e.lag_seconds),
    formatLag(e.threshold_seconds),
    e.behind ? "BEHIND" : "-",
    e.last_run === null
      ? "-"
      : `${e.last_run.outcome} ${
        _shortTime(e.last_run.finished_at)
      } read ${e.last_run.read} pushed ${e.last_run.pushed} rejected ${e.last_run.rejected} in ${
        _seconds(e.last_run.duration_ms)
      }`,
    e.quarantined === 0 ? "-" : String(e.quarantined),
    e.last_webhook_at === null
      ? "-"
      : `${_shortTime(e.last_webhook_at)}${
        e.webhook_lag_seconds === null ? "" : ` (lag ${formatLag(e.webhook_lag_seconds)})`
      }`,
    e.last_error === null ? "-" : _truncate(_clean(e.last_error), errorWidth),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  // Below the table, per connection: the members held back and why, and what the last
  // reconciliation repaired, so nothing that diverges is only a number.
  const details: string[] = [];
  for (const e of report.connections) {
    if (e.quarantined > 0) {
      details.push(`\n${_clean(e.id)}: ${e.quarantined} member(s) quarantined:`);
      for (const q of e.quarantine) {
        details.push(
          `  ${q.id ?? "(no id)"}  since ${_shortTime(q.first_seen_at)}, ${q.attempts} ` +
            `attempt(s): ${_truncate(_clean(q.reason), 120)}`,
        );
      }
      if (e.quarantined > e.quarantine.length) {
        details.push(`  …and ${e.quarantined - e.quarantine.length} more (status --json)`);
      }
    }
    if (e.open_erasures > 0) {
      details.push(
        `\n${_clean(e.id)}: ${e.open_erasures} erasure(s) open${
          e.overdue_erasures > 0 ? `, ${e.overdue_erasures} OVERDUE (past 30 days)` : ""
        }: erase --status`,
      );
    }
    if (e.optouts_error !== null) {
      details.push(
        `\n${_clean(e.id)}: polling Ometria's unsubscribes failed: ${
          _truncate(_clean(e.optouts_error), 120)
        }`,
      );
    }
    const v = e.last_verify;
    if (v !== null) {
      const differences = v.missing + v.stale + v.extra;
      details.push(
        `\n${_clean(e.id)}: verified ${_shortTime(v.at)} (${
          v.mode === "full" ? "full" : "sample"
        } of ${v.checked}): ${
          differences === 0
            ? "Ometria matches Mailchimp"
            : `${v.missing} missing, ${v.stale} stale${
              v.fields.length > 0 ? ` (${v.fields.map(_clean).join(", ")})` : ""
            }, ${v.extra} extra${v.repaired > 0 ? `, ${v.repaired} repaired` : ""}${
              v.diverged_since !== null
                ? `; differs since ${_shortTime(v.diverged_since)}: verify --repair`
                : ""
            }`
        }`,
      );
    }
    if (e.last_reconciled_at !== null && (e.orphans! > 0 || e.missed! > 0)) {
      details.push(
        `\n${_clean(e.id)}: reconciled ${_shortTime(e.last_reconciled_at)}: ${e.orphans} ` +
          `orphan(s) opted out, ${e.missed} member(s) polling had missed pushed`,
      );
    }
  }
  return [line(header), ...rows.map(line), ...details].join("\n") + "\n";
}

function _shortTime(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? iso : new Date(ms).toISOString().slice(0, 19) + "Z";
}

function _seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : formatLag(ms / 1000);
}

function _clean(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ").trim();
}

function _truncate(text: string, width: number): string {
  return text.length <= width ? text : text.slice(0, width - 1) + "…";
}
