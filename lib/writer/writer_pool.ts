/**
 * The writers of one process: at most one {@linkcode ConnectionWriter} per connection, made
 * when the process takes the connection's lease and dropped when it gives it back. Two kinds
 * of work enter a writer:
 *
 * - exclusive jobs (a polling run, a reconciliation, a reset, an erasure), one at a time per
 *   connection, in the order they were asked for;
 * - the connection's webhook inbox, drained beside whatever job runs, so an event is acted on
 *   within seconds even during a long run, and through the same gate as the run's pushes.
 *
 * A writer lives while a job runs or its inbox holds entries. When both are done it releases
 * the lease, then looks at the inbox once more: an entry appended while it was letting go
 * (whose own wake-up found the lease still taken) is picked up by claiming again, so no entry
 * is stranded.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { errorText } from "../log/error_text.ts";
import type { RecordsSink } from "../engine/ports.ts";
import { FencedError, type InboxItem, type StateStore } from "../state/store.ts";
import { ConnectionWriter } from "./connection_writer.ts";

/** Inbox entries handed to one `drain` call at most. */
const _DRAIN_BATCH = 50;
/** Waits between failed drains before the pool leaves the inbox to the next wake-up. */
const _DRAIN_BACKOFF_MS = [1_000, 5_000, 30_000];

/**
 * Acts on inbox entries with a connection's writer and removes the entries it is done with;
 * resolves with how many it removed (none counts as a failure, so an entry that is never
 * removed cannot keep the drainer busy). Throws when the APIs fail: the entries stay.
 */
export type InboxDrain = (
  writer: ConnectionWriter,
  items: InboxItem[],
  signal: AbortSignal,
) => Promise<number>;

/** Options of {@linkcode WriterPool}. */
export interface WriterPoolOptions {
  store: StateStore;
  clock: Clock;
  logger: Logger;
  /** The Ometria client connection `id` pushes through; undefined for an unknown one. */
  sinkFor: (id: string) => { listId: string; sink: RecordsSink } | undefined;
  /** Acts on a connection's inbox entries (see `engine/inbox_events.ts`). */
  drain: InboxDrain;
  /** Aborted when the process stops: drains end, jobs see it through their own signals. */
  signal?: AbortSignal | undefined;
  /** Send unchanged records too (`--repush`). @default {false} */
  repush?: boolean;
}

interface _Slot {
  writer: ConnectionWriter;
  /** Exclusive jobs of this writer, chained so they run one at a time. */
  chain: Promise<unknown>;
  jobs: number;
  drainer: Promise<void> | undefined;
  /** Aborted to wake a drainer that waits for the inbox (a job ended, the pool closes). */
  nudge: AbortController;
  /** Resolves once the slot has let go of its lease. */
  released: Promise<void> | undefined;
}

/** What an exclusive job got: its value, or `held` when another process holds the lease. */
export type Exclusive<T> = { held: false; value: T } | { held: true };

/** The writers of this process. */
export class WriterPool {
  readonly #o: WriterPoolOptions;
  readonly #slots = new Map<string, _Slot>();
  /** Claims under way, so two callers never take one lease twice. */
  readonly #claiming = new Map<string, Promise<_Slot | undefined>>();
  /** Wake-ups on their way to a claim (so `idle` waits for an event just appended). */
  readonly #waking = new Set<Promise<void>>();
  /** Aborted when the process stops (its signal): drains in flight stop between requests. */
  readonly #closing = new AbortController();
  /** Aborted by `close`: no new work, no more waits for a retry; drains in flight finish. */
  readonly #winding = new AbortController();
  #closed = false;

  constructor(options: WriterPoolOptions) {
    this.#o = options;
    options.signal?.addEventListener("abort", () => this.#closing.abort(), { once: true });
    options.store.onInboxAppended((id) => this.wake(id), this.#winding.signal);
    this.#closing.signal.addEventListener("abort", () => this.#winding.abort(), { once: true });
  }

  /**
   * Runs `job` with connection `id`'s writer, after the exclusive jobs asked for before it,
   * claiming the lease when this process does not hold it. `{held: true}` when another
   * process holds it. The writer's fence is lost when the lease is: the job then fails with
   * {@linkcode FencedError} at its next write.
   */
  async exclusive<T>(
    id: string,
    job: (writer: ConnectionWriter) => Promise<T>,
  ): Promise<Exclusive<T>> {
    const slot = await this.#claim(id);
    if (slot === undefined) return { held: true };
    slot.jobs++;
    this.#startDrainer(id, slot);
    const run = slot.chain.then(() => job(slot.writer));
    slot.chain = run.catch(() => {});
    try {
      return { held: false, value: await run };
    } finally {
      slot.jobs--;
      this.#nudge(slot);
      // When nothing else needs the writer, the connection is free again once this returns:
      // the drainer, woken, finds the inbox empty and ends, and the lease goes back.
      if (slot.jobs === 0) await slot.drainer;
      this.#releaseIfIdle(id, slot);
      await slot.released;
    }
  }

  /**
   * Connection `id`'s inbox has entries: its writer drains them, claiming the lease when this
   * process does not hold it (when another does, that holder drains them).
   */
  wake(id: string): void {
    // Stopping (the process's signal) or closed: what is left waits for the next start.
    if (this.#closed || this.#winding.signal.aborted || this.#o.sinkFor(id) === undefined) return;
    const slot = this.#slots.get(id);
    if (slot && slot.released === undefined) {
      this.#startDrainer(id, slot);
      return;
    }
    const waking = (async () => {
      await slot?.released;
      const claimed = await this.#claim(id).catch((error) => {
        this.#o.logger.warn("Cannot claim {connection} for its webhook events: {error}", {
          connection: id,
          error: errorText(error),
        });
        return undefined;
      });
      if (claimed) {
        this.#startDrainer(id, claimed);
        this.#releaseIfIdle(id, claimed);
      }
    })();
    this.#waking.add(waking);
    void waking.finally(() => this.#waking.delete(waking));
  }

