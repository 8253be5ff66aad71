/**
 * A cap on simultaneous requests, and one cap per Mailchimp API key.
 *
 * @module
 */

interface _Waiter {
  start: () => void;
}

/**
 * Runs at most `max` tasks at once; the others wait in FIFO order. A waiter whose signal
 * aborts leaves the queue at once and rejects with the signal's reason. `throttled()` feeds
 * a 429 back: the cap halves and grows back by one per twice-the-cap tasks done without one
 * (additive increase, multiplicative decrease), so a storm is met with fewer requests, not
 * the same ten coming back together. We do not use `p-limit`: it has no per-task abort, so a
 * cancelled run would keep its place in the queue and hold up everyone behind it.
 */
export class ConcurrencyLimiter {
  /** The most tasks running at once. */
  readonly max: number;
  /** The cap now: `max`, lower after 429s. */
  #limit: number;
  /**
   * Tasks started since the cap last changed and done (as if forever before the first
   * change): tasks started under the old cap say nothing about the new one.
   */
  #done = Number.POSITIVE_INFINITY;
  /** Counts the cap's changes; a task remembers the one it started under. */
  #generation = 0;
  #inFlight = 0;
  #maxInFlight = 0;
  #queue: _Waiter[] = [];

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(
        `Cannot limit concurrency as 'max' must be an integer >= 1: current value ${max}`,
      );
    }
    this.max = max;
    this.#limit = max;
  }

  /** The cap now: `max`, or lower while 429s come (see `throttled`). */
  get limit(): number {
    return this.#limit;
  }

  /**
   * Feeds back a 429: the cap halves (at least 1). The 429s of one crowded moment are one
   * signal: after a cut, the next needs as many tasks done as the cap allows.
   */
  throttled(): void {
    if (this.#done < this.#limit) return;
    this.#limit = Math.max(1, Math.floor(this.#limit / 2));
    this.#done = 0;
    this.#generation++;
  }

  /** Tasks running now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The most tasks that ever ran at once (never above `max`). */
  get maxInFlight(): number {
    return this.#maxInFlight;
  }

  /** Tasks waiting for a slot. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Runs `fn` once a slot is free and holds the slot until it settles. Rejects with the
   * signal's reason, without running `fn`, when `signal` aborts before a slot is free.
   */
  async run<T>(fn: () => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    await this.#acquire(signal);
    const generation = this.#generation;
    try {
      return await fn();
    } finally {
      this.#release(generation);
    }
  }

  #acquire(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#inFlight < this.#limit) {
      this.#take();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#queue = this.#queue.filter((w) => w !== waiter);
        reject(signal?.reason);
      };
      const waiter: _Waiter = {
        start: () => {
          signal?.removeEventListener("abort", onAbort);
          this.#take();
          resolve();
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  #take(): void {
    this.#inFlight++;
    if (this.#inFlight > this.#maxInFlight) this.#maxInFlight = this.#inFlight;
  }

  #release(generation: number): void {
    this.#inFlight--;
    if (generation === this.#generation) this.#done++;
    if (this.#limit < this.max && this.#done >= 2 * this.#limit) {
      this.#limit++;
      this.#done = 0;
      this.#generation++;
    }
    // Slots go to the oldest waiters before anyone calling run() later can take them.
    while (this.#inFlight < this.#limit && this.#queue.length > 0) this.#queue.shift()!.start();
  }
}

/**
 * One {@linkcode ConcurrencyLimiter} per Mailchimp API key, so that every connection, run
 * and request using a key shares one cap: Mailchimp allows 10 simultaneous connections per
 * key and answers 429 beyond. The registry is an instance the caller creates and hands
 * down (no module-level state), typically one per process.
 */
export class MailchimpLimiters {
  #byKey = new Map<string, ConcurrencyLimiter>();

  /**
   * The limiter of `apiKey`, created with `max` slots on first use. Later calls get the same
   * limiter whatever `max` they pass: the first caller's cap holds for the key.
   */
  for(apiKey: string, max = 10): ConcurrencyLimiter {
    let limiter = this.#byKey.get(apiKey);
    if (!limiter) {
      limiter = new ConcurrencyLimiter(max);
      this.#byKey.set(apiKey, limiter);
    }
    return limiter;
  }

  /** Number of keys with a limiter. */
  get size(): number {
    return this.#byKey.size;
  }
}
