import assert from "node:assert/strict";
import { type ConnectionState, newConnectionState } from "../../lib/state/schema.ts";
import { nextState, retryDelayMs } from "../../lib/state/transitions.ts";
import { IdSet } from "../../lib/state/id_set.ts";

const T0 = Date.parse("2026-03-01T10:00:00Z");
const summary = {
  started_at: "2026-03-01T10:00:00.000Z",
  finished_at: "2026-03-01T10:00:01.000Z",
  outcome: "failed" as const,
  read: 1,
  pushed: 0,
  rejected: 0,
  duration_ms: 1000,
  mailchimp_requests: 1,
  ometria_requests: 1,
};

Deno.test("nextState() backs a failed connection off and a completed run clears it", () => {
  let s = newConnectionState("c", "l");
  s = nextState(s, { type: "run-failed", at: T0, run: null, summary, error: "boom" });
  s = nextState(s, { type: "run-failed", at: T0, run: null, summary, error: "boom" });
  assert.equal(s.failures, 2);
  assert.equal(s.retry_at, new Date(T0 + retryDelayMs(2)).toISOString());
  s = nextState(s, {
    type: "run-completed",
    upperMs: T0,
    error: null,
    summary: { ...summary, outcome: "ok" },
  });
  assert.deepEqual([s.failures, s.retry_at, s.status, s.watermark], [
    0,
    null,
    "ok",
    "2026-03-01T10:00:00.000Z",
  ]);
});

Deno.test("nextState(): reset --repush is remembered until a run completes its window", () => {
  let s = newConnectionState("c", "l");
  s = nextState(s, { type: "run-completed", upperMs: T0, error: null, summary });
  assert.ok(!("repush_pending" in s), "absent, not false: older documents stay as they were");
  s = nextState(s, { type: "reset", repush: true });
  assert.deepEqual([s.watermark, s.repush_pending], [null, true]);
  // A plain reset does not cancel it; a run that fails or stops keeps it for the next one.
  s = nextState(s, { type: "reset" });
  s = nextState(s, { type: "run-failed", at: T0, run: null, summary, error: "boom" });
  s = nextState(s, { type: "run-aborted", run: null });
  assert.equal(s.repush_pending, true);
  s = nextState(s, { type: "run-completed", upperMs: T0, error: null, summary });
  assert.ok(!("repush_pending" in s));
});

Deno.test("nextState() rewinds the watermark and the cursor, never forwards", () => {
  let s: ConnectionState = {
    ...newConnectionState("c", "l"),
    watermark: "2026-03-01T10:00:00.000Z",
    run: {
      upper: "2026-03-01T11:00:00.000Z",
      cursor: "2026-03-01T10:30:00.000Z",
      started_at: "2026-03-01T11:00:00.000Z",
      read: 0,
      pushed: 0,
      rejected: 0,
    },
  };
  s = nextState(s, { type: "rewind", lowerMs: T0 + 60_000 });
  assert.equal(s.watermark, "2026-03-01T10:00:00.000Z");
  assert.equal(s.run?.cursor, "2026-03-01T10:01:00.000Z");
});

Deno.test("nextState() keeps one quarantine entry per member and releases by id", () => {
  let s = newConnectionState("c", "l");
  s = nextState(s, {
    type: "quarantine",
    at: T0,
    add: [{ id: "a", reason: "bad status" }, { id: null, reason: "no id" }],
    release: [],
  });
  s = nextState(s, {
    type: "quarantine",
    at: T0 + 1000,
    add: [{ id: "a", reason: "bad status" }],
    release: [],
  });
  assert.equal(s.quarantine.length, 2);
  const a = s.quarantine.find((e) => e.id === "a")!;
  assert.deepEqual([a.attempts, a.first_seen_at], [2, new Date(T0).toISOString()]);
  s = nextState(s, { type: "quarantine", at: T0, add: [], release: ["a"] });
  assert.deepEqual(s.quarantine.map((e) => e.id), [null]);
  s = nextState(s, {
    type: "quarantine",
    at: T0,
    add: [],
    release: [],
    forgetUnidentifiedBefore: T0 + 5000,
  });
  assert.equal(s.quarantine.length, 0);
});

const ID = (n: number) => n.toString(16).padStart(32, "0");

Deno.test("IdSet sorts, de-duplicates and subtracts packed ids", () => {
  const a = IdSet.of([ID(3), ID(1), ID(2), ID(3)]);
  const b = IdSet.of([ID(2), ID(4)]);
  assert.equal(a.size, 3);
  assert.deepEqual([...a], [ID(1), ID(2), ID(3)]);
  assert.deepEqual(a.minus(b), [ID(1), ID(3)]);
  assert.ok(a.has(ID(2)) && !a.has(ID(4)) && !a.has("not-an-id"));
  assert.deepEqual([...a.consumeWithout(IdSet.of([ID(2), ID(9)]))], [ID(1), ID(3)]);
  assert.throws(() => IdSet.of(["x"]), /32 lowercase hex/);
});
