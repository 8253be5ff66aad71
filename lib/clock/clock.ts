/**
 * Time as the rest of the program sees it. Everything below `main.ts` receives a
 * {@linkcode Clock} instead of calling `Date.now()` or `setTimeout`, so that backoff,
 * scheduling and freshness can be tested with a fake clock (tests/_helpers/fake_clock.ts)
 * and no real sleeps.
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
