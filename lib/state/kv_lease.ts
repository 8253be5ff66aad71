/**
 * A connection's lease in Deno KV and the fence that goes with it. The lease entry
 * `["leases", id]` holds its owner, a token for this claim and `expires_at` on the holder's
 * clock. It is taken and renewed with versionstamp-checked atomic writes, so of two processes
 * racing for it exactly one wins, and every write of the connection made under it checks the
 * entry at the versionstamp of the holder's last renewal: once another process has taken the
 * lease over, the old holder's writes fail.
 *
 * The holder also watches its own clock: the lease counts as lapsed a third of a lease before
 * `expires_at` (when renewals have failed, or the process was paused past it), and from then on
 * the fence is lost: nothing more is pushed or written, and the run stops. That third covers
 * clocks that disagree between machines and the time a request takes to arrive.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { z } from "zod";
import type { Clock } from "../clock/clock.ts";
import { errorText } from "../log/error_text.ts";
import { FenceState } from "./leases.ts";
import type { Lease } from "./store.ts";

const _leaseSchema = z.object({
  owner: z.string(),
  token: z.string().optional(),
  expires_at: z.number(),
});

/** What a KV lease needs from its store. */
export interface KvLeaseDeps {
  kv: Deno.Kv;
  clock: Clock;
  /** How long a lease lasts without renewal (ms). */
  leaseMs: number;
  /** This store's owner id (distinguishes it from every other store and process). */
  owner: string;
  /** Retries a KV call while a local database answers "locked". */
  retry: <T>(op: () => Promise<T>) => Promise<T>;
  logger?: Logger | undefined;
  location: string;
}

/** One claim on one connection in Deno KV. */
export class KvLease implements Lease {
  readonly fence: FenceState;
  readonly #d: KvLeaseDeps;
  readonly #id: string;
  /** This claim's token in the entry: a later claim by the same store is another one. */
  readonly #token: string;
  readonly #key: Deno.KvKey;
  /** The lease entry's versionstamp after our last write of it. */
  #versionstamp: string;
  readonly #stop = new AbortController();
  #renewing: Promise<void> = Promise.resolve();
  #released = false;

  private constructor(
    d: KvLeaseDeps,
    id: string,
    token: string,
    versionstamp: string,
    sentAt: number,
  ) {
    this.#d = d;
    this.#id = id;
    this.#token = token;
    this.#key = ["leases", id];
    this.#versionstamp = versionstamp;
    this.fence = new _KvFence(this, id, () => d.clock.now());
    this.fence.setDeadline(this.#deadlineAfter(sentAt));
    this.#renewing = this.#renewLoop();
  }

  /**
   * Takes the lease of `id` when it is free or expired (on this clock); undefined when
   * another holder has it. A lost race is retried once or twice in case the winner let go.
   */
  static async acquire(d: KvLeaseDeps, id: string): Promise<KvLease | undefined> {
    const key = ["leases", id];
    for (let attempt = 0; attempt < 3; attempt++) {
      const entry = await d.retry(() => d.kv.get<unknown>(key));
      const current = _leaseSchema.safeParse(entry.value);
      if (current.success && current.data.expires_at > d.clock.now()) return undefined;
      const sentAt = d.clock.now();
      const token = crypto.randomUUID();
      const result = await d.retry(() =>
        d.kv.atomic()
          .check(entry)
          .set(key, { owner: d.owner, token, expires_at: sentAt + d.leaseMs }, {
            expireIn: d.leaseMs,
          })
          .commit()
      );
      if (result.ok) return new KvLease(d, id, token, result.versionstamp, sentAt);
    }
    return undefined;
  }

  /** The check every fenced write adds: the lease entry as we last wrote it. */
  check(): Deno.AtomicCheck {
    return { key: this.#key, versionstamp: this.#versionstamp };
  }

  /**
   * Reads the entry again after a fenced write failed: true when it is still this claim's
   * (a renewal moved its versionstamp), false when not (the fence is then lost).
   */
  async recheck(): Promise<boolean> {
    if (this.fence.lost) return false;
    const entry = await this.#d.retry(() => this.#d.kv.get<unknown>(this.#key));
    if (this.#ours(entry.value) && entry.versionstamp !== null) {
      this.#versionstamp = entry.versionstamp;
      return true;
    }
    this.#lost("another process holds it now");
    return false;
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.#stop.abort();
    await this.#renewing;
    this.fence.lose(`the lease on connection ${this.#id} was released`);
    const entry = await this.#d.retry(() => this.#d.kv.get<unknown>(this.#key));
    // Only our own claim: after an expiry somebody else may rightly hold it now.
    if (this.#ours(entry.value)) {
      await this.#d.retry(() => this.#d.kv.atomic().check(entry).delete(this.#key).commit());
    }
  }

  #ours(value: unknown): boolean {
    const current = _leaseSchema.safeParse(value);
    return current.success && current.data.owner === this.#d.owner &&
      current.data.token === this.#token;
  }

  #deadlineAfter(sentAt: number): number {
    return sentAt + this.#d.leaseMs - this.#d.leaseMs / 3;
  }

