/**
 * Leases and their fences. A lease is a claim on one connection; its fence is what every write
 * made under it carries (see `Fence` in store.ts). Stores whose only competitor is this
 * process (memory, and the file store, whose whole-file lock excludes other processes) use
 * {@linkcode LocalLeases}; Deno KV builds on {@linkcode FenceState} with its own renewals.
 *
 * @module
 */
import { type Fence, FencedError, type Lease } from "./store.ts";

/**
 * The mutable side of a fence: holds while nobody has called {@linkcode lose}, and, when a
 * deadline is set, while the clock is before it. Losing aborts `signal` with a
 * {@linkcode FencedError}, so requests in flight for the connection stop with it.
 */
export class FenceState implements Fence {
  readonly connectionId: string;
  readonly #controller = new AbortController();
  readonly #now: () => number;
  /** Time (on `now`) from which the lease may have lapsed; Infinity: never on its own. */
  #deadline = Infinity;

  constructor(connectionId: string, now: () => number = () => 0) {
    this.connectionId = connectionId;
    this.#now = now;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Whether the fence has been lost (or released). */
  get lost(): boolean {
    return this.#controller.signal.aborted;
  }

  /** Moves the deadline (after a successful renewal). */
  setDeadline(at: number): void {
    this.#deadline = at;
  }

  /** The time from which the lease may have lapsed. */
  get deadline(): number {
    return this.#deadline;
  }

  assertHeld(): void {
    if (!this.lost && this.#now() >= this.#deadline) {
      this.lose(
        `the lease on connection ${this.connectionId} may have lapsed: it was last renewed ` +
          "too long ago on this process's clock (was the process paused?)",
      );
    }
    if (this.lost) throw this.#controller.signal.reason;
  }

  /** Ends the fence for good; later calls keep the first reason. */
  lose(reason: string): void {
    if (this.lost) return;
    this.#controller.abort(new FencedError(`Stopped writing: ${reason}.`));
  }
}

/**
 * Leases that only exclude other holders in this process: a token per claim, so a stale
 * lease released late cannot free a later holder's claim, and releasing loses the fence.
 */
export class LocalLeases {
  readonly #held = new Map<string, FenceState>();

  /** Claims `id`; undefined when this process already holds it. */
  acquire(id: string): Lease | undefined {
    if (this.#held.has(id)) return undefined;
    const fence = new FenceState(id);
    this.#held.set(id, fence);
    return {
      fence,
      release: () => {
        if (this.#held.get(id) === fence) this.#held.delete(id);
        fence.lose(`the lease on connection ${id} was released`);
        return Promise.resolve();
      },
    };
  }

  /** Releases every claim (the store is closing). */
  clear(): void {
    for (const [id, fence] of this.#held) fence.lose(`the store holding ${id} was closed`);
    this.#held.clear();
  }
}
