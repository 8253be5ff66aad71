/**
 * The one path through which everything is written for one connection: pushes to Ometria,
 * its content ledger, its state (checkpoints, quarantine, outcomes) and its webhook inbox.
 * A writer exists only while this process holds the connection's lease, and every write
 * carries the lease's fence, so once the lease is lost nothing more is sent or saved.
 *
 * Every push goes through {@linkcode ConnectionWriter.push}, which judges each record against
 * the ledger (gate.ts) at the moment it is issued and keeps, per member, at most one request
 * in flight: a record waits for the request already carrying its member to settle. So for any
 * member, requests are issued in the order of their versions and one at a time, and none
 * lands after a newer one or after the member's opt-out (docs/ARCHITECTURE.md, "One writer
 * per connection").
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import type { RecordJson } from "../mapping/contact.ts";
import type { OmetriaAsyncError } from "../ometria/client.ts";
import type { RecordsSink, SinkResult } from "../engine/ports.ts";
import { rejectedRecords } from "../engine/push_in_order.ts";
import {
  concatRecords,
  LEDGER_RECORD_BYTES,
  type LedgerEntry,
  LedgerTable,
} from "../state/ledger_table.ts";
import type { ConnectionState } from "../state/schema.ts";
import type { Fence, Inbox, Lease, Ledger, StateStore } from "../state/store.ts";
import { type ConnectionEvent, record } from "../state/transitions.ts";
import { judge, type Observation } from "./gate.ts";

/** A record ready to send, with what the gate judges it by. */
export interface GatedRecord extends RecordJson, Observation {}

/** What Ometria said about a push, and what the gate kept back. */
export interface GatedResult extends SinkResult {
  /** Records not sent: Ometria acknowledged the very same record before. */
  unchanged: number;
  /** Records not sent: a newer version of their member was sent or is in flight. */
  stale: number;
  /** Members not sent now but queued to be read again (see gate.ts, `recheck`). */
  rechecked: string[];
  /** Records sent. */
  sent: number;
}

/** Options of {@linkcode ConnectionWriter}. */
export interface ConnectionWriterOptions {
  connection: { id: string; listId: string };
  store: StateStore;
  lease: Lease;
  /** The connection's Ometria client. */
  sink: RecordsSink;
  clock: Clock;
  logger: Logger;
  /**
   * Send records Ometria acknowledged before too (`--repush`): a repair after someone
   * changed Ometria by hand. @default {false}
   */
  repush?: boolean;
}

/** Bytes of acknowledgement records kept in memory before they are appended on their own. */
const _ACK_FLUSH_BYTES = 64 * 1024;
const _NO_RECORDS = new Uint8Array(0);

/** One connection's writer. Built by the writer pool when it takes the lease. */
export class ConnectionWriter {
  readonly connection: { id: string; listId: string };
  readonly store: StateStore;
  readonly fence: Fence;
  readonly inbox: Inbox;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly #o: ConnectionWriterOptions;
  readonly #ledger: Ledger;
  #table: Promise<LedgerTable> | undefined;
  /**
   * Per member, the settling of the push whose request carries it now: one promise per push,
   * shared by its members.
   */
  readonly #inflight = new Map<string, Promise<void>>();
  /**
   * Acknowledgements not yet appended, packed in the first `#ackBytes` bytes: they only let a
   * later run skip unchanged members, so losing them in a crash costs a resend, never a
   * member. They go out with the next append.
   */
  #acks: Uint8Array = _NO_RECORDS;
  #ackBytes = 0;
  /** Records appended since the ledger was loaded (what compaction would save). */
  #appended = 0;
  /** Numbers reads and pushes in the order they start (see gate.ts). */
  #seq = 0;
  /** Whether unchanged records are sent too (see {@linkcode repushing}). */
  #repush: boolean;

