/**
 * The state store for several processes sharing one state (Deno Deploy, or several daemons on
 * one Deno KV): each write goes straight to KV and each connection is claimed with a renewed,
 * expiring lease, so two processes never run the same connection at once.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { type ConnectionState, connectionStateSchema } from "./schema.ts";
import { explainKvConnectError, isKvConnectUrl, kvConnectLocation } from "./kv_connect.ts";
import { InboxSignals } from "./inbox.ts";
import { KvLease } from "./kv_lease.ts";
import { kvInbox } from "./kv_inbox.ts";
import { KvLedger } from "./ledgers.ts";
import { _checkId } from "./memory_store.ts";
import {
  type Fence,
  FencedError,
  type Inbox,
  type Lease,
  type Ledger,
  StateError,
  type StateStore,
} from "./store.ts";
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
   * and its lists must not be skipped for long. The holder stops writing two thirds of a lease
   * after its last renewal (see kv_lease.ts), a third before another process may take over.
   * @default {15000}
   */
  leaseMs?: number | undefined;
  /** Where a lost lease or a failed renewal is reported. */
  logger?: Logger | undefined;
}

/**
 * Connection state in Deno KV under `["connections", id]`, leases under `["leases", id]` (see
 * kv_lease.ts: every write made under a lease checks it), ledgers as in ledgers.ts and webhook
 * inboxes as in kv_inbox.ts. KV's own `expireIn` runs on real time and only tidies up;
 * `expires_at` is what counts. Writes are not coalesced.
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
  #held = new Map<string, KvLease | "pending">();
  #signals = new InboxSignals();
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
    fence?: Fence,
  ): Promise<ConnectionState | undefined> {
    this.#checkOpen();
    const key = ["connections", id];
    // Read, apply, and write only if nobody wrote in between (the versionstamp check);
    // otherwise read again. Deno KV's own docs do counters this way. A fenced write also
    // checks the lease entry, so it cannot land once another process holds the connection.
    for (let attempt = 0; attempt < _UPDATE_ATTEMPTS; attempt++) {
      fence?.assertHeld();
      const entry = await _retryBusy(() => this.#kv.get<unknown>(key));
      const current = entry.value === null ? undefined : this.#validate(id, entry.value);
      const next = fn(current);
      if (next === undefined) return current;
      const copy = connectionStateSchema.parse(next);
      _checkId(id, copy);
      let op = this.#kv.atomic().check(entry);
      if (fence?.kvCheck) op = op.check(fence.kvCheck());
      const result = await _retryBusy(() => op.set(key, copy).commit());
      if (result.ok) return copy;
      if (fence?.recheck && !(await fence.recheck())) {
        throw new FencedError(`Stopped writing: the lease on connection ${id} was lost.`);
      }
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

  flush(): Promise<void> {
    // Every put is already durable.
    return Promise.resolve();
  }

  inbox(id: string): Inbox {
    this.#checkOpen();
    return kvInbox({
      kv: this.#kv,
      clock: this.#clock,
      retry: _retryBusy,
      location: this.location,
      appended: (connection) => this.#signals.appended(connection),
    }, id);
  }

  onInboxAppended(wake: (id: string) => void, signal: AbortSignal): void {
    this.#signals.onAppended(wake, signal);
  }

  async pendingInboxes(): Promise<string[]> {
    this.#checkOpen();
    const counts = await _retryBusy(() =>
      Array.fromAsync(this.#kv.list<Deno.KvU64>({ prefix: ["inbox-count"] }))
    );
    return counts.flatMap((e) => (e.value?.value ?? 0n) > 0n ? [String(e.key[1])] : []);
  }

  async acquire(id: string): Promise<Lease | undefined> {
    this.#checkOpen();
    if (this.#held.has(id)) return undefined;
    this.#held.set(id, "pending");
    let lease: KvLease | undefined;
    try {
      lease = await KvLease.acquire({
        kv: this.#kv,
        clock: this.#clock,
        leaseMs: this.#leaseMs,
        owner: this.#owner,
        retry: _retryBusy,
        logger: this.#logger,
        location: this.location,
      }, id);
    } finally {
      if (lease) this.#held.set(id, lease);
      else this.#held.delete(id);
    }
    if (!lease) return undefined;
    const held = lease;
    return {
      fence: held.fence,
      release: async () => {
        if (this.#held.get(id) === held) this.#held.delete(id);
        await held.release();
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, held] of [...this.#held]) {
      this.#held.delete(id);
      if (held !== "pending") await held.release().catch(() => {});
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
