/**
 * A cap on request starts per second, shared by everything that uses one Ometria account,
 * paced so that the server's own count (of arrivals, per second) stays under its limit.
 *
 * @module
 */
import type { Clock } from "../clock/clock.ts";
import { DeadlineError } from "./retry.ts";

/** Options of {@linkcode RateLimiter}. */
export interface RateLimiterOptions {
  /**
   * Most request starts in any one window (a second unless `windowMs` says otherwise;
   * Ometria's default for pushes is 8).
   */
  perSecond: number;
  /**
   * The window `perSecond` counts over, for limits stated per minute: Ometria's GDPR API
   * takes 6 requests a minute (`perSecond: 6, windowMs: 60_000`). @default {1000}
   */
  windowMs?: number;
  /** Time of the window and of the waits. */
  clock: Clock;
  /**
   * Milliseconds added to the one-second window. The server counts a request when it
   * arrives, not when we start it; two requests started exactly one window apart can arrive
   * less than a second apart when the first one travels slower, and then share a server
   * second with seven others. Even spacing already makes that rare (the jitter of two
   * requests a second apart must exceed the margin); the margin costs 1% of the rate.
   * @default {10}
   */
  marginMs?: number;
  /**
   * Largest window that 429 feedback may widen it to: 4000 ms lets the limiter settle on an
   * account set to a quarter of the configured rate (Ometria's older default was 4/s, half
   * of today's, and the window must be able to pass that rate to settle above it).
   * @default {4 × windowMs}
   */
  maxWindowMs?: number;
  /**
   * `"even"`: starts are spaced `windowMs / perSecond` apart from the first one on.
   * `"burst-until-429"`: starts go as soon as the sliding window allows (up to `perSecond`
   * in a train 10 ms apart) until the first `throttled()`, and evenly spaced from then on.
   * Ometria documents its push limit as "8 requests per second" per account without saying
   * how it counts (https://docs.ometria.com/docs/ometria-data-api-introduction): a server
   * counting per calendar second or over a sliding second takes `perSecond` starts close
   * together exactly as it takes them spaced (the hard window holds either way), and even
   * spacing costs the whole run nearly `(perSecond - 1)` slots, a second at 8/s, since every
   * later window repeats the first one's spacing. A server that refills a bucket gradually instead answers 429 to a burst
   * whose arrivals jitter by more than the margin; that 429 makes the limiter space evenly
   * for good, which such a server tolerates by up to a whole window of jitter.
   * @default {"even"}
   */
  pace?: "even" | "burst-until-429";
}

/** Share of the window added by one 429 (at most one adjustment per window). */
const _THROTTLE_STEP = 0.1;
/** Share of the base window given back per `perSecond` grants without a 429. */
const _RECOVERY_STEP = 0.01;
/**
 * How early a start may come before its paced slot: timers fire late and a missed slot is
 * lost, so a few milliseconds of slack keep the pace without allowing a burst at low rates.
 */
const _TOLERANCE_MS = 4;
/**
 * Before the first 429 (`pace: "burst-until-429"`), the least time between two starts (or the
 * even spacing, when that is shorter): a window's starts come as a train, not all at once, so
 * a request or two is in flight rather than `perSecond` (what a crash can cost stays as it
 * was), and the train still takes a small part of the window (8 starts: 70 ms of 1,010).
 */
const _TRAIN_GAP_MS = 10;
/** The longest single sleep: a timer past 2^31 - 1 ms fires at once (and then again…). */
const _MAX_SLEEP_MS = 2 ** 31 - 1;

