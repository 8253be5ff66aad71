/**
 * A state store that lives and dies with the process: for tests, simulations and runs that
 * may not touch the disk.
 *
 * @module
 */
import { type Clock, systemClock } from "../clock/clock.ts";
import { MemoryInboxes } from "./inbox.ts";
import { LocalLeases } from "./leases.ts";
import { type ConnectionState, connectionStateSchema } from "./schema.ts";
import { MemoryLedger } from "./ledgers.ts";
import type { Fence, Inbox, Lease, Ledger, StateStore } from "./store.ts";

/**
 * Keeps connection state in a map. Nothing survives a restart, and no other process can see
 * it, so leases only stop one connection from running twice in this process. Values are
 * validated on `put` and copied both ways, so callers never share objects with the store.
 */
export class MemoryStore implements StateStore {
  readonly kind = "memory" as const;
  readonly location = "memory";
  #connections = new Map<string, ConnectionState>();
  #leases = new LocalLeases();
  #ledgers = new Map<string, MemoryLedger>();
  #inboxes: MemoryInboxes;

  /** `clock` times the inboxes' de-duplication window. @default {systemClock} */
  constructor(options: { clock?: Clock } = {}) {
    this.#inboxes = new MemoryInboxes(options.clock ?? systemClock);
  }

  get(id: string): Promise<ConnectionState | undefined> {
    const state = this.#connections.get(id);
    return Promise.resolve(state === undefined ? undefined : structuredClone(state));
  }

  list(): Promise<ConnectionState[]> {
    return Promise.resolve(
      [...this.#connections.values()]
        .sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
        .map((s) => structuredClone(s)),
    );
  }

  update(
    id: string,
    fn: (current: ConnectionState | undefined) => ConnectionState | undefined,
    fence?: Fence,
  ): Promise<ConnectionState | undefined> {
    // Promise.try: a validation error rejects the promise instead of throwing at the call.
    return Promise.try(() => {
      fence?.assertHeld();
      const current = this.#connections.get(id);
      const next = fn(current === undefined ? undefined : structuredClone(current));
      if (next === undefined) return current === undefined ? undefined : structuredClone(current);
      // parse() both validates and copies, like a file round trip would.
      const copy = connectionStateSchema.parse(next);
      _checkId(id, copy);
      this.#connections.set(id, copy);
      return structuredClone(copy);
    });
  }

  ledger(id: string): Ledger {
    let ledger = this.#ledgers.get(id);
    if (!ledger) this.#ledgers.set(id, ledger = new MemoryLedger());
    return ledger;
  }

  inbox(id: string): Inbox {
    return this.#inboxes.inbox(id);
  }

  onInboxAppended(wake: (id: string) => void, signal: AbortSignal): void {
    this.#inboxes.onAppended(wake, signal);
  }

  pendingInboxes(): Promise<string[]> {
    return Promise.resolve(this.#inboxes.pending());
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  acquire(id: string): Promise<Lease | undefined> {
    return Promise.resolve(this.#leases.acquire(id));
  }

  close(): Promise<void> {
    this.#leases.clear();
    return Promise.resolve();
  }
}

/** Refuses a state whose id is not the key it is stored under. Shared by the stores. */
export function _checkId(id: string, state: ConnectionState): void {
  if (state.id !== id) {
    throw new TypeError(`Cannot store the state of '${state.id}' as connection '${id}'`);
  }
}
