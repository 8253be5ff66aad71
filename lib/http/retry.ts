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
}

/** Options of {@linkcode retry}. */
export interface RetryOptions {
  /** Time for the backoff sleeps and the elapsed-time budget. */
  clock: Clock;
  /** Attempts in all, the first included. @default {8} */
  maxAttempts?: number;
  /**
   * Time budget from the first attempt: no retry starts after it, and a wait that would end
   * beyond it is cut short (or, for a server's `Retry-After`, means giving up at once), so a
   * request that keeps failing is given up within about a minute.
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
  /** Whether an error is worth another attempt; others are rethrown as is. @default {() => true} */
  shouldRetry?: (error: unknown) => boolean;
  /**
   * How long the server asked us to wait (its `Retry-After`), if it did. Honoured instead of
   * the backoff, unless it reaches past `maxElapsedMs`: then `retry` gives up at once.
   */
  retryAfterMs?: (error: unknown) => number | undefined;
  /** Called before each retry; where callers log it. */
  onFailedAttempt?: (info: FailedAttempt) => void;
}

/**
 * Thrown by {@linkcode retry} when it gives up on an error worth retrying: after
 * `maxAttempts`, when the time budget is spent, or when the server asks to wait longer than
 * what is left of it. `cause` is the last error.
 */
export class RetryError extends Error {
  /** Attempts made, the first included. */
  readonly attempts: number;

  constructor(cause: unknown, attempts: number, reason: string) {
    super(
      `Gave up after ${attempts} attempt${attempts === 1 ? "" : "s"} (${reason}): ${
        errorText(cause)
      }`,
      {
        cause,
      },
    );
    this.name = "RetryError";
    this.attempts = attempts;
  }
}

/**
 * Calls `fn` until it succeeds, waiting between attempts with exponential backoff and full
 * jitter, or the server's `Retry-After`; `fn` gets the attempt number (from 1) and the
 * signal to pass on. Errors that `shouldRetry` refuses are rethrown as they are; giving up
 * on retryable ones throws {@linkcode RetryError}. We do not use `p-retry` because it sleeps
 * with the real `setTimeout`: it cannot take our {@linkcode Clock}, so tests of backoff would
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
    random = Math.random,
    shouldRetry = () => true,
    retryAfterMs = () => undefined,
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
  for (let attempt = 1;; attempt++) {
    signal.throwIfAborted();
    try {
      return await fn(attempt, signal);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (!shouldRetry(error)) throw error;
      if (attempt >= maxAttempts) throw new RetryError(error, attempt, "no attempts left");
      const remaining = maxElapsedMs - (clock.now() - start);
      if (remaining <= 0) {
        throw new RetryError(error, attempt, `time budget of ${maxElapsedMs} ms spent`);
      }
      const asked = retryAfterMs(error);
      let delayMs: number;
      if (asked !== undefined && asked >= 0) {
        if (asked > remaining) {
          throw new RetryError(
            error,
            attempt,
            `the server asked to wait ${asked} ms, more than the ${remaining} ms left of the budget`,
          );
        }
        delayMs = asked;
      } else {
        const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** (attempt - 1));
        delayMs = Math.min(Math.round(random() * ceiling), remaining);
      }
      onFailedAttempt?.({ error, attempt, delayMs });
      await clock.sleep(delayMs, signal);
    }
  }
}

/**
 * Parses a `Retry-After` header (delay seconds or an HTTP-date) into milliseconds from
 * `nowMs`, or `undefined` when absent or unreadable. A date in the past means "now" (0).
 */
export function parseRetryAfter(
  value: string | null | undefined,
  nowMs: number,
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (text === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}

/**
 * The part of {@linkcode RetryOptions} a client's caller may tune; the client itself
 * supplies the clock, the signal and which errors are retried.
 */
export type RetryPolicy = Partial<
  Omit<RetryOptions, "clock" | "signal" | "shouldRetry" | "retryAfterMs">
>;
