/**
 * The original tool's rules for when a list is synced, as a pure decision per connection.
 *
 * @module
 */
import type { ConnectionState } from "../state/schema.ts";

const MINUTE = 60_000;

/** Why a connection runs this tick, or why not. */
export type DueDecision =
  | { kind: "due"; reason: "force" | "never" | "resume" | "retry" | "lag" | "bulk" }
  | { kind: "wait"; reason: "backoff" | "fresh" }
  /** Due only if more than BULK_MEMBER_COUNT members changed: ask Mailchimp. */
  | { kind: "check"; sinceMs: number };

/** The numbers the rules use (from the original tool's environment variables). */
export interface DueRules {
  /** NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA, per connection. */
  thresholdSeconds: number;
  /** MINUTES_NEEDED_TO_PERFORM_A_PARTIAL_SYNC_OF_A_SINGLE_BULK. */
  minutesPerBulk: number;
  /** Time between ticks: a run must start one tick early rather than one tick late. */
  tickSeconds: number;
}

/**
 * Decides whether a connection runs now, from its state alone where possible:
 * never synced → run; an interrupted run → resume; failed → retry once its backoff passed;
 * lag (plus the time one pending bulk needs and one tick) reaching the threshold → run;
 * otherwise ask Mailchimp how many members changed (`check`).
 */
export function decideDue(
  state: ConnectionState | undefined,
  nowMs: number,
  rules: DueRules,
  force = false,
): DueDecision {
  if (force) return { kind: "due", reason: "force" };
  if (!state || state.watermark === null && state.run === null) {
    if (state?.status === "failed" && state.retry_at && Date.parse(state.retry_at) > nowMs) {
      return { kind: "wait", reason: "backoff" };
    }
    return { kind: "due", reason: state?.status === "failed" ? "retry" : "never" };
  }
  if (state.status === "failed") {
    if (state.retry_at && Date.parse(state.retry_at) > nowMs) {
      return { kind: "wait", reason: "backoff" };
    }
    return { kind: "due", reason: "retry" };
  }
  if (state.run !== null) return { kind: "due", reason: "resume" };
  const freshAsOf = state.fresh_as_of ? Date.parse(state.fresh_as_of) : undefined;
  const watermark = Date.parse(state.watermark!);
  if (freshAsOf === undefined) return { kind: "due", reason: "lag" };
  const lagMs = nowMs - freshAsOf;
  const slackMs = rules.minutesPerBulk * MINUTE + rules.tickSeconds * 1000;
  if (lagMs + slackMs >= rules.thresholdSeconds * 1000) return { kind: "due", reason: "lag" };
  return { kind: "check", sinceMs: watermark };
}

/**
 * When a connection must have completed a run to stay within its threshold; due
 * connections start in this order, so the ones closest to falling behind go first.
 */
export function deadlineOf(state: ConnectionState | undefined, thresholdSeconds: number): number {
  const fresh = state?.fresh_as_of ? Date.parse(state.fresh_as_of) : undefined;
  return fresh === undefined ? -Infinity : fresh + thresholdSeconds * 1000;
}
