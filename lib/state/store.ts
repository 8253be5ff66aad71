/**
 * The one interface every state backend (file, memory, Deno KV) implements, and the fence a
 * connection's writer carries into every write. See docs/ARCHITECTURE.md, "One writer per
 * connection".
 *
 * @module
 */
import type { LedgerTable } from "./ledger_table.ts";
import type { ConnectionState } from "./schema.ts";

/**
 * Thrown by a write, or by {@linkcode Fence.assertHeld}, when this process can no longer
 * prove it holds the connection's lease: another process may be writing it now. The writer
 * stops before its next push; what it had prepared is read again by the next holder.
 */
export class FencedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FencedError";
  }
}

/**
 * The proof, carried into every write of one connection, that this process still holds its
 * lease. On the file and memory stores the process lock (or the process itself) is the proof,
 * so only {@linkcode release} ends it; on Deno KV every atomic write of the connection also
 * checks the lease entry (`kvCheck`), and the holder's own clock says when the lease may have
 * lapsed (a pause, a renewal that failed).
 */
export interface Fence {
  /** The connection this fence guards. */
  readonly connectionId: string;
  /**
   * Throws {@linkcode FencedError} when the lease is lost, released, or may have lapsed on
   * this process's clock (less than the safety margin left since the last renewal). Called
   * before every push and every write.
   */
  assertHeld(): void;
  /**
   * Aborted (with a {@linkcode FencedError}) as soon as the lease is lost, released or may
   * have lapsed: requests in flight for the connection are abandoned with it.
   */
  readonly signal: AbortSignal;
  /**
   * Deno KV only: the check every atomic write of the connection adds (the lease entry at the
   * versionstamp of its last renewal), so a write after another process took over fails.
   */
  kvCheck?(): Deno.AtomicCheck;
  /**
   * Deno KV only: after an atomic write failed, reads the lease again. True when it is still
   * this holder's (a renewal moved its versionstamp: retry with a fresh `kvCheck`); false
   * when it is not, and the fence is then lost.
   */
  recheck?(): Promise<boolean>;
}

/** A claim on one connection: while held, no other process writes it. */
export interface Lease {
  /** The fence to carry into every write made under this lease. */
  readonly fence: Fence;
  /** Gives the connection back; the fence is lost from then on. Safe to call twice. */
  release(): Promise<void>;
}

/**
 * What this program last sent Ometria for each member of one connection: the content ledger
 * (see `ledger_table.ts` for the entry's fields). Every change is an increment: appended
 * records of upserted or removed entries, replayed in order on load. Only the connection's
 * writer (holding its lease) appends, and every append carries its fence.
 */
export interface Ledger {
  /** Every entry, replayed. An empty table when the connection has none. */
  load(): Promise<LedgerTable>;
  /**
   * Appends packed records (see {@linkcode LedgerTable.packRecord}) durably; resolves once
   * they are, before the caller pushes what they describe. Throws {@linkcode FencedError}
   * when the fence no longer holds.
   */
  append(records: Uint8Array, fence: Fence): Promise<void>;
  /**
   * Replaces everything appended so far by `table`'s entries, atomically (a crash leaves the
   * old records or the new ones, never a mix). Only its writer may call it, with the table it
   * maintains: no other writer can have appended since it loaded.
   */
  compact(table: LedgerTable, fence: Fence): Promise<void>;
}

/** A webhook event waiting in a connection's inbox (plain data: it travels through Deno KV). */
export interface InboxEntry {
  /** Mailchimp's event type, e.g. `profile`. */
  type: string;
  /** When the receiver took it (our clock), epoch ms. */
  receivedAtMs: number;
  /** Mailchimp's `fired_at` (its clock), epoch ms; null when absent or unreadable. */
  firedAtMs: number | null;
  /** `unsub` or `delete` for an unsubscribe; null otherwise. */
  action: string | null;
  /** Subscriber hashes the event is about. */
  memberIds: string[];
  /**
   * A permanent delete's address, sealed (webhooks/sealed_email.ts), for a connection with
   * `erase_on_permanent_delete` to file its erasure; never the address in clear.
   */
  sealed?: string;
}

/** An inbox entry with its place in the inbox. */
export interface InboxItem {
  /** Increases with every append to one connection's inbox; `remove` takes these. */
  seq: string;
  entry: InboxEntry;
}

/** What happened to an appended entry. */
export type AppendOutcome = "queued" | "duplicate" | "full";

/**
 * The durable queue of webhook events of one connection. `append` resolves only once the
 * entry would survive a crash, which is when the receiver may answer Mailchimp 200. The
 * connection's writer takes entries in order and removes them once their effect is durable.
 */
export interface Inbox {
  /**
   * Appends `entry` unless an entry with `dedupeKey` was appended within the store's
   * de-duplication window (`duplicate`), or the inbox holds its maximum (`full`: answer 503,
   * Mailchimp retries).
   */
  append(entry: InboxEntry, dedupeKey: string): Promise<AppendOutcome>;
  /** The oldest entries, at most `max`, in append order. */
  peek(max: number): Promise<InboxItem[]>;
  /** Removes entries by `seq` (their effect is durable). */
  remove(seqs: readonly string[], fence: Fence): Promise<void>;
  /**
   * Resolves when an entry may have been appended since the call (by any process sharing the
   * store), or when `signal` aborts.
   */
  changed(signal: AbortSignal): Promise<void>;
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
   * With `fence`, the write happens only while the fence holds (else
   * {@linkcode FencedError}). Durable by the next `flush` at the latest.
   */
  update(
    id: string,
    fn: (current: ConnectionState | undefined) => ConnectionState | undefined,
    fence?: Fence,
  ): Promise<ConnectionState | undefined>;
  /** The content ledger of connection `id`. */
  ledger(id: string): Ledger;
  /** The webhook inbox of connection `id`. */
  inbox(id: string): Inbox;
  /**
   * Calls `wake(id)` whenever this process appends an entry to connection `id`'s inbox, until
   * `signal` aborts: the process that received an event claims its connection and drains it.
   * (A holder in another process sees appends through {@linkcode Inbox.changed}.)
   */
  onInboxAppended(wake: (id: string) => void, signal: AbortSignal): void;
  /**
   * The connections whose inbox holds entries (in one cheap read: on Deno KV a listing of the
   * inbox counts): every tick wakes their writers, so entries acknowledged before a crash, or
   * appended by a process that stopped before draining them, are acted on.
   */
  pendingInboxes(): Promise<string[]>;
  /** Makes every earlier `update` durable. */
  flush(): Promise<void>;
  /**
   * Claims a connection so no other process writes it at the same time; undefined when another
   * holder has it. (The file store's whole-file lock already excludes other processes, so
   * its leases only guard against two holders in this process.)
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
