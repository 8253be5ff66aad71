/** The consent and erasure events of a connection's state, through `nextState`. */
import assert from "node:assert/strict";
import { connectionStateSchema, newConnectionState } from "../../lib/state/schema.ts";
import { nextState } from "../../lib/state/transitions.ts";

const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);
const MIN = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();

Deno.test("a state saved before optout_back and erasures loads with their defaults", () => {
  const old = connectionStateSchema.parse({ id: "a", list_id: "l", watermark: iso(T0) });
  assert.equal(old.optout_back, null);
  assert.deepEqual(old.erasures, { salt: null, open: [], completed: 0, checked_at: null });
});

Deno.test("nextState() keeps what optout_back did, moves its watermark only with throughMs, and forgets past the lookback", () => {
  let s = newConnectionState("a", "l");
  const base = { type: "optouts" as const, at: T0, startMs: T0 - 60 * MIN, lookbackMs: 10 * MIN };
  const done = (id: string, at: number, outcome: "applied" | "gone" | "refused" = "applied") => ({
    id,
    at: iso(at),
    type: "preferences_centre",
    outcome,
  });
  s = nextState(s, { ...base, done: [done("m1", T0 - 50 * MIN)], notOurs: 0 });
  assert.equal(s.optout_back?.watermark, iso(T0 - 60 * MIN), "the first poll's start");
  assert.equal(s.optout_back?.last_polled_at, null, "not to the end yet");
  s = nextState(s, {
    ...base,
    done: [done("m2", T0 - 5 * MIN, "gone")],
    notOurs: 2,
    throughMs: T0,
  });
  assert.equal(s.optout_back?.watermark, iso(T0));
  assert.deepEqual(s.optout_back?.recent.map((d) => d.id), ["m2"], "m1 is before the lookback");
  assert.deepEqual(
    [s.optout_back?.applied, s.optout_back?.gone, s.optout_back?.not_ours],
    [1, 1, 2],
  );
  assert.equal(s.optout_back?.last_applied_at, iso(T0));
  s = nextState(s, { type: "optout-failed", at: T0 + MIN, startMs: 0, error: "Ometria 503" });
  assert.equal(s.optout_back?.watermark, iso(T0), "a failure keeps the watermark");
  assert.equal(s.optout_back?.last_error, "Ometria 503");
  s = nextState(s, { ...base, done: [], notOurs: 0, throughMs: T0 - MIN });
  assert.equal(s.optout_back?.watermark, iso(T0), "it never moves back");
  assert.equal(s.optout_back?.last_error, null);
});

Deno.test("nextState() keeps an erasure until it is checked complete, counts it, and keeps the first salt", () => {
  let s = newConnectionState("a", "l");
  const record = (identity: string) => ({
    identity,
    filed_at: iso(T0),
    request_id: `r-${identity}`,
    api_request_id: null,
    status: "filed" as const,
    error: null,
    mailchimp: "deleted" as const,
    source: "command" as const,
    alerted_at: null,
  });
  s = nextState(s, { type: "erasure-filed", record: record("sha256:a"), salt: "s1" });
  s = nextState(s, { type: "erasure-filed", record: record("sha256:b"), salt: "s2" });
  s = nextState(s, { type: "erasure-filed", record: record("sha256:a"), salt: "s3" });
  assert.equal(s.erasures.salt, "s1");
  assert.deepEqual(s.erasures.open.map((r) => r.identity), ["sha256:b", "sha256:a"]);
  s = nextState(s, { type: "erasures-alerted", at: T0 + MIN, identities: ["sha256:b"] });
  assert.equal(s.erasures.open[0]?.alerted_at, iso(T0 + MIN));
  s = nextState(s, { type: "erasures-checked", at: T0 + 2 * MIN, completed: ["sha256:a"] });
  assert.deepEqual(s.erasures.open.map((r) => r.identity), ["sha256:b"]);
  assert.equal(s.erasures.completed, 1);
  assert.equal(s.erasures.checked_at, iso(T0 + 2 * MIN));
  assert.deepEqual(connectionStateSchema.parse(JSON.parse(JSON.stringify(s))), s);
});
