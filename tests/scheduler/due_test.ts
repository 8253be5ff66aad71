import assert from "node:assert/strict";
import { deadlineOf, decideDue, type DueRules } from "../../lib/scheduler/due.ts";
import { retryDelayMs } from "../../lib/state/transitions.ts";
import { type ConnectionState, newConnectionState } from "../../lib/state/schema.ts";

const MINUTE = 60_000;
const NOW = Date.UTC(2026, 10, 1, 12, 0, 0);
const RULES: DueRules = { thresholdSeconds: 120 * 60, minutesPerBulk: 1, tickSeconds: 60 };

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** A connection whose last run completed at `freshMs` (Mailchimp time). */
function synced(freshMs: number, extra: Partial<ConnectionState> = {}): ConnectionState {
  return {
    ...newConnectionState("c1", "l1"),
    watermark: iso(freshMs),
    fresh_as_of: iso(freshMs),
    status: "ok",
    ...extra,
  };
}

Deno.test("decideDue() runs a connection that never synced", () => {
  assert.deepEqual(decideDue(undefined, NOW, RULES), { kind: "due", reason: "never" });
  assert.deepEqual(decideDue(newConnectionState("c1", "l1"), NOW, RULES), {
    kind: "due",
    reason: "never",
  });
});

Deno.test("decideDue() waits out a failed connection's backoff, then retries", () => {
  const failed = synced(NOW - 10 * MINUTE, {
    status: "failed",
    failures: 2,
    retry_at: iso(NOW + MINUTE),
  });
  assert.deepEqual(decideDue(failed, NOW, RULES), { kind: "wait", reason: "backoff" });
  assert.deepEqual(decideDue(failed, NOW + MINUTE, RULES), { kind: "due", reason: "retry" });
  assert.deepEqual(decideDue(failed, NOW + 5 * MINUTE, RULES), { kind: "due", reason: "retry" });
  // A failure without a retry time (e.g. written by an older version) is retried at once.
  assert.deepEqual(decideDue({ ...failed, retry_at: null }, NOW, RULES), {
    kind: "due",
    reason: "retry",
  });
  // Even when it is far behind: retrying early would only hammer a failing API.
  const behind = { ...failed, fresh_as_of: iso(NOW - 10 * 60 * MINUTE) };
  assert.deepEqual(decideDue(behind, NOW, RULES), { kind: "wait", reason: "backoff" });
});

Deno.test("decideDue() applies the backoff to a first sync that failed", () => {
  const failed: ConnectionState = {
    ...newConnectionState("c1", "l1"),
    status: "failed",
    failures: 1,
    retry_at: iso(NOW + MINUTE),
  };
  assert.deepEqual(decideDue(failed, NOW, RULES), { kind: "wait", reason: "backoff" });
  assert.deepEqual(decideDue(failed, NOW + MINUTE, RULES), { kind: "due", reason: "retry" });
});

Deno.test("decideDue() resumes an interrupted run", () => {
  const run = {
    upper: iso(NOW - 5 * MINUTE),
    cursor: iso(NOW - 30 * MINUTE),
    started_at: iso(NOW - 6 * MINUTE),
    read: 10,
    pushed: 10,
    rejected: 0,
  };
  assert.deepEqual(decideDue(synced(NOW - MINUTE, { run }), NOW, RULES), {
    kind: "due",
    reason: "resume",
  });
  // The very first run, interrupted: it resumes rather than starting over.
  const first = { ...newConnectionState("c1", "l1"), run: { ...run, cursor: null } };
  assert.deepEqual(decideDue(first, NOW, RULES), { kind: "due", reason: "resume" });
});

Deno.test("decideDue() runs when lag plus one bulk plus one tick reaches the threshold", () => {
  // Threshold 120 min, one bulk 1 min, one tick 1 min: due from a lag of 118 minutes.
  const at = (lagMs: number) => decideDue(synced(NOW - lagMs), NOW, RULES);
  assert.deepEqual(at(118 * MINUTE), { kind: "due", reason: "lag" });
  assert.deepEqual(at(119 * MINUTE), { kind: "due", reason: "lag" });
  assert.deepEqual(at(500 * MINUTE), { kind: "due", reason: "lag" });
  assert.deepEqual(at(118 * MINUTE - 1000), { kind: "check", sinceMs: NOW - 118 * MINUTE + 1000 });
  const slow = { ...RULES, minutesPerBulk: 10, tickSeconds: 300 };
  assert.deepEqual(decideDue(synced(NOW - 105 * MINUTE), NOW, slow), {
    kind: "due",
    reason: "lag",
  });
  assert.equal(decideDue(synced(NOW - 104 * MINUTE), NOW, slow).kind, "check");
});

Deno.test("decideDue() asks for the change count since the watermark otherwise", () => {
  const state = synced(NOW - 5 * MINUTE, { watermark: iso(NOW - 65 * MINUTE) });
  assert.deepEqual(decideDue(state, NOW, RULES), { kind: "check", sinceMs: NOW - 65 * MINUTE });
  // An imported watermark without freshness: nothing is known, so it runs.
  assert.deepEqual(decideDue({ ...state, fresh_as_of: null }, NOW, RULES), {
    kind: "due",
    reason: "lag",
  });
});

Deno.test("decideDue() runs everything when forced", () => {
  const states = [
    undefined,
    synced(NOW - MINUTE),
    synced(NOW - MINUTE, { status: "failed", failures: 3, retry_at: iso(NOW + 4 * MINUTE) }),
  ];
  for (const state of states) {
    assert.deepEqual(decideDue(state, NOW, RULES, true), { kind: "due", reason: "force" });
  }
});

Deno.test("retryDelayMs() backs off 1, 2, 4, 8, 16, then 30 minutes", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 20].map((failures) => retryDelayMs(failures) / MINUTE),
    [1, 2, 4, 8, 16, 30, 30, 30],
  );
  assert.equal(retryDelayMs(0), MINUTE);
});

Deno.test("deadlineOf() puts never-synced first, then the least fresh for its threshold", () => {
  const states = {
    never: undefined,
    stale: synced(NOW - 100 * MINUTE),
    tight: synced(NOW - 10 * MINUTE),
    fresh: synced(NOW - 5 * MINUTE),
  };
  const thresholds = { never: 7200, stale: 7200, tight: 600, fresh: 7200 };
  assert.equal(deadlineOf(undefined, 7200), -Infinity);
  assert.equal(deadlineOf(states.fresh, 7200), NOW - 5 * MINUTE + 120 * MINUTE);
  const order = (Object.keys(states) as (keyof typeof states)[])
    .map((id) => ({ id, deadline: deadlineOf(states[id], thresholds[id]) }))
    .sort((a, b) => a.deadline - b.deadline)
    .map((e) => e.id);
  assert.deepEqual(order, ["never", "tight", "stale", "fresh"]);
});
