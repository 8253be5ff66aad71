/**
 * A cap on request starts per second, shared by everything that uses one Ometria account.
 *
 * @module
 */
import type { Clock } from "../clock/clock.ts";

/** Options of {@linkcode RateLimiter}. */
export interface RateLimiterOptions {
  /** Most request starts in any one second (Ometria's default is 8). */
  perSecond: number;
  /** Time of the window and of the waits. */
  clock: Clock;
}

/**
 * Lets at most `perSecond` requests start within any window of 1000 ms of the clock
 * (a sliding window over the last `perSecond` starts). That also keeps every calendar
 * second (`floor(now / 1000)`) at or under the cap, so the limit holds whether the server
 * counts per clock second or over a sliding second. `pause(ms)` makes everyone wait, e.g.
 * after a 429 or while Ometria's ingest queue drains. One instance per Ometria account,
 * shared by all its clients.
 */
export class RateLimiter {
  /** Most starts in any window of one second. */
  readonly perSecond: number;
  #clock: Clock;
  /** Start times of the last `perSecond` grants, oldest first. */
  #starts: number[] = [];
  #pausedUntil = Number.NEGATIVE_INFINITY;

  constructor(options: RateLimiterOptions) {
    const { perSecond } = options;
    if (!Number.isInteger(perSecond) || perSecond < 1) {
      throw new RangeError(
        `Cannot limit the rate as 'perSecond' must be an integer >= 1: current value ${perSecond}`,
      );
    }
    this.perSecond = perSecond;
    this.#clock = options.clock;
  }

  /** Clock time until which `acquire()` waits because of `pause()`, if later than now. */
  get pausedUntil(): number {
    return this.#pausedUntil;
  }

  /**
   * Resolves when a request may start and counts it as started. Rejects with the signal's
   * reason when `signal` aborts first.
   */
  async acquire(signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const now = this.#clock.now();
      // A clock set backwards would otherwise make everyone wait until it catches up.
      if (this.#starts.length > 0 && this.#starts[this.#starts.length - 1]! > now) {
        this.#starts = [];
      }
      let wait = this.#pausedUntil - now;
      if (wait <= 0 && this.#starts.length >= this.perSecond) {
        wait = this.#starts[0]! + 1000 - now;
      }
      if (wait <= 0) {
        this.#starts.push(now);
        if (this.#starts.length > this.perSecond) this.#starts.shift();
        return;
      }
      // Everyone re-checks after waking: a pause() or other callers may have taken the turn.
      await this.#clock.sleep(wait, signal);
    }
  }

  /** Makes every `acquire()` wait until `ms` from now (a longer pause already set stays). */
  pause(ms: number): void {
    if (!(ms > 0)) return;
    this.#pausedUntil = Math.max(this.#pausedUntil, this.#clock.now() + ms);
  }
}