  constructor(options: ConnectionWriterOptions) {
    this.#o = options;
    this.connection = options.connection;
    this.store = options.store;
    this.fence = options.lease.fence;
    this.inbox = options.store.inbox(options.connection.id);
    this.clock = options.clock;
    this.logger = options.logger;
    this.#ledger = options.store.ledger(options.connection.id);
    this.#repush = options.repush ?? false;
  }

  /**
   * Whether this writer sends records Ometria acknowledged before too: from its options
   * (`sync --repush` for the whole process), or turned on for one job with
   * {@linkcode setRepushing} (a run consuming the connection's pending `reset --repush`).
   */
  get repushing(): boolean {
    return this.#repush;
  }

  /**
   * Sends unchanged records too (`on`), or goes back to the writer's option; everything this
   * writer pushes meanwhile (webhook events drained beside the job included) is affected.
   */
  setRepushing(on: boolean): void {
    this.#repush = on || (this.#o.repush ?? false);
  }

  /** The lease this writer holds. */
  get lease(): Lease {
    return this.#o.lease;
  }

  /** The connection's Ometria client (most records per request). */
  get maxBatchSize(): number {
    return this.#o.sink.maxBatchSize;
  }

  /**
   * The next number of this writer's numbering of reads and pushes: take one right before a
   * Mailchimp request whose members will be pushed (`Observation.readSeq`).
   */
  nextSeq(): number {
    return ++this.#seq;
  }

  /** The content ledger, loaded once per writer. */
  table(): Promise<LedgerTable> {
    this.#table ??= this.#ledger.load();
    return this.#table;
  }

  /** Applies `event` to the connection's state, under the fence. */
  record(event: ConnectionEvent): Promise<ConnectionState> {
    return record(this.store, this.connection, event, this.fence);
  }

