/**
 * A state store that lives and dies with the process: for tests, simulations and runs that
 * may not touch the disk.
 *
 * @module
 */
import { type ConnectionState, connectionStateSchema } from "./schema.ts";
import { MemoryLedger } from "./ledgers.ts";
import { unfenced } from "./fence.ts";
import type { Inbox, Lease, Ledger, StateStore } from "./store.ts";

/**
 * Keeps connection state in a map. Nothing survives a restart, and no other process can see
 * it, so leases only stop one connection from running twice in this process. Values are
 * validated on `put` and copied both ways, so callers never share objects with the store.
 */
export class MemoryStore implements StateStore {
  readonly kind = "memory" as const;
  readonly location = "memory";
  #connections = new Map<string, ConnectionState>();
  #held = new Map<string, symbol>();
  #ledgers = new Map<string, MemoryLedger>();

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
  ): Promise<ConnectionState | undefined> {
    // Promise.try: a validation error rejects the promise instead of throwing at the call.
    return Promise.try(() => {
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

  // Stub for the lead (the inbox is theirs): drop with its real implementation.
  inbox(_id: string): Inbox {
    throw new Error("not implemented");
  }

  // Stub for the lead (the inbox is theirs): drop with its real implementation.
  onInboxAppended(_wake: (id: string) => void, _signal: AbortSignal): void {}

  flush(): Promise<void> {
    return Promise.resolve();
  }

  acquire(id: string): Promise<Lease | undefined> {
    return Promise.resolve(_acquireLocal(this.#held, id));
  }

  close(): Promise<void> {
    this.#held.clear();
    return Promise.resolve();
  }
}

/**
 * Claims `id` in a set of connections held by this process; undefined when it is already
 * held. Shared by the stores whose only competitor is this process itself.
 */
export function _acquireLocal(held: Map<string, symbol>, id: string): Lease | undefined {
  if (held.has(id)) return undefined;
  // A token, so that a stale lease released late cannot free a later holder's claim.
  const token = Symbol(id);
  held.set(id, token);
  return {
    // Stub for the lead (fenced leases are theirs): drop with its real implementation.
    fence: unfenced(id),
    release(): Promise<void> {
      if (held.get(id) === token) held.delete(id);
      return Promise.resolve();
    },
  };
}

/** Refuses a state whose id is not the key it is stored under. Shared by the stores. */
export function _checkId(id: string, state: ConnectionState): void {
  if (state.id !== id) {
    throw new TypeError(`Cannot store the state of '${state.id}' as connection '${id}'`);
  }
}
