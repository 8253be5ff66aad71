import assert from "node:assert/strict";
import {
  buildStatusReport,
  formatLag,
  formatStatusTable,
  statusReportSchema,
} from "../../lib/freshness/status_report.ts";
import type { ConnectionState } from "../../lib/state/schema.ts";
import { stateFreshAt } from "./_helpers.ts";

const NOW = Date.UTC(2026, 0, 1, 12);
const iso = (ms: number) => new Date(ms).toISOString();

function lastRun(finishedMs: number, outcome: "ok" | "failed"): ConnectionState["last_run"] {
  return {
    started_at: iso(finishedMs - 4_000),
    finished_at: iso(finishedMs),
    outcome,
    read: 120,
    pushed: 118,
    rejected: 2,
    duration_ms: 4_000,
    mailchimp_requests: 3,
    ometria_requests: 2,
  };
}

function rows() {
  return [
    {
      id: "fresh",
      list_id: "L1",
      threshold_seconds: 3600,
      state: stateFreshAt("fresh", NOW - 180_000, { last_run: lastRun(NOW - 170_000, "ok") }),
    },
    {
      id: "late",
      list_id: "L2",
      threshold_seconds: 3600,
      state: stateFreshAt("late", NOW - 7_500_000, {
        status: "failed",
        last_error:
          "Ometria answered 503 Service Unavailable\nafter 5 attempts; giving up until the next tick " +
          "x".repeat(80),
        retry_at: iso(NOW + 300_000),
        last_run: lastRun(NOW - 60_000, "failed"),
        alert: { behind_since: iso(NOW - 3_000_000), last_alert_at: iso(NOW - 3_000_000) },
      }),
    },
    { id: "absent", list_id: "L3", threshold_seconds: 600 },
    {
      id: "busy",
      list_id: "L4",
      threshold_seconds: 600,
      state: stateFreshAt("busy", null, {
        run: {
          upper: iso(NOW - 120_000),
          cursor: null,
          started_at: iso(NOW - 120_000),
          read: 10,
          pushed: 10,
          rejected: 0,
        },
      }),
    },
  ];
}

Deno.test("buildStatusReport() reports status, lag, behind flags and the last run per connection", () => {
  const report = buildStatusReport(rows(), NOW);
  assert.deepEqual(report.connections.map((e) => e.id), ["fresh", "late", "absent", "busy"]);
  const [fresh, late, absent, busy] = report.connections;

  assert.deepEqual(fresh, {
    id: "fresh",
    list_id: "L1",
    status: "ok",
    fresh_as_of: iso(NOW - 180_000),
    lag_seconds: 180,
    threshold_seconds: 3600,
    behind: false,
    behind_since: null,
    last_error: null,
    last_run: {
      started_at: iso(NOW - 174_000),
      finished_at: iso(NOW - 170_000),
      outcome: "ok",
      read: 120,
      pushed: 118,
      rejected: 2,
      duration_ms: 4_000,
    },
    retry_at: null,
    quarantined: 0,
    quarantine: [],
    last_reconciled_at: null,
    orphans: null,
    missed: null,
    last_verify: null,
    last_webhook_at: null,
    webhook_lag_seconds: null,
    optouts_applied: null,
    optouts_polled_at: null,
    optouts_error: null,
    open_erasures: 0,
    overdue_erasures: 0,
  });

  assert.equal(late!.status, "failed");
  assert.equal(late!.lag_seconds, 7500);
  assert.equal(late!.behind, true);
  assert.equal(late!.behind_since, iso(NOW - 3_000_000));
  assert.equal(late!.retry_at, iso(NOW + 300_000));
  assert.match(late!.last_error!, /^Ometria answered 503/);

  assert.equal(absent!.status, "never");
  assert.equal(absent!.lag_seconds, null);
  assert.equal(absent!.behind, false);
  assert.equal(absent!.last_run, null);

  assert.equal(busy!.status, "running");
  assert.equal(busy!.fresh_as_of, null);
  assert.equal(busy!.lag_seconds, 120);
  assert.equal(busy!.behind, false);

  // The report is what the documented schema describes (and survives a JSON round trip).
  assert.deepEqual(statusReportSchema.parse(JSON.parse(JSON.stringify(report))), report);
});

Deno.test("buildStatusReport() shows a failed run that kept its progress as failed, not running", () => {
  const state = stateFreshAt("x", NOW - 60_000, {
    status: "failed",
    last_run: lastRun(NOW - 10_000, "failed"),
    run: {
      upper: iso(NOW - 30_000),
      cursor: iso(NOW - 40_000),
      started_at: iso(NOW - 30_000),
      read: 5,
      pushed: 5,
      rejected: 0,
    },
  });
  const report = buildStatusReport([{ id: "x", list_id: "L", threshold_seconds: 60, state }], NOW);
  assert.equal(report.connections[0]!.status, "failed");
});

