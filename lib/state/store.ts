/**
 * The one interface every state backend (file, memory, Deno KV) implements.
 *
 * @module
 */
import type { IdSet } from "./id_set.ts";
import type { ConnectionState } from "./schema.ts";

/** A claim on one connection: while held, no other process runs it. */
export interface Lease {
  /** Gives the connection back. Safe to call twice. */
  release(): Promise<void>;
}

/**
 * The ids this program has pushed to Ometria for one connection, kept so that reconciliation
 * can find orphans: ids pushed before and absent from Mailchimp now. Ids are recorded before
 * they are pushed (write-ahead), so a crash can only leave an id that never reached Ometria
 * in the ledger, never the other way round; opting out such an id is harmless.
 */
export interface Ledger {
  /** Records `ids` durably; resolves before the caller pushes them. */
  add(ids: readonly string[]): Promise<void>;
  /** Every id recorded, as a compact sorted set. */
  load(): Promise<IdSet>;
  /** Replaces the ledger with exactly `ids`, atomically (after a reconciliation). */
  replace(ids: IdSet): Promise<void>;
}

/**
 * Where connection state lives. A connection's state changes only through `update` with
 * the pure transition of `transitions.ts`. Updates may be coalesced in memory (a lost write
 * only makes a restarted run resend acknowledged members, which is safe); `flush` makes every
 * earlier update durable, and a written document is always complete and valid.
 */
export interface StateStore {
  /** `file`, `memory` or `kv`. */
  readonly kind: "file" | "memory" | "kv";
  /** Human-readable location, e.g. the file path (for messages). */
  readonly location: string;
  /** The state of one connection, or undefined if it never ran. */
  get(id: string): Promise<ConnectionState | undefined>;
  /** Every connection's state. */
  list(): Promise<ConnectionState[]>;
  /**
   * Replaces connection `id`'s state with `fn(current)` atomically, and returns the new state
   * (the current one when `fn` returns undefined, which changes nothing). `fn` must be pure:
   * a store shared by several processes calls it again when another writer got there first.
   * Durable by the next `flush` at the latest.
   */
  update(
    id: string,
    fn: (current: ConnectionState | undefined) => ConnectionState | undefined,
  ): Promise<ConnectionState | undefined>;
  /** The ledger of ids pushed for connection `id`. */
  ledger(id: string): Ledger;
  /** Makes every earlier `update` durable. */
  flush(): Promise<void>;
  /**
   * Claims a connection so no other process runs it at the same time; undefined when another
   * process holds it. (The file store's whole-file lock already excludes other processes, so
   * its leases only guard against running one connection twice in this process.)
   */
  acquire(id: string): Promise<Lease | undefined>;
  /** Flushes and releases everything (locks, handles). */
  close(): Promise<void>;
}

/** A condition the program reports with exit code 2: the state cannot be used as it is. */
export class StateError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StateError";
  }
}
