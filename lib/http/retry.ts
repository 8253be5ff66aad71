/**
 * Retrying a failing operation with exponential backoff, full jitter, `Retry-After` and a
 * total time budget, all on an injected {@linkcode Clock}.
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";
import type { Clock } from "../clock/clock.ts";

/** What {@linkcode RetryOptions.onFailedAttempt} is told before each retry. */
export interface FailedAttempt {
  /** What the attempt threw. */
  error: unknown;
  /** The attempt that failed, from 1. */
  attempt: number;
  /** How long `retry` waits before the next attempt. */
  delayMs: number;
  /** Whether the error was the server's rate limiting (`isThrottle`). */
  throttled: boolean;
}

/** Options of {@linkcode retry}. */
export interface RetryOptions {
  /** Time for the backoff sleeps and the elapsed-time budget. */
  clock: Clock;
  /** Attempts in all, the first included; throttled attempts do not count. @default {8} */
  maxAttempts?: number;
  /**
   * Time budget from the first attempt: no retry starts after it, and a wait that would end
   * beyond it is cut short (or, for a server's `Retry-After`, means giving up at once), so a
   * request that keeps failing is given up within about a minute. Throttled attempts are
   * bounded by `deadline` instead, when there is one.
   * @default {60_000}
   */
  maxElapsedMs?: number;
  /** Backoff ceiling of the first retry, in milliseconds. @default {500} */
  minDelayMs?: number;
  /** Largest backoff ceiling, in milliseconds. @default {15_000} */
  maxDelayMs?: number;
  /**
   * Source of jitter in [0, 1): the wait before retry n is
   * `random() * min(maxDelayMs, minDelayMs * 2 ** (n - 1))` ("full jitter", so that many
   * clients failing together do not come back together).
   * @default {Math.random}
   */
  random?: () => number;
  /** Aborting stops at once, even in the middle of a backoff sleep, with the signal's reason. */
  signal?: AbortSignal | undefined;
  /**
   * Whether an error is worth another attempt, after `attempt` attempts; others are
   * rethrown as they are. @default {() => true}
   */
  shouldRetry?: (error: unknown, attempt: number) => boolean;
  /**
   * How long the server asked us to wait (its `Retry-After`), if it did. Honoured instead of
   * the backoff, unless it reaches past `maxElapsedMs` (or, for a throttle, past `deadline`):
   * then `retry` gives up at once.
   */
  retryAfterMs?: (error: unknown) => number | undefined;
  /**
   * Whether an error is the server's rate limiting (a 429): not a failure of the request but
   * the server's pace. Such an attempt does not count against `maxAttempts`, and the wait
   * before the next one is the `Retry-After` plus a backoff that grows, with jitter, while
   * the throttling lasts (a fixed `Retry-After` brings every client back at the same
   * instant). Throttled retries go on until `deadline`, or, without one, `maxElapsedMs`.
   * @default {() => false}
   */
  isThrottle?: (error: unknown) => boolean;
  /**
   * The clock time by which the caller must be done (a run's deadline): no wait ends after
   * it. A throttle whose `Retry-After` (or backoff) would end past it gives up at once with
   * a {@linkcode DeadlineError}, rather than hold the caller open.
   */
  deadline?: number | undefined;
  /** Called before each retry; where callers log it. */
  onFailedAttempt?: (info: FailedAttempt) => void;
}

/**
 * Thrown by {@linkcode retry} when it gives up on an error worth retrying: after
 * `maxAttempts`, when the time budget is spent, or when the server asks to wait longer than
 * what is left of it. `cause` is the last error, and the message starts with it (a status
 * line cut short must still show why).
 */
export class RetryError extends Error {
  /** Attempts made, the first included. */
  readonly attempts: number;

  constructor(cause: unknown, attempts: number, reason: string) {
    super(
      `${errorText(cause).replace(/\.$/, "")} (gave up after ${attempts} attempt${
        attempts === 1 ? "" : "s"
      }: ${reason})`,
      { cause },
    );
    this.name = "RetryError";
    this.attempts = attempts;
  }
}

/**
 * Thrown when waiting for a server's rate limit would end past the caller's deadline (a
 * run's `RUN_DEADLINE_MINUTES`): the wait is not started, so nothing hangs for an hour on one
 * `Retry-After`. `cause` is the throttling answer when there is one; the message starts with
 * it, then says how long the wait was and how long was left.
 */
export class DeadlineError extends Error {
  /** How long the server's pace asked to wait, in milliseconds. */
  readonly waitMs: number;
  /** What was left until the deadline, in milliseconds. */
  readonly leftMs: number;

  constructor(what: string, waitMs: number, leftMs: number, cause?: unknown) {
    super(
      `${what.replace(/\.$/, "")}: waiting ${_seconds(waitMs)} for the rate limit would end ` +
        `past the run's deadline (${_seconds(Math.max(0, leftMs))} left); the run stops here ` +
        "and the next one resumes from its checkpoint",
      cause === undefined ? undefined : { cause },
    );
    this.name = "DeadlineError";
    this.waitMs = waitMs;
    this.leftMs = leftMs;
  }
}

/**
 * Calls `fn` until it succeeds, waiting between attempts with exponential backoff and full
 * jitter, or the server's `Retry-After`; `fn` gets the attempt number (from 1) and the
 * signal to pass on. Errors that `shouldRetry` refuses are rethrown as they are; giving up
 * on retryable ones throws {@linkcode RetryError}, or {@linkcode DeadlineError} for a
 * throttle that the deadline cannot wait for. We do not use `p-retry` because it sleeps with
 * the real `setTimeout`: it cannot take our {@linkcode Clock}, so tests of backoff would
 * need real sleeps. A per-attempt timeout is the caller's job (see `requestText`).
 */
