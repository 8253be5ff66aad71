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
 * aborts leaves the queue at once and rejects with the signal's reason. We do not use
 * `p-limit`: it has no per-task abort, so a cancelled run would keep its place in the queue
 * and hold up everyone behind it until its turn came.
 */
export class ConcurrencyLimiter {
  /** The most tasks running at once. */
  readonly max: number;
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
    try {
      return await fn();
    } finally {
      this.#release();
    }
  }

  #acquire(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#inFlight < this.max) {
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

  #release(): void {
    this.#inFlight--;
    // The slot goes to the oldest waiter before anyone calling run() later can take it.
    this.#queue.shift()?.start();
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
