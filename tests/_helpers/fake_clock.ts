/**
 * A fake {@linkcode Clock} for tests: time moves only when a test says so, or, with
 * `autoAdvance`, whenever somebody sleeps. It lives with the tests because nothing in lib/
 * needs it: the simulators, the demo and the benchmark take whatever clock they are given.
 *
 * @module
 */
import type { Clock } from "../../lib/clock/clock.ts";

interface _Timer {
  at: number;
  seq: number;
  resolve: () => void;
}

/** Options of {@linkcode FakeClock}. */
export interface FakeClockOptions {
  /**
   * When true, `sleep()` advances the clock by the requested time and resolves at once,
   * so code that backs off runs to completion without anyone calling `tick()`.
   * @default {false}
   */
  autoAdvance?: boolean;
}

/**
 * A clock that only moves when told to (`tick`, `set`) or, with `autoAdvance`, whenever
 * somebody sleeps. Used by tests, and handed to the simulators in deterministic scenarios.
 */
export class FakeClock implements Clock {
  #now: number;
  #timers: _Timer[] = [];
  #seq = 0;
  #autoAdvance: boolean;

  constructor(start: number | Date = Date.UTC(2026, 0, 1), options: FakeClockOptions = {}) {
    this.#now = typeof start === "number" ? start : start.getTime();
    this.#autoAdvance = options.autoAdvance ?? false;
  }

  now(): number {
    return this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#autoAdvance) {
      this.#now += Math.max(0, ms);
      this.#fire();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const timer: _Timer = {
        at: this.#now + Math.max(0, ms),
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#timers = this.#timers.filter((t) => t !== timer);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#timers.push(timer);
    });
  }

  /** Number of sleeps waiting for the clock to move. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Moves the clock forward by `ms`, resolving every sleep that comes due, in order. */
  async tick(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      const next = this.#timers
        .filter((t) => t.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.#now = Math.max(this.#now, next.at);
      this.#timers = this.#timers.filter((t) => t !== next);
      next.resolve();
      // Let the woken code run (and perhaps schedule more timers) before going on.
      await new Promise((r) => setTimeout(r, 0));
    }
    this.#now = target;
  }

  /** Sets the clock to an absolute time (never backwards). */
  set(ms: number): void {
    this.#now = Math.max(this.#now, ms);
    this.#fire();
  }

  #fire(): void {
    const due = this.#timers.filter((t) => t.at <= this.#now);
    this.#timers = this.#timers.filter((t) => t.at > this.#now);
    for (const t of due.sort((a, b) => a.at - b.at || a.seq - b.seq)) t.resolve();
  }
}