  /**
   * Sends `records` through the gate (see the module doc): each is judged against the ledger
   * now; those to send are written ahead to the ledger (durably), wait for any request still
   * carrying their member, and go in one request. Records Ometria did not take are reported
   * as a sink reports them (the caller quarantines them); the rest become acknowledged in the
   * ledger. `repush` sends records Ometria acknowledged before too (a `verify --repair` of
   * contacts changed in Ometria behind this program's back), as the writer's `repush` does for
   * every push. Throws the sink's failure, or {@linkcode FencedError} when the lease is gone.
   */
  async push(
    records: readonly GatedRecord[],
    options: {
      signal?: AbortSignal | undefined;
      label?: string | undefined;
      repush?: boolean | undefined;
    } = {},
  ): Promise<GatedResult> {
    this.fence.assertHeld();
    const table = await this.table();
    const admitted = this.#admit(table, records, options.repush ?? this.#repush);
    const { send, waits, settled } = admitted;
    const result: GatedResult = {
      accepted: 0,
      rejected: 0,
      unchanged: admitted.unchanged,
      stale: admitted.stale,
      rechecked: admitted.recheck,
      sent: 0,
    };
    try {
      if (admitted.wal.length > 0) await this.#append(admitted.wal);
      if (admitted.recheck.length > 0) await this.#queueRecheck(admitted.recheck);
      if (waits.length > 0) await Promise.all(waits);
      if (send.length === 0) return result;
      this.fence.assertHeld();
      const signal = options.signal
        ? AbortSignal.any([options.signal, this.fence.signal])
        : this.fence.signal;
      const answer = await this.#o.sink.pushJson(send, {
        signal,
        label: options.label,
        // Every attempt, retries included, goes out only while the lease holds.
        beforeAttempt: () => this.fence.assertHeld(),
      });
      this.#acknowledge(table, send, answer);
      return {
        ...answer,
        unchanged: result.unchanged,
        stale: result.stale,
        rechecked: result.rechecked,
        sent: send.length,
      };
    } finally {
      if (settled) this.#settle(send, settled);
    }
  }

  /** Appends the acknowledgements still in memory (at a checkpoint, and before closing). */
  async flushAcks(): Promise<void> {
    if (this.#ackBytes > 0) await this.#append(_NO_RECORDS);
  }

  /**
   * Compacts the ledger when it has grown past twice its entries (the writer's table is the
   * whole truth: no other writer can have appended since it was loaded).
   */
  async compactIfGrown(): Promise<void> {
    if (this.#table === undefined) return;
    const table = await this.#table;
    await this.flushAcks();
    if (this.#appended <= Math.max(1000, table.size)) return;
    await this.#ledger.compact(table, this.fence);
    this.#appended = 0;
  }

  /**
   * Appends ledger records decided elsewhere (a reconciliation adopting entries whose hash was
   * unknown), already applied to {@linkcode table}.
   */
  async appendLedger(records: readonly Uint8Array[]): Promise<void> {
    if (records.length > 0) await this.#append(concatRecords(records));
  }

  /**
   * Ometria's latest validation errors for the account, or undefined when the sink cannot
   * tell (the legacy endpoint validates as it answers).
   */
  recentErrors(signal?: AbortSignal): Promise<OmetriaAsyncError[]> | undefined {
    return this.#o.sink.recentErrors?.(signal);
  }

  /**
   * Marks members Ometria refused after acknowledging them as not acknowledged, so that no
   * later read counts them as unchanged: they are sent again when they are next read.
   */
  async unacknowledge(ids: readonly string[]): Promise<void> {
    const table = await this.table();
    const wal = new Uint8Array(ids.length * LEDGER_RECORD_BYTES);
    let at = 0;
    for (const id of ids) {
      const entry = table.get(id);
      if (entry === undefined || !entry.acked) continue;
      table.setAndPack(id, { ...entry, acked: false }, wal, at);
      at += LEDGER_RECORD_BYTES;
    }
    if (at > 0) await this.#append(wal.subarray(0, at));
  }

  /** Removes members from the ledger (an erasure). */
  async forget(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const table = await this.table();
    const wal = new Uint8Array(ids.length * LEDGER_RECORD_BYTES);
    ids.forEach((id, i) => {
      table.delete(id);
      LedgerTable.packRecordInto(id, undefined, wal, i * LEDGER_RECORD_BYTES);
    });
    await this.#append(wal);
  }

  /**
   * Judges every record now, synchronously, so that two pushes of one member issued at once
   * see each other: the first one's entry is written into the table before the second is
   * judged, and the second waits for the first's request. The records to send are written
   * ahead into one buffer (`wal`), and they share one promise in `#inflight` (`settled`).
   */
  #admit(table: LedgerTable, records: readonly GatedRecord[], repush: boolean) {
    const send: GatedRecord[] = [];
    const wal = new Uint8Array(records.length * LEDGER_RECORD_BYTES);
    let walBytes = 0;
    const waits: Promise<void>[] = [];
    const recheck: string[] = [];
    let settled: PromiseWithResolvers<void> | undefined;
    let unchanged = 0;
    let stale = 0;
    // Entries issued by this admission have a later number than this.
    const issuedAfter = this.#seq;
    // Filled for each record sent, then copied into the table.
    const entry: LedgerEntry = {
      versionMs: 0,
      hash: "",
      acked: false,
      gone: false,
      final: false,
      issuedSeq: 0,
    };
    try {
      for (const r of records) {
        const before = table.get(r.id);
        const issued = before?.issuedSeq ?? 0;
        const verdict = judge(before, issued, r, { repush });
        if (verdict === "unchanged") unchanged++;
        else if (verdict === "stale") stale++;
        else if (verdict === "recheck") recheck.push(r.id);
        else {
          entry.versionMs = r.versionMs;
          entry.hash = r.hash;
          entry.gone = r.gone;
          entry.final = r.final;
          entry.issuedSeq = this.nextSeq();
          table.setAndPack(r.id, entry, wal, walBytes);
          walBytes += LEDGER_RECORD_BYTES;
          if (issued > issuedAfter) {
            // Twice in one push: only the later one goes (one request must not carry both).
            send[send.findIndex((s) => s.id === r.id)] = r;
            stale++;
            continue;
          }
          send.push(r);
          settled ??= Promise.withResolvers<void>();
          const carrying = this.#inflight.get(r.id);
          if (carrying !== undefined && carrying !== waits.at(-1)) waits.push(carrying);
          this.#inflight.set(r.id, settled.promise);
        }
      }
    } catch (error) {
      // A record the table refused: none of this push goes, and none of it stays in flight.
      if (settled) this.#settle(send, settled);
      throw error;
    }
    return {
      send,
      wal: wal.subarray(0, walBytes),
      waits,
      settled,
      recheck,
      unchanged,
      stale,
    };
  }

  /** Ends a push: its members are no longer carried by it. */
  #settle(sent: readonly GatedRecord[], settled: PromiseWithResolvers<void>): void {
    settled.resolve();
    for (const r of sent) {
      if (this.#inflight.get(r.id) === settled.promise) this.#inflight.delete(r.id);
    }
  }

  /** Marks what Ometria took as acknowledged, unless a newer push has replaced the entry. */
  #acknowledge(table: LedgerTable, sent: readonly GatedRecord[], answer: SinkResult): void {
    const refused = answer.rejected > 0 || (answer.tooLarge?.length ?? 0) > 0
      ? new Set(rejectedRecords(sent, answer).map((r) => r.id))
      : undefined;
    this.#roomForAcks(sent.length);
    for (const r of sent) {
      if (refused?.has(r.id)) continue;
      if (table.acknowledge(r.id, r, this.#acks, this.#ackBytes)) {
        this.#ackBytes += LEDGER_RECORD_BYTES;
      }
    }
    if (this.#ackBytes >= _ACK_FLUSH_BYTES) {
      // Appended on the next write of the ledger, or here when none comes soon.
      void this.flushAcks().catch(() => {});
    }
  }

  /** Makes room for `count` more acknowledgements in `#acks`. */
  #roomForAcks(count: number): void {
    const needed = this.#ackBytes + count * LEDGER_RECORD_BYTES;
    if (needed <= this.#acks.length) return;
    const grown = new Uint8Array(Math.max(needed, 2 * this.#acks.length, 4096));
    grown.set(this.#acks.subarray(0, this.#ackBytes));
    this.#acks = grown;
  }

  /** Appends `records` (whole packed records), after the acknowledgements still in memory. */
  async #append(records: Uint8Array): Promise<void> {
    const ackBytes = this.#ackBytes;
    // Copied out of #acks (which fills again from its start while this append is written).
    const bytes = ackBytes > 0
      ? concatRecords([this.#acks.subarray(0, ackBytes), records])
      : records;
    this.#ackBytes = 0;
    // A failed append drops the acknowledgements it carried. Appending them later would put
    // them after whatever was appended meanwhile (a newer write-ahead record of the same
    // member), so a restart would load the older version as acknowledged. Without them the
    // ledger holds the write-ahead record, not acknowledged: a lost acknowledgement costs one
    // resend, never a member. The records of this push are not sent.
    await this.#ledger.append(bytes, this.fence);
    this.#appended += bytes.length / LEDGER_RECORD_BYTES;
  }

  /** Queues members to be read again once their second is surely over (gate.ts). */
  async #queueRecheck(ids: readonly string[]): Promise<void> {
    const now = this.clock.now();
    const outcome = await this.inbox.append({
      type: "recheck",
      receivedAtMs: now,
      firedAtMs: null,
      action: null,
      memberIds: [...ids],
    }, `recheck|${ids.join("+")}|${now}`);
    if (outcome === "full") {
      throw new Error(
        `Cannot queue ${ids.length} member(s) of connection ${this.connection.id} to be read ` +
          "again: its inbox is full; they stay where the next run reads them",
      );
    }
  }
}