export async function retry<T>(
  fn: (attempt: number, signal: AbortSignal) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const {
    clock,
    maxAttempts = 8,
    maxElapsedMs = 60_000,
    minDelayMs = 500,
    maxDelayMs = 15_000,
    shouldRetry = () => true,
    onFailedAttempt,
  } = options;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new RangeError(
      `Cannot retry as 'maxAttempts' must be an integer >= 1: current value ${maxAttempts}`,
    );
  }
  if (!(minDelayMs >= 0) || !(maxDelayMs >= minDelayMs)) {
    throw new RangeError(
      `Cannot retry as 'minDelayMs' must be >= 0 and <= 'maxDelayMs': current values ${minDelayMs} and ${maxDelayMs}`,
    );
  }
  if (!(maxElapsedMs >= 0)) {
    throw new RangeError(
      `Cannot retry as 'maxElapsedMs' must be >= 0: current value ${maxElapsedMs}`,
    );
  }
  // fn always gets a signal, even when the caller has none, so it can pass it on blindly.
  const signal = options.signal ?? new AbortController().signal;
  const start = clock.now();
  let failures = 0;
  let throttles = 0;
  for (let attempt = 1;; attempt++) {
    signal.throwIfAborted();
    try {
      return await fn(attempt, signal);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (!shouldRetry(error, attempt)) throw error;
      const throttled = options.isThrottle?.(error) ?? false;
      const delayMs = throttled
        ? _throttleDelay(error, ++throttles, attempt, start, options)
        : _failureDelay(error, ++failures, attempt, start, options);
      onFailedAttempt?.({ error, attempt, delayMs, throttled });
      await clock.sleep(delayMs, signal);
    }
  }
}

/** The wait before retrying a failure (not a throttle), or the RetryError that gives up. */
function _failureDelay(
  error: unknown,
  failures: number,
  attempt: number,
  start: number,
  options: RetryOptions,
): number {
  const { clock, maxAttempts = 8, maxElapsedMs = 60_000 } = options;
  if (failures >= maxAttempts) throw new RetryError(error, attempt, "no attempts left");
  const remaining = maxElapsedMs - (clock.now() - start);
  if (remaining <= 0) {
    throw new RetryError(error, attempt, `time budget of ${maxElapsedMs} ms spent`);
  }
  const asked = options.retryAfterMs?.(error);
  if (asked !== undefined && asked >= 0) {
    if (asked > remaining) {
      throw new RetryError(
        error,
        attempt,
        `the server asked to wait ${asked} ms, more than the ${remaining} ms left of the budget`,
      );
    }
    return asked;
  }
  return Math.min(Math.round(_jitter(failures, options)), remaining);
}

/**
 * The wait before retrying a throttled attempt: the server's `Retry-After` (a minimum) plus a
 * jittered backoff that grows with each throttle in a row; or a `DeadlineError` when that
 * wait would end past the deadline (without one, past the time budget).
 */
function _throttleDelay(
  error: unknown,
  throttles: number,
  attempt: number,
  start: number,
  options: RetryOptions,
): number {
  const { clock, maxElapsedMs = 60_000 } = options;
  const asked = Math.max(0, options.retryAfterMs?.(error) ?? 0);
  const delayMs = Math.round(asked + _jitter(throttles, options));
  const now = clock.now();
  if (options.deadline === undefined) {
    const remaining = maxElapsedMs - (now - start);
    if (delayMs > remaining) {
      throw new RetryError(
        error,
        attempt,
        `rate limited ${throttles} time${throttles === 1 ? "" : "s"} in a row; the next wait ` +
          `(${delayMs} ms) is more than the ${Math.max(0, remaining)} ms left of the budget`,
      );
    }
    return delayMs;
  }
  const left = options.deadline - now;
  if (delayMs > left) throw new DeadlineError(errorText(error), delayMs, left, error);
  return delayMs;
}

/** Full jitter over the exponential ceiling of the `n`-th retry. */
function _jitter(n: number, options: RetryOptions): number {
  const { minDelayMs = 500, maxDelayMs = 15_000, random = Math.random } = options;
  return random() * Math.min(maxDelayMs, minDelayMs * 2 ** (n - 1));
}

function _seconds(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 90_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 5_400_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/**
 * The longest wait a `Retry-After` is read as: a day. Any run's deadline is shorter, and a
 * timer past about 24.8 days (2^31 ms) would fire at once, over and over.
 */
export const MAX_RETRY_AFTER_MS = 86_400_000;

/**
 * Parses a `Retry-After` header (delay seconds or an HTTP-date) into milliseconds from
 * `nowMs`, or `undefined` when absent or unreadable. A date in the past means "now" (0); a
 * wait beyond {@linkcode MAX_RETRY_AFTER_MS} is read as that.
 */
export function parseRetryAfter(
  value: string | null | undefined,
  nowMs: number,
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (text === "") return undefined;
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(text)) ms = Math.round(Number(text) * 1000);
  else {
    const date = Date.parse(text);
    if (Number.isNaN(date)) return undefined;
    ms = Math.max(0, date - nowMs);
  }
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}

/**
 * The part of {@linkcode RetryOptions} a client's caller may tune; the client itself
 * supplies the clock, the signal and which errors are retried.
 */
export type RetryPolicy = Partial<
  Omit<
    RetryOptions,
    "clock" | "signal" | "shouldRetry" | "retryAfterMs" | "isThrottle" | "deadline"
  >
>;
