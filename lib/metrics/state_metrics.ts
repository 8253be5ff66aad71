/**
 * Prometheus metrics computed from the stored connection state alone (text exposition format
 * 0.0.4). On Deno Deploy every tick may run in a fresh isolate, so in-process counters reset
 * and mean nothing; what lives in Deno KV is the truth every isolate shares. Hence only gauges:
 * each sample is a fact of the state at scrape time, the same from whichever isolate answers.
 *
 * Families (label `connection`):
 * - `sync_connection_lag_seconds` (absent while unknown), `sync_connection_threshold_seconds`,
 *   `sync_connection_behind` (1/0), `sync_connection_fresh_as_of_timestamp_seconds`
 * - `sync_connection_status{status}`: 1 for the current one of never/ok/failed/running
 * - `sync_connection_consecutive_failures`, `sync_connection_quarantined_members`
 * - `sync_last_run_success` (1/0), `sync_last_run_finished_timestamp_seconds`,
 *   `sync_last_run_duration_seconds`, `sync_last_run_members{kind}` (read/pushed/rejected)
 * - `sync_connection_open_erasures`, `sync_connection_overdue_erasures`: erasures filed with
 *   Ometria and not complete, and those of them past 30 days
 * - `sync_connection_optouts_applied`: unsubscribes made in Ometria applied to Mailchimp so
 *   far (optout_back; absent before the first poll)
 * - `sync_last_verify_timestamp_seconds`, `sync_last_verify_differences{kind}`
 *   (missing/stale/extra), `sync_last_verify_checked_members`: the last verify (absent before
 *   the first)
 * - `sync_connections_behind`: how many connections are behind (no label)
 *
 * Nothing secret is in the state, and error texts are left out on purpose: a label value
 * per distinct error would grow the series without bound.
 *
 * @module
 */
import { buildStatusReport, type StatusRow } from "../freshness/status_report.ts";

const _STATUSES = ["never", "ok", "failed", "running"] as const;

/**
 * Renders the metrics of `rows` (configured connections with their stored state) at `nowMs`,
 * in the rows' order. Pure: the same rows and time give the same text.
 */