  #lost(why: string): void {
    if (this.fence.lost) return;
    this.#d.logger?.error(
      "Lost the lease on connection {id} in {location}: {why}; stopping its writes (the next " +
        "holder reads again what was not acknowledged).",
      { id: this.#id, location: this.#d.location, why },
    );
    this.fence.lose(`the lease on connection ${this.#id} was lost: ${why}`);
  }

  async #renewLoop(): Promise<void> {
    const { clock, leaseMs } = this.#d;
    for (;;) {
      const wait = Math.max(0, Math.min(leaseMs / 3, this.fence.deadline - clock.now()));
      try {
        await clock.sleep(wait, this.#stop.signal);
      } catch {
        return; // released
      }
      if (this.#stop.signal.aborted) return;
      // Past the deadline on our own clock (a pause, or renewals that kept failing): another
      // process may already hold it, so nothing prepared before may be sent.
      if (clock.now() >= this.fence.deadline) {
        this.#lost("it may have lapsed (not renewed in time on this process's clock)");
        return;
      }
      if (!(await this.#renewOnce())) return;
    }
  }

  /** One renewal; false when the lease is lost (the loop ends). */
  async #renewOnce(): Promise<boolean> {
    const { kv, clock, leaseMs, retry } = this.#d;
    try {
      const entry = await retry(() => kv.get<unknown>(this.#key));
      // Gone (KV's real-time expiry can beat a slow clock) is still ours to take back, as
      // long as nobody else wrote it since; somebody else's is not.
      if (entry.value !== null && !this.#ours(entry.value)) {
        this.#lost("another process holds it now");
        return false;
      }
      if (entry.versionstamp !== null) this.#versionstamp = entry.versionstamp;
      const sentAt = clock.now();
      const result = await retry(() =>
        kv.atomic()
          .check(entry)
          .set(this.#key, {
            owner: this.#d.owner,
            token: this.#token,
            expires_at: sentAt + leaseMs,
          }, { expireIn: leaseMs })
          .commit()
      );
      if (result.ok) {
        this.#versionstamp = result.versionstamp;
        this.fence.setDeadline(this.#deadlineAfter(sentAt));
      }
      // A failed check: somebody wrote the entry between our read and write; the next
      // renewal (a third of a lease later) reads it again and finds out whose it is.
    } catch (error) {
      this.#d.logger?.warn("Cannot renew the lease on connection {id}: {error}", {
        id: this.#id,
        error: errorText(error),
      });
    }
    return true;
  }
}

/** A fence whose writes check the KV lease entry. */
class _KvFence extends FenceState {
  readonly #lease: KvLease;

  constructor(lease: KvLease, id: string, now: () => number) {
    super(id, now);
    this.#lease = lease;
  }

  kvCheck(): Deno.AtomicCheck {
    return this.#lease.check();
  }

  recheck(): Promise<boolean> {
    return this.#lease.recheck();
  }
}
