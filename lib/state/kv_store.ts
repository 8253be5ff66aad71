/**
 * The state store for several processes sharing one state (Deno Deploy, or several daemons on
 * one Deno KV): each write goes straight to KV and each connection is claimed with a renewed,
 * expiring lease, so two processes never run the same connection at once.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { z } from "zod";
import type { Clock } from "../clock/clock.ts";
import { type ConnectionState, connectionStateSchema } from "./schema.ts";
import { explainKvConnectError, isKvConnectUrl, kvConnectLocation } from "./kv_connect.ts";
import { KvLedger } from "./ledgers.ts";
import { _checkId } from "./memory_store.ts";
import { unfenced } from "./fence.ts";
import { type Inbox, type Lease, type Ledger, StateError, type StateStore } from "./store.ts";
import { errorText, zodProblems } from "../log/error_text.ts";

// Conflicting writers are rare (a tick's run and the freshness evaluation of one
// connection); this many lost races in a row means something is wrong.
const _UPDATE_ATTEMPTS = 50;

/**
 * How long a lease lasts without renewal, in milliseconds: a killed holder blocks its
 * connections for at most this long. It is renewed every third of this (5 s) while the run
 * lives. Processes sharing one database compare `expires_at` on their own clocks, so their
 * clocks must agree to well within this (NTP does).
 */
export const DEFAULT_LEASE_MS = 15_000;

/** Options of {@linkcode KvStore.open}. */
export interface KvStoreOptions {
  /** Decides when leases expire and when they are renewed. */
  clock: Clock;
  /**
   * How long a lease lasts without renewal: how long a connection stays blocked after its
   * holder died. The holder renews it every third of this. Short, because a holder that is
   * killed (Deno Deploy kills an isolate 5 s after its SIGINT) cannot give its leases back,
   * and its lists must not be skipped for long; a third of it between renewals still leaves
   * two missed renewals before another process may take over.
   * @default {15000}
   */
  leaseMs?: number | undefined;
  /** Where a lost lease or a failed renewal is reported. */
  logger?: Logger | undefined;
}

const _leaseSchema = z.object({ owner: z.string(), expires_at: z.number() });
type _LeaseValue = z.infer<typeof _leaseSchema>;

interface _Held {
  stop: AbortController;
  renewing: Promise<void>;
}

/**
 * Connection state in Deno KV under `["connections", id]`, leases under `["leases", id]`. A
 * lease records its owner and `expires_at` on the store's clock; it is taken with an atomic
 * versionstamp check, so of two processes racing for it exactly one wins, and an expired
 * lease (its holder stopped renewing) can be taken over. KV's own `expireIn` runs on real
 * time and only tidies up; `expires_at` is what counts. Writes are not coalesced.
 */
export class KvStore implements StateStore {
  readonly kind = "kv" as const;
  readonly location: string;
  #kv: Deno.Kv;
  #clock: Clock;
  #leaseMs: number;
  #logger: Logger | undefined;
  // Distinguishes this store's leases from those of any other process or store.
  #owner = crypto.randomUUID();
  // A claim is entered before its first await, so that two acquire() calls in this process
  // cannot both see the lease free.
  #held = new Map<string, _Held | "pending">();
  #ledgers = new Map<string, KvLedger>();
  #closed = false;

  private constructor(kv: Deno.Kv, location: string, options: KvStoreOptions) {
    this.#kv = kv;
    this.location = location;
    this.#clock = options.clock;
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.#logger = options.logger;
  }

  /**
   * Opens the Deno KV database at `path` (a file, or an `https://` KV Connect URL with the
   * token in `DENO_KV_ACCESS_TOKEN`), or the platform's default one (on Deno Deploy, the
   * project's database) when `path` is undefined. Throws {@linkcode StateError} when it
   * cannot be opened.
   */
  static async open(path: string | undefined, options: KvStoreOptions): Promise<KvStore> {
    const remote = path !== undefined && isKvConnectUrl(path);
    const location = path === undefined
      ? "the default Deno KV database"
      : remote
      ? `remote Deno KV ${kvConnectLocation(path)}`
      : `Deno KV ${path}`;
    if (options.leaseMs !== undefined && !(options.leaseMs > 0)) {
      throw new RangeError(`Cannot use a lease of ${options.leaseMs} ms: it must be > 0`);
    }
    try {
      return new KvStore(await Deno.openKv(path), location, options);
    } catch (error) {
      // A remote server's answer is copied into Deno's error (and its cause), so for remote
      // databases neither is kept: the explanation is all that is shown.
      if (remote) throw new StateError(explainKvConnectError(kvConnectLocation(path), error));
      throw new StateError(`Cannot open ${location}: ${errorText(error)}.`, { cause: error });
    }
  }