export function renderStateMetrics(rows: readonly StatusRow[], nowMs: number): string {
  const report = buildStatusReport(rows, nowMs);
  const entries = report.connections.map((entry, i) => ({
    entry,
    state: rows[i]!.state,
    label: `connection="${_escapeLabel(entry.id)}"`,
  }));
  let out = "";
  const family = (name: string, help: string) => {
    out += `# HELP ${name} ${help}\n# TYPE ${name} gauge\n`;
  };
  const seconds = (iso: string | null | undefined) =>
    iso === null || iso === undefined ? undefined : Date.parse(iso) / 1000;

  family("sync_connection_lag_seconds", "Seconds since fresh_as_of (or first seen).");
  for (const { entry, label } of entries) {
    if (entry.lag_seconds !== null) {
      out += `sync_connection_lag_seconds{${label}} ${entry.lag_seconds}\n`;
    }
  }
  family("sync_connection_threshold_seconds", "Lag above which the connection is behind.");
  for (const { entry, label } of entries) {
    out += `sync_connection_threshold_seconds{${label}} ${entry.threshold_seconds}\n`;
  }
  family("sync_connection_behind", "1 when the lag exceeds the threshold, else 0.");
  for (const { entry, label } of entries) {
    out += `sync_connection_behind{${label}} ${entry.behind ? 1 : 0}\n`;
  }
  family(
    "sync_connection_fresh_as_of_timestamp_seconds",
    "Mailchimp time up to which Ometria is complete.",
  );
  for (const { entry, label } of entries) {
    const value = seconds(entry.fresh_as_of);
    if (value !== undefined) {
      out += `sync_connection_fresh_as_of_timestamp_seconds{${label}} ${value}\n`;
    }
  }
  family("sync_connection_status", "1 for the connection's current status, else 0.");
  for (const { entry, label } of entries) {
    for (const status of _STATUSES) {
      out += `sync_connection_status{${label},status="${status}"} ${
        entry.status === status ? 1 : 0
      }\n`;
    }
  }
  family("sync_connection_consecutive_failures", "Failed runs since the last good one.");
  for (const { state, label } of entries) {
    out += `sync_connection_consecutive_failures{${label}} ${state?.failures ?? 0}\n`;
  }
  family("sync_connection_quarantined_members", "Members held back from Ometria.");
  for (const { state, label } of entries) {
    out += `sync_connection_quarantined_members{${label}} ${state?.quarantine.length ?? 0}\n`;
  }
  family("sync_last_run_success", "1 when the last finished run succeeded, else 0.");
  for (const { entry, label } of entries) {
    if (entry.last_run) {
      out += `sync_last_run_success{${label}} ${entry.last_run.outcome === "ok" ? 1 : 0}\n`;
    }
  }
  family("sync_last_run_finished_timestamp_seconds", "When the last run finished.");
  for (const { entry, label } of entries) {
    const value = seconds(entry.last_run?.finished_at);
    if (value !== undefined) {
      out += `sync_last_run_finished_timestamp_seconds{${label}} ${value}\n`;
    }
  }
  family("sync_last_run_duration_seconds", "Duration of the last finished run.");
  for (const { entry, label } of entries) {
    if (entry.last_run) {
      out += `sync_last_run_duration_seconds{${label}} ${entry.last_run.duration_ms / 1000}\n`;
    }
  }
  family("sync_last_run_members", "Members read, pushed and rejected by the last run.");
  for (const { entry, label } of entries) {
    const run = entry.last_run;
    if (!run) continue;
    out += `sync_last_run_members{${label},kind="read"} ${run.read}\n` +
      `sync_last_run_members{${label},kind="pushed"} ${run.pushed}\n` +
      `sync_last_run_members{${label},kind="rejected"} ${run.rejected}\n`;
  }
  family("sync_last_verify_timestamp_seconds", "When the last verify finished.");
  for (const { entry, label } of entries) {
    const value = seconds(entry.last_verify?.at);
    if (value !== undefined) out += `sync_last_verify_timestamp_seconds{${label}} ${value}\n`;
  }
  family("sync_last_verify_checked_members", "Members the last verify compared.");
  for (const { entry, label } of entries) {
    const v = entry.last_verify;
    if (v) out += `sync_last_verify_checked_members{${label}} ${v.checked}\n`;
  }
  family(
    "sync_last_verify_differences",
    "Differences the last verify found between Ometria and Mailchimp, by kind.",
  );
  for (const { entry, label } of entries) {
    const v = entry.last_verify;
    if (!v) continue;
    out += `sync_last_verify_differences{${label},kind="missing"} ${v.missing}\n` +
      `sync_last_verify_differences{${label},kind="stale"} ${v.stale}\n` +
      `sync_last_verify_differences{${label},kind="extra"} ${v.extra}\n`;
  }
  family("sync_webhook_last_received_timestamp_seconds", "When the last webhook was received.");
  for (const { entry, label } of entries) {
    const value = seconds(entry.last_webhook_at);
    if (value !== undefined) {
      out += `sync_webhook_last_received_timestamp_seconds{${label}} ${value}\n`;
    }
  }
  family("sync_webhook_delivery_lag_seconds", "Received minus fired_at of the last webhook.");
  for (const { entry, label } of entries) {
    if (entry.webhook_lag_seconds !== null) {
      out += `sync_webhook_delivery_lag_seconds{${label}} ${entry.webhook_lag_seconds}\n`;
    }
  }
  family("sync_connection_open_erasures", "Erasures filed with Ometria and not complete.");
  for (const { entry, label } of entries) {
    out += `sync_connection_open_erasures{${label}} ${entry.open_erasures}\n`;
  }
  family("sync_connection_overdue_erasures", "Open erasures filed more than 30 days ago.");
  for (const { entry, label } of entries) {
    out += `sync_connection_overdue_erasures{${label}} ${entry.overdue_erasures}\n`;
  }
  family(
    "sync_connection_optouts_applied",
    "Unsubscribes made in Ometria that set the Mailchimp member to unsubscribed.",
  );
  for (const { entry, label } of entries) {
    if (entry.optouts_applied !== null) {
      out += `sync_connection_optouts_applied{${label}} ${entry.optouts_applied}\n`;
    }
  }
  family("sync_connections_behind", "Connections whose lag exceeds their threshold.");
  out += `sync_connections_behind ${entries.filter((e) => e.entry.behind).length}\n`;
  return out;
}

function _escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}