  /** Resolves when no writer is draining, running a job or claiming (tests, shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      const pending: Promise<unknown>[] = [...this.#claiming.values(), ...this.#waking];
      for (const s of this.#slots.values()) {
        if (s.jobs > 0) pending.push(s.chain);
        if (s.drainer) pending.push(s.drainer);
        if (s.released) pending.push(s.released);
      }
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  /**
   * Takes no new work, lets the jobs and drains under way finish (a drain goes on until its
   * inbox is empty, or fails), and releases every lease.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#winding.abort();
    for (const slot of this.#slots.values()) this.#nudge(slot);
    await this.idle();
  }

  async #claim(id: string): Promise<_Slot | undefined> {
    const slot = this.#slots.get(id);
    if (slot && slot.released === undefined) return slot;
    await slot?.released;
    const pending = this.#claiming.get(id);
    if (pending) return await pending;
    const claim = (async (): Promise<_Slot | undefined> => {
      const wired = this.#o.sinkFor(id);
      if (wired === undefined) throw new RangeError(`Cannot write '${id}': no such connection`);
      const lease = await this.#o.store.acquire(id);
      if (lease === undefined) return undefined;
      const writer = new ConnectionWriter({
        connection: { id, listId: wired.listId },
        store: this.#o.store,
        lease,
        sink: wired.sink,
        clock: this.#o.clock,
        logger: this.#o.logger,
        repush: this.#o.repush ?? false,
      });
      const made: _Slot = {
        writer,
        chain: Promise.resolve(),
        jobs: 0,
        drainer: undefined,
        nudge: new AbortController(),
        released: undefined,
      };
      this.#slots.set(id, made);
      return made;
    })();
    this.#claiming.set(id, claim);
    try {
      return await claim;
    } finally {
      this.#claiming.delete(id);
    }
  }

  #startDrainer(id: string, slot: _Slot): void {
    if (slot.drainer !== undefined || slot.released !== undefined) return;
    slot.drainer = this.#drain(slot).finally(() => {
      slot.drainer = undefined;
      this.#releaseIfIdle(id, slot);
    });
  }

  /** Drains the inbox while anything is in it or a job runs (a job may be followed by events). */
  async #drain(slot: _Slot): Promise<void> {
    const { writer } = slot;
    let failures = 0;
    for (;;) {
      if (this.#closing.signal.aborted || writer.fence.signal.aborted) return;
      let items: InboxItem[];
      try {
        items = await writer.inbox.peek(_DRAIN_BATCH);
        if (items.length > 0) {
          const signal = AbortSignal.any([this.#closing.signal, writer.fence.signal]);
          const removed = await this.#o.drain(writer, items, signal);
          if (removed === 0) throw new Error("no entry of the inbox could be acted on");
          failures = 0;
          continue;
        }
      } catch (error) {
        if (error instanceof FencedError || writer.fence.signal.aborted) return;
        const wait = _DRAIN_BACKOFF_MS[failures++];
        this.#o.logger.warn(
          "Webhook events of {connection} not acted on yet: {error}{retry}",
          {
            connection: writer.connection.id,
            error: errorText(error),
            retry: wait === undefined ? "; they wait for the next event or run" : "; trying again",
          },
        );
        if (wait === undefined) return;
        try {
          await this.#o.clock.sleep(wait, this.#winding.signal);
        } catch {
          return;
        }
        continue;
      }
      if (slot.jobs === 0) return;
      if (slot.nudge.signal.aborted) slot.nudge = new AbortController();
      await writer.inbox.changed(AbortSignal.any([slot.nudge.signal, this.#winding.signal]));
    }
  }

  #nudge(slot: _Slot): void {
    slot.nudge.abort();
  }

  /**
   * Gives the lease back once no job runs and no drain is under way, then looks at the inbox
   * once more (see the module doc).
   */
  #releaseIfIdle(id: string, slot: _Slot): void {
    if (slot.jobs > 0 || slot.drainer !== undefined || slot.released !== undefined) return;
    slot.released = (async () => {
      try {
        await slot.writer.compactIfGrown().catch((error) => {
          if (!(error instanceof FencedError)) {
            this.#o.logger.warn("Cannot compact the ledger of {connection}: {error}", {
              connection: id,
              error: errorText(error),
            });
          }
        });
        await slot.writer.lease.release();
      } finally {
        if (this.#slots.get(id) === slot) this.#slots.delete(id);
      }
      if (this.#closed || this.#winding.signal.aborted) return;
      const left = await slot.writer.inbox.peek(1).catch(() => []);
      if (left.length > 0) this.wake(id);
    })();
  }
}