/**
 * Lets at most `perSecond` requests start within any window of `windowMs` (one second plus a
 * margin), and spaces them evenly (one every `windowMs / perSecond`), so that no burst sits
 * on a second boundary where arrival jitter could split it; with `pace: "burst-until-429"`
 * the spacing starts only at the first 429 (see {@linkcode RateLimiterOptions.pace}). A
 * hard sliding window over the last `perSecond` starts also holds, so no window of 1000 ms
 * (and no calendar second) ever sees more than `perSecond` starts. Waiters are served first come, first served.
 * `throttled()` feeds a 429 back (a wider window for a while, not a stall); `pause(ms)` makes
 * everyone wait, e.g. while Ometria's ingest queue drains. One instance per Ometria account,
 * shared by all its clients.
 */
export class RateLimiter {
  /** Most starts in any window of one second. */
  readonly perSecond: number;
  #clock: Clock;
  #baseWindowMs: number;
  #maxWindowMs: number;
  #windowMs: number;
  /** Start times of the last `perSecond` grants, oldest first. */
  #starts: number[] = [];
  /** The paced slot of the next start ("theoretical arrival time" of a GCRA). */
  #nextSlot = Number.NEGATIVE_INFINITY;
  #pausedUntil = Number.NEGATIVE_INFINITY;
  /** Why everyone waits until `#pausedUntil`, in words for a `DeadlineError`. */
  #pauseReason = "";
  #lastThrottle = Number.NEGATIVE_INFINITY;
  #throttles = 0;
  /** Waiters in arrival order; only the first one watches the clock. */
  #queue: { wake: () => void }[] = [];
  /** Whether starts are spaced evenly (always, or since the first 429). */
  #even: boolean;

  constructor(options: RateLimiterOptions) {
    const { perSecond, windowMs = 1000, marginMs = 10 } = options;
    const maxWindowMs = options.maxWindowMs ?? 4 * windowMs;
    if (!Number.isInteger(perSecond) || perSecond < 1) {
      throw new RangeError(
        `Cannot limit the rate as 'perSecond' must be an integer >= 1: current value ${perSecond}`,
      );
    }
    if (!(windowMs >= 1000) || !(marginMs >= 0) || !(maxWindowMs >= windowMs + marginMs)) {
      throw new RangeError(
        `Cannot limit the rate as 'windowMs' must be >= 1000, 'marginMs' >= 0 and 'maxWindowMs' >= 'windowMs' + 'marginMs': current values ${windowMs}, ${marginMs} and ${maxWindowMs}`,
      );
    }
    this.perSecond = perSecond;
    this.#clock = options.clock;
    this.#baseWindowMs = windowMs + marginMs;
    this.#windowMs = this.#baseWindowMs;
    this.#maxWindowMs = maxWindowMs;
    this.#even = (options.pace ?? "even") === "even";
  }

  /** Whether starts are spaced evenly now (see {@linkcode RateLimiterOptions.pace}). */
  get even(): boolean {
    return this.#even;
  }

  /** Clock time until which `acquire()` waits because of `pause()`, if later than now. */
  get pausedUntil(): number {
    return this.#pausedUntil;
  }

  /** The window `perSecond` starts are spread over now: 1000 + margin, wider after 429s. */
  get windowMs(): number {
    return this.#windowMs;
  }

  /** How many times `throttled()` widened the window (429s of one window count once). */
  get throttles(): number {
    return this.#throttles;
  }