  async get(id: string): Promise<ConnectionState | undefined> {
    this.#checkOpen();
    const entry = await _retryBusy(() => this.#kv.get<unknown>(["connections", id]));
    return entry.value === null ? undefined : this.#validate(id, entry.value);
  }

  async list(): Promise<ConnectionState[]> {
    this.#checkOpen();
    const entries = await _retryBusy(() =>
      Array.fromAsync(this.#kv.list<unknown>({ prefix: ["connections"] }))
    );
    return entries.map((entry) => this.#validate(String(entry.key[1]), entry.value));
  }

  async update(
    id: string,
    fn: (current: ConnectionState | undefined) => ConnectionState | undefined,
  ): Promise<ConnectionState | undefined> {
    this.#checkOpen();
    const key = ["connections", id];
    // Read, apply, and write only if nobody wrote in between (the versionstamp check);
    // otherwise read again. Deno KV's own docs do counters this way.
    for (let attempt = 0; attempt < _UPDATE_ATTEMPTS; attempt++) {
      const entry = await _retryBusy(() => this.#kv.get<unknown>(key));
      const current = entry.value === null ? undefined : this.#validate(id, entry.value);
      const next = fn(current);
      if (next === undefined) return current;
      const copy = connectionStateSchema.parse(next);
      _checkId(id, copy);
      const result = await _retryBusy(() => this.#kv.atomic().check(entry).set(key, copy).commit());
      if (result.ok) return copy;
    }
    throw new StateError(
      `Cannot update connection ${id} in ${this.location}: it changed under every one of ` +
        `${_UPDATE_ATTEMPTS} attempts (too many processes writing it at once?)`,
    );
  }

  ledger(id: string): Ledger {
    this.#checkOpen();
    // One KvLedger per connection: it knows where the connection's next chunk goes.
    let ledger = this.#ledgers.get(id);
    if (!ledger) this.#ledgers.set(id, ledger = new KvLedger(this.#kv, id, _retryBusy));
    return ledger;
  }

  // Stub for the lead (the inbox is theirs): drop with its real implementation.
  inbox(_id: string): Inbox {
    throw new Error("not implemented");
  }

  // Stub for the lead (the inbox is theirs): drop with its real implementation.
  onInboxAppended(_wake: (id: string) => void, _signal: AbortSignal): void {}

  flush(): Promise<void> {
    // Every put is already durable.
    return Promise.resolve();
  }

  async acquire(id: string): Promise<Lease | undefined> {
    this.#checkOpen();
    if (this.#held.has(id)) return undefined;
    this.#held.set(id, "pending");
    try {
      const key = ["leases", id];
      // A lost race is retried once or twice in case the winner let go at once.
      for (let attempt = 0; attempt < 3; attempt++) {
        const entry = await _retryBusy(() => this.#kv.get<unknown>(key));
        const current = _leaseSchema.safeParse(entry.value);
        if (current.success && current.data.expires_at > this.#clock.now()) return undefined;
        const result = await _retryBusy(() =>
          this.#kv.atomic()
            .check(entry)
            .set(key, this.#leaseValue(), { expireIn: this.#leaseMs })
            .commit()
        );
        if (result.ok) {
          const stop = new AbortController();
          const held: _Held = { stop, renewing: this.#renew(id, stop.signal) };
          this.#held.set(id, held);
          return this.#lease(id, held);
        }
      }
      return undefined;
    } finally {
      if (this.#held.get(id) === "pending") this.#held.delete(id);
    }
  }

  /**
   * Queues `value` on this database's queue (`Deno.Kv.enqueue`) unless `dedupeKey` was queued
   * within `windowMs` (on the store's clock): the check and the enqueue are one atomic write,
   * so two isolates receiving the same webhook delivery queue it once. Resolves once the
   * value is durably queued (true) or found to be a duplicate (false). Used by the webhook
   * receiver, which answers Mailchimp only after this.
   */
  async enqueueOnce(dedupeKey: string, value: unknown, windowMs: number): Promise<boolean> {
    this.#checkOpen();
    const key = ["webhook-seen", dedupeKey];
    for (let attempt = 0; attempt < _UPDATE_ATTEMPTS; attempt++) {
      const entry = await _retryBusy(() => this.#kv.get<{ until: number }>(key));
      const now = this.#clock.now();
      if (entry.value !== null && entry.value.until > now) return false;
      const result = await _retryBusy(() =>
        this.#kv.atomic().check(entry)
          .set(key, { until: now + windowMs }, { expireIn: Math.max(1, windowMs) })
          .enqueue(value)
          .commit()
      );
      if (result.ok) return true;
    }
    throw new StateError(`Cannot queue a webhook event in ${this.location}: too many conflicts.`);
  }

  /**
   * Hands every value of this database's queue to `handler` (`Deno.Kv.listenQueue`); a
   * handler that throws gets the value again later (Deno KV's retries). Resolves when the
   * store is closed. One listener per store.
   */
  listenQueue(handler: (value: unknown) => Promise<void>): Promise<void> {
    this.#checkOpen();
    return this.#kv.listenQueue(handler);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, held] of [...this.#held]) {
      if (held !== "pending") await this.#release(id, held).catch(() => {});
    }
    this.#kv.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error(`Cannot use ${this.location}: it is closed`);
  }

  #validate(id: string, value: unknown): ConnectionState {
    const parsed = connectionStateSchema.safeParse(value);
    if (parsed.success) return parsed.data;
    throw new StateError(
      `The state of connection ${id} in ${this.location} is damaged: ${
        zodProblems(parsed.error)
      }. Run "reset ${id}" to start that connection with a full sync.`,
    );
  }

  #leaseValue(): _LeaseValue {
    return { owner: this.#owner, expires_at: this.#clock.now() + this.#leaseMs };
  }

  #lease(id: string, held: _Held): Lease {
    let released = false;
    return {
      // Stub for the lead (fenced leases are theirs): drop with its real implementation.
      fence: unfenced(id),
      release: async () => {
        if (released || this.#held.get(id) !== held) return;
        released = true;
        await this.#release(id, held);
      },
    };
  }

  async #release(id: string, held: _Held): Promise<void> {
    held.stop.abort();
    await held.renewing;
    this.#held.delete(id);
    const key = ["leases", id];
    const entry = await _retryBusy(() => this.#kv.get<unknown>(key));
    const current = _leaseSchema.safeParse(entry.value);
    // Only our own lease: after an expiry somebody else may rightly hold it now.
    if (current.success && current.data.owner === this.#owner) {
      await _retryBusy(() => this.#kv.atomic().check(entry).delete(key).commit());
    }
  }

  async #renew(id: string, signal: AbortSignal): Promise<void> {
    const key = ["leases", id];
    for (;;) {
      try {
        await this.#clock.sleep(this.#leaseMs / 3, signal);
      } catch {
        return; // released
      }
      try {
        const entry = await _retryBusy(() => this.#kv.get<unknown>(key));
        const current = _leaseSchema.safeParse(entry.value);
        // Gone (KV's real-time expiry can beat a slow clock) is still ours to take back;
        // somebody else's is not.
        if (entry.value !== null && (!current.success || current.data.owner !== this.#owner)) {
          this.#logger?.error(
            "Lost the lease on connection {id} in {location}: another process may run it too.",
            { id, location: this.location },
          );
          return;
        }
        await _retryBusy(() =>
          this.#kv.atomic()
            .check(entry)
            .set(key, this.#leaseValue(), { expireIn: this.#leaseMs })
            .commit()
        );
      } catch (error) {
        // The next renewal, a third of a lease later, tries again.
        this.#logger?.warn("Cannot renew the lease on connection {id}: {error}", {
          id,
          error: errorText(error),
        });
      }
    }
  }
}

// A local (SQLite) database shared by several connections answers "database is locked" when
// two write at once instead of waiting (Deno KV sets no busy timeout). Waiting a few real
// milliseconds is what SQLite's own busy timeout would do: it is about another writer's file
// lock, not about program time, so it does not go through the clock (a fake clock would never
// end the wait). Deno Deploy's KV never answers this.
const _BUSY_GIVE_UP_MS = 5_000;

async function _retryBusy<T>(op: () => Promise<T>): Promise<T> {
  let waited = 0;
  for (let attempt = 0;; attempt++) {
    try {
      return await op();
    } catch (error) {
      if (waited >= _BUSY_GIVE_UP_MS || !/database is (locked|busy)/i.test(errorText(error))) {
        throw error;
      }
    }
    const ms = Math.min(2 ** attempt, 50) * (0.5 + Math.random());
    await new Promise((resolve) => setTimeout(resolve, ms));
    waited += ms;
  }
}