Deno.test("formatLag() writes coarse human durations", async (t) => {
  const cases: [number | null, string][] = [
    [null, "-"],
    [0, "0s"],
    [59, "59s"],
    [180, "3m"],
    [3599, "59m"],
    [3600, "1h"],
    [7500, "2h 5m"],
    [86_400, "1d"],
    [97_200 + 3600, "1d 4h"],
  ];
  for (const [seconds, text] of cases) {
    await t.step(`${seconds} → ${text}`, () => assert.equal(formatLag(seconds), text));
  }
});

Deno.test("formatStatusTable() aligns columns, marks behind connections and truncates errors", () => {
  const table = formatStatusTable(buildStatusReport(rows(), NOW), { errorWidth: 40 });
  const lines = table.trimEnd().split("\n");
  assert.equal(lines.length, 5);
  const header = lines[0]!;
  for (
    const column of ["CONNECTION", "LIST", "STATUS", "FRESH AS OF", "LAG", "BEHIND", "LAST RUN"]
  ) {
    const at = header.indexOf(column);
    assert.ok(at >= 0, column);
  }
  // Every row starts each column where the header does.
  const lagAt = header.indexOf("LAG");
  const behindAt = header.indexOf("BEHIND");
  const [, fresh, late, absent, busy] = lines;
  assert.equal(fresh!.slice(lagAt).split(/\s{2,}/)[0], "3m");
  assert.equal(late!.slice(lagAt).split(/\s{2,}/)[0], "2h 5m");
  assert.equal(late!.slice(behindAt, behindAt + 6), "BEHIND");
  assert.equal(fresh!.slice(behindAt, behindAt + 1), "-");
  assert.match(fresh!, /ok 2026-01-01T11:57:10Z read 120 pushed 118 rejected 2 in 4\.0s/);
  assert.match(absent!, /^absent\s+L3\s+never\s+-\s+-\s+10m\s+-\s+-\s+-\s+-\s+-$/);
  assert.match(busy!, /^busy\s+L4\s+running\s/);
  // The error is on one line, cut to 40 characters with an ellipsis.
  const error = late!.slice(header.indexOf("LAST ERROR"));
  assert.equal(error.length, 40);
  assert.ok(error.endsWith("…"));
  assert.doesNotMatch(error, /\n/);

  assert.equal(formatStatusTable({ connections: [] }), "No connections configured.\n");
});

Deno.test("buildStatusReport() and the table show the last webhook and its delivery lag", () => {
  const state = stateFreshAt("w", NOW - 60_000, {
    last_webhook: {
      received_at: iso(NOW - 5_000),
      fired_at: iso(NOW - 7_000),
      type: "profile",
      count: 3,
    },
  });
  const report = buildStatusReport([{ id: "w", list_id: "L", threshold_seconds: 60, state }], NOW);
  const entry = report.connections[0]!;
  assert.equal(entry.last_webhook_at, iso(NOW - 5_000));
  assert.equal(entry.webhook_lag_seconds, 2);
  // fresh_as_of stays polling's.
  assert.equal(entry.fresh_as_of, iso(NOW - 60_000));
  assert.match(formatStatusTable(report), /LAST WEBHOOK/);
  assert.match(formatStatusTable(report), /\(lag 2s\)/);
});

Deno.test("status shows the last verify: text, JSON and metrics", async () => {
  const { renderStateMetrics } = await import("../../lib/metrics/state_metrics.ts");
  const { newConnectionState } = await import("../../lib/state/schema.ts");
  const { nextState } = await import("../../lib/state/transitions.ts");
  const at = "2026-01-01T11:00:00.000Z";
  const state = nextState(newConnectionState("v1", "L9"), {
    type: "verified",
    summary: {
      at,
      mode: "sample",
      checked: 1000,
      missing: 1,
      stale: 2,
      extra: 0,
      fields: ["firstname"],
      repaired: 0,
    },
  });
  assert.equal(state.last_verify?.diverged_since, at);
  const rows = [{ id: "v1", list_id: "L9", threshold_seconds: 3600, state }];
  const nowMs = Date.parse("2026-01-01T12:00:00Z");
  const report = buildStatusReport(rows, nowMs);
  assert.deepEqual(report.connections[0]?.last_verify, state.last_verify);
  assert.match(
    formatStatusTable(report),
    /v1: verified 2026-01-01T11:00:00Z \(sample of 1000\): 1 missing, 2 stale \(firstname\), 0 extra; differs since/,
  );
  const metrics = renderStateMetrics(rows, nowMs);
  assert.match(metrics, /sync_last_verify_timestamp_seconds\{connection="v1"\} 1767265200/);
  assert.match(metrics, /sync_last_verify_differences\{connection="v1",kind="stale"\} 2/);
  assert.match(metrics, /sync_last_verify_checked_members\{connection="v1"\} 1000/);
  // A verify that then finds nothing ends the incident.
  const equal = nextState(state, {
    type: "verified",
    summary: {
      at,
      mode: "full",
      checked: 5,
      missing: 0,
      stale: 0,
      extra: 0,
      fields: [],
      repaired: 0,
    },
  });
  assert.equal(equal.last_verify?.diverged_since, null);
});
