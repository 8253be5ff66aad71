/**
 * Freshness of one connection: how far Ometria trails Mailchimp, and whether that is too far.
 *
 * The rule, in one line: **lag = now − (fresh_as_of ?? first seen)**, and **behind = lag >
 * threshold**. `fresh_as_of` is the Mailchimp time up to which Ometria is known complete (the
 * upper bound U of the last completed run). A connection that never completed a run has no
 * `fresh_as_of`; its lag then counts from the earliest moment the program is known to have
 * been responsible for it: the earliest of `firstSeenMs` (handed in by the caller, e.g. when
 * this process first saw the connection), the start of the run in progress and the start of
 * the last run. Taking the earliest matters: a connection whose runs keep failing must grow
 * behind, not restart its lag at every attempt. When none of these is known the lag is
 * unknown (null) and the connection is not behind: nothing has been asked of it yet.
 *
 * @module
 */
import type { ConnectionState } from "../state/schema.ts";

/** Options of {@linkcode freshnessOf}. */
export interface FreshnessOptions {
  /** The current time, epoch milliseconds (our clock). */
  nowMs: number;
  /** The connection's threshold: behind when the lag is strictly greater. */
  thresholdSeconds: number;
  /**
   * When the program first saw the connection (epoch milliseconds); the lag of a connection
   * that never completed a run counts from the earliest of this and its recorded run starts.
   */
  firstSeenMs?: number;
}

/** How fresh one connection is at a given moment. */
export interface Freshness {
  /** Mailchimp time up to which Ometria is complete; null before the first completed run. */
  fresh_as_of: string | null;
  /** Whole seconds since `fresh_as_of` (or first seen), never negative; null when unknown. */
  lag_seconds: number | null;
  /** The threshold the lag was compared with. */
  threshold_seconds: number;
  /** True when `lag_seconds > threshold_seconds`. */
  behind: boolean;
}

/**
 * Computes lag and "behind" for one connection (pure). The lag is floored to whole seconds
 * and clamped at zero, because `fresh_as_of` comes from Mailchimp's clock and ours may trail
 * it a little; a lag equal to the threshold is not behind. See the module doc for the rule
 * used when `fresh_as_of` is null.
 */
export function freshnessOf(
  state: ConnectionState | undefined,
  options: FreshnessOptions,
): Freshness {
  const { nowMs, thresholdSeconds } = options;
  if (!Number.isFinite(nowMs)) {
    throw new RangeError(`Cannot compute freshness as 'nowMs' is not finite: ${nowMs}`);
  }
  if (!Number.isFinite(thresholdSeconds) || thresholdSeconds < 0) {
    throw new RangeError(
      `Cannot compute freshness as 'thresholdSeconds' must be >= 0: current value ${thresholdSeconds}`,
    );
  }
  const freshAsOf = state?.fresh_as_of ?? null;
  const referenceMs = freshAsOf !== null ? _parse(freshAsOf) : _earliest(
    options.firstSeenMs,
    _parse(state?.first_seen_at),
    _parse(state?.run?.started_at),
    _parse(state?.last_run?.started_at),
  );
  if (referenceMs === undefined) {
    return {
      fresh_as_of: freshAsOf,
      lag_seconds: null,
      threshold_seconds: thresholdSeconds,
      behind: false,
    };
  }
  const lagSeconds = Math.max(0, Math.floor((nowMs - referenceMs) / 1000));
  return {
    fresh_as_of: freshAsOf,
    lag_seconds: lagSeconds,
    threshold_seconds: thresholdSeconds,
    behind: lagSeconds > thresholdSeconds,
  };
}

function _parse(text: string | null | undefined): number | undefined {
  if (!text) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

function _earliest(...times: (number | undefined)[]): number | undefined {
  let earliest: number | undefined;
  for (const t of times) {
    if (t !== undefined && Number.isFinite(t) && (earliest === undefined || t < earliest)) {
      earliest = t;
    }
  }
  return earliest;
}
