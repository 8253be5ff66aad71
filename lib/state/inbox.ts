/**
 * Webhook inboxes shared by the stores: the de-duplication window, the limits, and the
 * in-memory inbox of {@linkcode MemoryStore}. The file store's inbox is `file_inbox.ts`, Deno
 * KV's `kv_inbox.ts`; all three satisfy the {@linkcode Inbox} interface of store.ts and run
 * the same test cases.
 *
 * @module
 */
import type { Clock } from "../clock/clock.ts";
import type { AppendOutcome, Fence, Inbox, InboxEntry, InboxItem } from "./store.ts";

/** How long a delivery is remembered for de-duplication (Mailchimp retries for 75 minutes). */
export const DEDUPE_WINDOW_MS = 90 * 60_000;

/**
 * Entries one connection's inbox holds at most: beyond, the receiver answers 503 and
 * Mailchimp retries later. Events only name members to read again, and polling reads every
 * change anyway, so a bounded backlog loses nothing while keeping memory and state small.
 */
export const INBOX_CAPACITY = 1000;

/**
 * Remembers keys for a window on a clock, with at most `max` keys (oldest forgotten first),
 * so a flood of distinct events cannot grow memory without bound.
 */
export class Deduper {
  readonly #clock: Clock;
  readonly #windowMs: number;
  readonly #max: number;
  /** Key → when it stops counting; Map order is insertion order, oldest first. */
  readonly #seen = new Map<string, number>();

  constructor(clock: Clock, options: { windowMs?: number; max?: number } = {}) {
    this.#clock = clock;
    this.#windowMs = options.windowMs ?? DEDUPE_WINDOW_MS;
    this.#max = options.max ?? 100_000;
  }

  /** True the first time `key` is seen within the window (and remembers it), else false. */
  first(key: string): boolean {
    const now = this.#clock.now();
    for (const [k, until] of this.#seen) {
      if (until > now && this.#seen.size < this.#max) break;
      this.#seen.delete(k);
    }
    const until = this.#seen.get(key);
    if (until !== undefined && until > now) return false;
    this.#seen.delete(key);
    this.#seen.set(key, now + this.#windowMs);
    return true;
  }

  /** Forgets `key` (an entry that could not be queued may be delivered again). */
  forget(key: string): void {
    this.#seen.delete(key);
  }
}

/** Waiters for appends, per connection, woken all at once. */
export class InboxSignals {
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #wakers = new Set<(id: string) => void>();

  /** Wakes everyone waiting on `id`, and every registered waker. */
  appended(id: string): void {
    const waiting = this.#waiters.get(id);
    if (waiting) {
      this.#waiters.delete(id);
      for (const wake of waiting) wake();
    }
    for (const wake of this.#wakers) wake(id);
  }

  /** Resolves at the next append to `id` (or when `signal` aborts). */
  next(id: string, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        this.#waiters.get(id)?.delete(done);
        resolve();
      };
      let set = this.#waiters.get(id);
      if (!set) this.#waiters.set(id, set = new Set());
      set.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Calls `wake(id)` at every append until `signal` aborts. */
  onAppended(wake: (id: string) => void, signal: AbortSignal): void {
    if (signal.aborted) return;
    this.#wakers.add(wake);
    signal.addEventListener("abort", () => this.#wakers.delete(wake), { once: true });
  }
}

/** A sequence number that sorts as text: zero-padded. */
export function inboxSeq(n: number): string {
  return String(n).padStart(12, "0");
}

/**
 * Inboxes that live and die with the process ({@linkcode MemoryStore}'s), with the same
 * limits and de-duplication as the durable ones.
 */
export class MemoryInboxes {
  readonly #items = new Map<string, InboxItem[]>();
  readonly #dedupe: Deduper;
  readonly #signals = new InboxSignals();
  readonly #capacity: number;
  #seq = 0;

  constructor(clock: Clock, options: { capacity?: number } = {}) {
    this.#dedupe = new Deduper(clock);
    this.#capacity = options.capacity ?? INBOX_CAPACITY;
  }

  /** The inbox of connection `id`. */
  inbox(id: string): Inbox {
    const items = () => {
      let list = this.#items.get(id);
      if (!list) this.#items.set(id, list = []);
      return list;
    };
    return {
      append: (entry: InboxEntry, dedupeKey: string): Promise<AppendOutcome> => {
        const list = items();
        const key = `${id}\u0000${dedupeKey}`;
        // A delivery already taken is a duplicate even when the inbox is full (200, not 503).
        if (!this.#dedupe.first(key)) return Promise.resolve("duplicate");
        if (list.length >= this.#capacity) {
          this.#dedupe.forget(key); // not queued: its retry may be
          return Promise.resolve("full");
        }
        list.push({ seq: inboxSeq(++this.#seq), entry: structuredClone(entry) });
        this.#signals.appended(id);
        return Promise.resolve("queued");
      },
      peek: (max: number) =>
        Promise.resolve(items().slice(0, max).map((item) => structuredClone(item))),
      remove: (seqs: readonly string[], fence: Fence) =>
        Promise.try(() => {
          fence.assertHeld();
          const gone = new Set(seqs);
          this.#items.set(id, items().filter((item) => !gone.has(item.seq)));
        }),
      changed: (signal: AbortSignal) =>
        items().length > 0 ? Promise.resolve() : this.#signals.next(id, signal),
    };
  }

  /** See `StateStore.onInboxAppended`. */
  onAppended(wake: (id: string) => void, signal: AbortSignal): void {
    this.#signals.onAppended(wake, signal);
  }

  /** See `StateStore.pendingInboxes`. */
  pending(): string[] {
    return [...this.#items].flatMap(([id, list]) => list.length > 0 ? [id] : []);
  }
}
