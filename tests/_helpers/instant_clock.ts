/** Test helpers shared by the API client tests. */
import type { Clock } from "../../lib/clock/clock.ts";

/**
 * A hand-written clock for tests that must honour long waits without sleeping: waits shorter
 * than `blockAtMs` (backoff) advance the time at once; longer ones (a simulator's slow answer)
 * only end when aborted, so the client's real-time timeout is what ends them. Every instant
 * wait is recorded.
 */
export class InstantClock implements Clock {
  #now = Date.UTC(2026, 0, 1);
  readonly sleeps: number[] = [];
  constructor(readonly blockAtMs: number) {}
  now(): number {
    return this.#now;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (ms >= this.blockAtMs) {
      return new Promise((_, reject) =>
        signal?.addEventListener("abort", () => reject(signal.reason), { once: true })
      );
    }
    this.sleeps.push(ms);
    this.#now += Math.max(0, ms);
    return Promise.resolve();
  }
}