  /**
   * Resolves when a request may start and counts it as started. Rejects with the signal's
   * reason when `signal` aborts first (its place in line goes to the next waiter), and with a
   * `DeadlineError` at once when a `pause()` (a server's `Retry-After`) lasts past
   * `deadline`: the pace a run sets itself is always waited for, a server's stop only while
   * the run can still meet its deadline.
   */
  async acquire(signal?: AbortSignal, deadline?: number): Promise<void> {
    signal?.throwIfAborted();
    const ticket = { wake: () => {} };
    this.#queue.push(ticket);
    try {
      for (;;) {
        signal?.throwIfAborted();
        if (this.#queue[0] !== ticket) {
          await _turn(ticket, signal);
          continue;
        }
        const now = this.#clock.now();
        if (deadline !== undefined && this.#pausedUntil > Math.max(now, deadline)) {
          throw new DeadlineError(this.#pauseReason, this.#pausedUntil - now, deadline - now);
        }
        const wait = this.#waitMs(now);
        if (wait <= 0) {
          this.#grant(now);
          return;
        }
        // Re-checked after waking: a pause() or a 429 may have moved the turn.
        await this.#clock.sleep(Math.min(wait, _MAX_SLEEP_MS), signal);
      }
    } finally {
      const wasFirst = this.#queue[0] === ticket;
      this.#queue.splice(this.#queue.indexOf(ticket), 1);
      if (wasFirst) this.#queue[0]?.wake();
    }
  }

  /**
   * Makes every `acquire()` wait until `ms` from now (a longer pause already set stays);
   * `reason` says why, for the error of a run that cannot wait that long.
   */
  pause(ms: number, reason = "The rate limiter is paused"): void {
    if (!(ms > 0)) return;
    const until = this.#clock.now() + ms;
    if (until <= this.#pausedUntil) return;
    this.#pausedUntil = until;
    this.#pauseReason = reason;
  }

  /**
   * Feeds back a 429: the server counted more than we did (jitter, another client on the
   * key, or an account set below `perSecond`). The window widens by 10% (once per window,
   * since the 429s of one crowded second are one signal) and recovers 1% of the base window
   * per `perSecond` clean starts, and the next start skips one slot. A whole-second stall of
   * everyone would cost eight requests to save one. Only a `Retry-After` longer than the
   * window, which no per-second limit needs, pauses everyone for that long.
   */
  throttled(retryAfterMs?: number, reason = "The server answered 429 (rate limited)"): void {
    const now = this.#clock.now();
    // The server does not take bursts (or counts differently): spaced from now on.
    this.#even = true;
    if (retryAfterMs !== undefined && retryAfterMs > this.#windowMs) {
      this.pause(retryAfterMs, `${reason}, asking every request to wait (Retry-After)`);
    }
    if (now - this.#lastThrottle >= this.#windowMs) {
      this.#lastThrottle = now;
      this.#throttles++;
      this.#windowMs = Math.min(this.#maxWindowMs, this.#windowMs * (1 + _THROTTLE_STEP));
    }
    this.#nextSlot = Math.max(this.#nextSlot, now) + this.#windowMs / this.perSecond;
  }

  #waitMs(now: number): number {
    // A clock set backwards would otherwise make everyone wait until it catches up.
    if (this.#starts.length > 0 && this.#starts[this.#starts.length - 1]! > now) {
      this.#starts = [];
      this.#nextSlot = Number.NEGATIVE_INFINITY;
    }
    if (this.#pausedUntil > now) return this.#pausedUntil - now;
    const last = this.#starts[this.#starts.length - 1] ?? Number.NEGATIVE_INFINITY;
    let wait = this.#even
      ? this.#nextSlot - _TOLERANCE_MS - now
      : Math.min(last + _TRAIN_GAP_MS, this.#nextSlot) - _TOLERANCE_MS - now;
    if (this.#starts.length >= this.perSecond) {
      wait = Math.max(wait, this.#starts[0]! + this.#windowMs - now);
    }
    return wait;
  }

  #grant(now: number): void {
    this.#starts.push(now);
    if (this.#starts.length > this.perSecond) this.#starts.shift();
    this.#nextSlot = Math.max(this.#nextSlot, now) + this.#windowMs / this.perSecond;
    if (this.#windowMs > this.#baseWindowMs) {
      const back = (this.#baseWindowMs * _RECOVERY_STEP) / this.perSecond;
      this.#windowMs = Math.max(this.#baseWindowMs, this.#windowMs - back);
    }
  }
}

/** Resolves when `ticket` is woken (its turn came) or rejects when `signal` aborts. */
function _turn(ticket: { wake: () => void }, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal?.reason);
    ticket.wake = () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
