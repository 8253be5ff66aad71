/**
 * The one interface every state backend (file, memory, Deno KV) implements.
 *
 * @module
 */
import type { ConnectionState } from "./schema.ts";

/** A claim on one connection: while held, no other process runs it. */
export interface Lease {
  /** Gives the connection back. Safe to call twice. */
  release(): Promise<void>;
}

/**
 * Where connection state lives. `put` may be coalesced in memory (a lost write only makes a
 * restarted run resend acknowledged members, which is safe); `flush` makes every earlier
 * `put` durable, and a written document is always complete and valid.
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
  /** Records a connection's state (durable by the next `flush` at the latest). */
  put(state: ConnectionState): Promise<void>;
  /** Forgets a connection's state entirely. */
  delete(id: string): Promise<void>;
  /** Makes every earlier `put` durable. */
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
