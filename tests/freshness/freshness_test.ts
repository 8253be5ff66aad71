import assert from "node:assert/strict";
import { freshnessOf } from "../../lib/freshness/freshness.ts";
import { stateFreshAt } from "./_helpers.ts";

const NOW = Date.UTC(2026, 0, 1, 12);
const iso = (ms: number) => new Date(ms).toISOString();

Deno.test("freshnessOf() measures lag from fresh_as_of and is behind only above the threshold", async (t) => {
  await t.step("lag under the threshold", () => {
    const f = freshnessOf(stateFreshAt("a", NOW - 120_000), { nowMs: NOW, thresholdSeconds: 300 });
    assert.deepEqual(f, {
      fresh_as_of: iso(NOW - 120_000),
      lag_seconds: 120,
      threshold_seconds: 300,
      behind: false,
    });
  });
  await t.step("lag equal to the threshold is not behind", () => {
    const f = freshnessOf(stateFreshAt("a", NOW - 300_000), { nowMs: NOW, thresholdSeconds: 300 });
    assert.equal(f.lag_seconds, 300);
    assert.equal(f.behind, false);
  });
  await t.step("one second over the threshold is behind", () => {
    const f = freshnessOf(stateFreshAt("a", NOW - 301_000), { nowMs: NOW, thresholdSeconds: 300 });
    assert.equal(f.behind, true);
  });
  await t.step("fractions of a second are floored", () => {
    const f = freshnessOf(stateFreshAt("a", NOW - 300_999), { nowMs: NOW, thresholdSeconds: 300 });
    assert.equal(f.lag_seconds, 300);
    assert.equal(f.behind, false);
  });
  await t.step("a fresh_as_of ahead of our clock gives lag 0", () => {
    const f = freshnessOf(stateFreshAt("a", NOW + 5_000), { nowMs: NOW, thresholdSeconds: 0 });
    assert.equal(f.lag_seconds, 0);
    assert.equal(f.behind, false);
  });
  await t.step("fresh_as_of wins over first seen", () => {
    const f = freshnessOf(stateFreshAt("a", NOW - 10_000), {
      nowMs: NOW,
      thresholdSeconds: 60,
      firstSeenMs: NOW - 3_600_000,
    });
    assert.equal(f.lag_seconds, 10);
  });
});

Deno.test("freshnessOf() counts a never-completed connection from the earliest time it was seen", async (t) => {
  await t.step("no state and no first seen: lag unknown, not behind", () => {
    const f = freshnessOf(undefined, { nowMs: NOW, thresholdSeconds: 60 });
    assert.deepEqual(f, {
      fresh_as_of: null,
      lag_seconds: null,
      threshold_seconds: 60,
      behind: false,
    });
  });
  await t.step("first seen only", () => {
    const f = freshnessOf(stateFreshAt("a", null), {
      nowMs: NOW,
      thresholdSeconds: 60,
      firstSeenMs: NOW - 61_000,
    });
    assert.equal(f.lag_seconds, 61);
    assert.equal(f.behind, true);
  });
  await t.step("an older failed run start wins over a later first seen", () => {
    const state = stateFreshAt("a", null, {
      status: "failed",
      last_run: {
        started_at: iso(NOW - 7_200_000),
        finished_at: iso(NOW - 7_100_000),
        outcome: "failed",
        read: 0,
        pushed: 0,
        rejected: 0,
        duration_ms: 100_000,
        mailchimp_requests: 1,
        ometria_requests: 0,
      },
    });
    const f = freshnessOf(state, { nowMs: NOW, thresholdSeconds: 3600, firstSeenMs: NOW - 1000 });
    assert.equal(f.lag_seconds, 7200);
    assert.equal(f.behind, true);
  });
  await t.step("a run in progress counts from its start", () => {
    const state = stateFreshAt("a", null, {
      run: {
        upper: iso(NOW - 600_000),
        cursor: null,
        started_at: iso(NOW - 600_000),
        read: 0,
        pushed: 0,
        rejected: 0,
      },
    });
    const f = freshnessOf(state, { nowMs: NOW, thresholdSeconds: 3600 });
    assert.equal(f.lag_seconds, 600);
    assert.equal(f.behind, false);
  });
});

Deno.test("freshnessOf() throws RangeError for a negative threshold", () => {
  assert.throws(
    () => freshnessOf(undefined, { nowMs: NOW, thresholdSeconds: -1 }),
    (e: unknown) => e instanceof RangeError && /thresholdSeconds/.test(e.message),
  );
});
