/**
 * Time as the rest of the program sees it. Everything below `main.ts` receives a
 * {@linkcode Clock} instead of calling `Date.now()` or `setTimeout`, so that backoff,
 * scheduling and freshness can be tested with {@linkcode FakeClock} and no real sleeps.
 *
 * @module
 */

/** A source of the current time and of cancellable waits. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /**
   * Resolves after `ms` milliseconds; rejects with the signal's reason when `signal`
   * aborts first.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock: `Date.now()` and `setTimeout`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        clearTimeout(id);
        reject(signal?.reason);
      };
      const id = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, Math.max(0, ms));
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  },
};

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
 * somebody sleeps. Used by tests and by the simulators in deterministic scenarios.
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
