/**
 * Pushes records to Ometria in batches, several at once, and reports how far a contiguous
 * prefix of acknowledged batches reaches, which is what the cursor may pass.
 *
 * A slice of a window is pushed as a stream: its reader adds batches as pages come, and
 * {@linkcode OrderedPusher} keeps requests in flight across page boundaries. Members are
 * mapped and serialised as soon as their page is read ({@linkcode serializeMembers}), so
 * only one string per member waits for Ometria, never the member's object tree.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import { formatMailchimpTime } from "../mailchimp/time.ts";
import {
  recordJson,
  toLegacyRecord,
  toOmetriaContact,
  toOrphanRecord,
  toRecordJson,
} from "../mapping/contact.ts";
import type { MappingForMembers } from "../mapping/field_mapper.ts";
import { recordHash } from "../state/record_hash.ts";
import type { GatedRecord, GatedResult } from "../writer/connection_writer.ts";
import { isFinal } from "../writer/gate.ts";
import type { SinkResult } from "./ports.ts";
import { lastChangedOf } from "./window_reader.ts";

/** Thrown when a graceful stop left batches unsent. */
export class StoppedError extends Error {
  constructor() {
    super("stopped before every batch was sent");
    this.name = "StoppedError";
  }
}

/** A member's record ready to send; its `versionMs` is the member's `last_changed`. */
export type OutgoingRecord = GatedRecord;

/** Where an {@linkcode OrderedPusher} sends its batches: the connection's writer. */
export interface GatedSink {
  /** Most records one request takes. */
  readonly maxBatchSize: number;
  /** Sends records through the writer's gate (see `ConnectionWriter.push`). */
  push(
    records: readonly GatedRecord[],
    options?: { signal?: AbortSignal | undefined; label?: string | undefined },
  ): Promise<GatedResult>;
}

/** How members become records. */
export interface SerializeOptions {
  endpoint: "push" | "record";
  listId: string;
  /**
   * The connection's field mapping (push endpoint only; the legacy `/record` format is
   * fixed). Without it a contact carries only the fixed fields.
   */
  mapping?: MappingForMembers | undefined;
}

/**
 * When and how the members being serialised were read: the answer's `Date` (what makes a read
 * final) and the read's number in the writer's order (see writer/gate.ts).
 */
export interface ReadStamp {
  atMs: number | undefined;
  seq: number;
}

/**
 * Maps and serialises `members` (in their order), read as `read` says. A member that cannot be
 * mapped is left out and listed with the reason. The mapping is resolved first: one that cannot
 * be resolved (Mailchimp down, a merge tag gone) throws, and nothing is serialised.
 */
export async function serializeMembers(
  members: readonly Member[],
  options: SerializeOptions,
  read: ReadStamp,
): Promise<{ records: OutgoingRecord[]; unmappable: { id: string; reason: string }[] }> {
  const records: OutgoingRecord[] = [];
  const unmappable: { id: string; reason: string }[] = [];
  if (members.length === 0) return { records, unmappable };
  const mapping = options.endpoint === "push" && options.mapping
    ? await options.mapping(members)
    : undefined;
  for (const m of members) {
    try {
      const record = options.endpoint === "push"
        ? toOmetriaContact(m, options.listId, mapping)
        : toLegacyRecord(m);
      // recordJson rather than toRecordJson: no {id, json} pair made and dropped per member.
      const id = record.id;
      const json = recordJson(record);
      const versionMs = lastChangedOf(m);
      records.push({
        id,
        json,
        versionMs,
        gone: false,
        final: isFinal(versionMs, read.atMs),
        hash: recordHash(json),
        readSeq: read.seq,
      });
    } catch (error) {
      unmappable.push({ id: m.id, reason: `cannot be mapped to an Ometria record: ${error}` });
    }
  }
  return { records, unmappable };
}

/** What the batches an acknowledgement covers did, counted. */
export interface BatchCounts {
  /** Records Ometria took. */
  pushed: number;
  /** Records Ometria did not take (held in quarantine by the caller). */
  rejected: number;
  /** Records not sent: Ometria had acknowledged the very same record before. */
  unchanged: number;
  /** Records not sent: a newer version of their member was sent or is in flight. */
  stale: number;
}

/**
 * The opt-out of member `id`, found gone by a read numbered `readSeq` whose 404 answer said
 * `atMs`: its version for the gate (writer/gate.ts).
 */
export function orphanRecord(
  id: string,
  listId: string,
  endpoint: "push" | "record",
  atMs: number,
  readSeq: number,
): OutgoingRecord {
  const { json } = toRecordJson(toOrphanRecord(id, listId, endpoint, new Date(atMs).toISOString()));
  return { id, json, versionMs: atMs, gone: true, final: false, hash: recordHash(json), readSeq };
}

/** Options of {@linkcode OrderedPusher}. */
export interface OrderedPusherOptions {
  sink: GatedSink;
  /** Names batches in logs: `<connectionId> batch 3 (from …)`. */
  connectionId: string;
  /**
   * Most requests of this pusher in flight at once; a function is asked again before every
   * start (a run's share of its push window grows as its other streams end).
   */
  concurrency: number | (() => number);
  /**
   * Batches added but not yet started before `add` waits: how far reading may run ahead of
   * pushing. @default {2 × concurrency}
   */
  queued?: number;
  /** Graceful stop: no new batch starts; batches in flight finish. */
  signal?: AbortSignal | undefined;
  /** Hard stop: batches in flight are abandoned. */
  hardSignal?: AbortSignal | undefined;
  /**
   * Called whenever the acknowledged prefix grows, one call at a time and in order: every
   * record added before the batch whose reach is `reach` is acknowledged (or rejected and
   * reported). `released` are the ids handed to `add` as `release` whose records went
   * through.
   */
  onAcknowledged: (
    reach: number,
    counts: BatchCounts,
    released: readonly string[],
  ) => Promise<void>;
  /** Called for every batch with records not taken, each with the reason. */
  onRejected: (label: string, rejected: { id: string; reason: string }[]) => void;
}

interface _Batch {
  /** Emptied once the batch settles: only the batches in flight and queued hold records. */
  records: readonly OutgoingRecord[];
  reach: number;
  label: string;
  release: readonly string[];
  /** Told once Ometria answered the batch, with the ids it did not take (held already). */
  onSent?: ((refused: ReadonlySet<string>) => void) | undefined;
  done?: BatchCounts & { released: string[] };
}

/**
 * Sends batches in flight at once and acknowledges them in the order they were added.
 *
 * Bounds, which are what a crash can cost (everything past the recorded prefix is sent
 * again by the next run): a batch starts only while fewer than `2 × concurrency` batches
 * past the prefix already reported through `onAcknowledged` (the checkpoint written) have
 * started, so neither a slow batch nor a slow checkpoint lets the batches behind it run
 * ahead without limit; and `add` waits while `queued` batches wait to start, so reading
 * cannot run ahead of pushing either.
 */
export class OrderedPusher {
  readonly #o: OrderedPusherOptions;
  /** Batches from the acknowledged prefix on; `#base` is the index of the first. */
  #batches: _Batch[] = [];
  #base = 0;
  /** Index of the next batch to start, and of the first not acknowledged. */
  #next = 0;
  #contiguous = 0;
  /** Index of the first batch whose acknowledgement has not been reported (recorded) yet. */
  #reported = 0;
  #active = 0;
  #added = 0;
  #failure: { error: unknown } | undefined;
  #closed = false;
  #reporting = Promise.resolve();
  /** Woken whenever a batch starts or settles (room to add, or the end). */
  #wake: PromiseWithResolvers<void> = Promise.withResolvers();

  constructor(options: OrderedPusherOptions) {
    this.#o = options;
  }

  /**
   * Adds a batch (at most the sink's `maxBatchSize` records; none to move the reach alone).
   * `reach`: acknowledging it and everything before means every member before `reach` is
   * acknowledged. `onSent` learns when Ometria answered this batch (see
   * {@linkcode TailCarry}). Resolves once there is room for more; throws the first failure.
   */
  async add(
    records: readonly OutgoingRecord[],
    reach: number,
    release: readonly string[] = [],
    onSent?: (refused: ReadonlySet<string>) => void,
  ): Promise<void> {
    this.#throwIfFailed();
    const index = ++this.#added;
    const from = records.length > 0 ? formatMailchimpTime(records[0]!.versionMs) : "";
    this.#batches.push({
      records,
      reach,
      release,
      onSent,
      label: `${this.#o.connectionId} batch ${index}${from ? ` (from ${from})` : ""}`,
    });
    this.#pump();
    while (
      this.#failure === undefined && !this.#stopped && this.#end - this.#next > this.#queued()
    ) {
      await this.#sleep();
    }
    // A graceful stop: the batches in flight finish and are acknowledged, then it throws.
    if (this.#stopped) await this.finish();
    this.#throwIfFailed();
  }

  /**
   * Waits until every batch is acknowledged. Throws the first push failure (after the
   * batches in flight settle), or {@linkcode StoppedError} when a stop left batches unsent.
   */
  async finish(): Promise<void> {
    this.#pump();
    while (
      this.#active > 0 ||
      (this.#failure === undefined && !this.#stopped && !this.#closed && this.#open)
    ) {
      await this.#sleep();
    }
    await this.#reporting.catch(() => {});
    this.#throwIfFailed();
    if (this.#open) throw new StoppedError();
  }

  /**
   * Runs `fill` (which adds the batches), then waits until every batch is acknowledged
   * ({@linkcode OrderedPusher.finish}). When `fill` throws, the batches in flight settle
   * before the error goes on: a graceful stop keeps their progress, and nothing writes a
   * checkpoint once the run has recorded its end.
   */
  async feed(fill: () => Promise<void>): Promise<void> {
    try {
      await fill();
    } catch (error) {
      await this.settle();
      throw error;
    }
    await this.finish();
  }

  /**
   * Starts no more batches and waits for those in flight to settle and their
   * acknowledgements to be reported.
   */
  async settle(): Promise<void> {
    this.#closed = true;
    while (this.#active > 0) await this.#sleep();
    await this.#reporting.catch(() => {});
  }

  get #end(): number {
    return this.#base + this.#batches.length;
  }

  /** True while some batch is not acknowledged. */
  get #open(): boolean {
    return this.#contiguous < this.#end;
  }

  get #stopped(): boolean {
    return this.#o.signal?.aborted === true;
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure.error;
  }

  #sleep(): Promise<void> {
    return this.#wake.promise;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = Promise.withResolvers();
    wake.resolve();
  }

  /** Requests in flight at once now. */
  #concurrency(): number {
    const c = this.#o.concurrency;
    return typeof c === "number" ? c : c();
  }

  /** Batches that may wait to start before `add` waits. */
  #queued(): number {
    return this.#o.queued ?? 2 * this.#concurrency();
  }

  #pump(): void {
    while (
      this.#failure === undefined && !this.#stopped && !this.#closed &&
      this.#active < this.#concurrency() &&
      this.#next < this.#end && this.#next < this.#reported + 2 * this.#concurrency()
    ) {
      const index = this.#next++;
      this.#active++;
      this.#send(this.#batches[index - this.#base]!).then(
        () => {
          this.#active--;
          this.#advance();
          this.#pump();
          this.#notify();
        },
        (error) => {
          this.#active--;
          this.#failure ??= { error };
          this.#notify();
        },
      );
    }
  }

  async #send(batch: _Batch): Promise<void> {
    const { records, label } = batch;
    const result = records.length === 0
      ? { accepted: 0, rejected: 0, unchanged: 0, stale: 0, sent: 0, rechecked: [] }
      : await this.#o.sink.push(records, { signal: this.#o.hardSignal, label });
    let refused: ReadonlySet<string> = new Set();
    if (result.rejected > 0 || (result.tooLarge?.length ?? 0) > 0) {
      const rejected = rejectedRecords(records, result);
      refused = new Set(rejected.map((r) => r.id));
      this.#o.onRejected(label, rejected);
    }
    batch.records = [];
    batch.onSent?.(refused);
    batch.done = {
      pushed: result.sent - refused.size,
      rejected: refused.size,
      unchanged: result.unchanged,
      stale: result.stale,
      released: batch.release.filter((id) => !refused.has(id)),
    };
  }

  /** Moves the acknowledged prefix over every settled batch and reports it. */
  #advance(): void {
    const counts: BatchCounts = { pushed: 0, rejected: 0, unchanged: 0, stale: 0 };
    const released: string[] = [];
    let reach: number | undefined;
    while (this.#contiguous < this.#end) {
      const batch = this.#batches[this.#contiguous - this.#base]!;
      if (batch.done === undefined) break;
      counts.pushed += batch.done.pushed;
      counts.rejected += batch.done.rejected;
      counts.unchanged += batch.done.unchanged;
      counts.stale += batch.done.stale;
      released.push(...batch.done.released);
      reach = batch.reach;
      this.#contiguous++;
    }
    if (reach === undefined) return;
    // Acknowledged batches (their records gone already) are dropped a few at a time.
    const drop = this.#contiguous - this.#base;
    if (drop >= 64 || drop === this.#batches.length) {
      this.#batches.splice(0, drop);
      this.#base = this.#contiguous;
    }
    const at = reach;
    const upTo = this.#contiguous;
    this.#reporting = this.#reporting.then(async () => {
      await this.#o.onAcknowledged(at, counts, released);
      // The bound on what runs ahead counts from what is recorded, not merely acknowledged.
      this.#reported = upTo;
      this.#pump();
      this.#notify();
    });
    // A report that fails (the store cannot be written) fails the push: nothing after it
    // may count as done.
    this.#reporting.catch((error) => {
      this.#failure ??= { error };
      this.#notify();
    });
  }
}

/**
 * Adds `records` to `pusher` in batches of `size`; the last batch reaches `doneBefore`, the
 * others the time of the record after them. With no records, an empty batch moves the
 * reach to `doneBefore`.
 */
export async function addBatches(
  pusher: OrderedPusher,
  records: readonly OutgoingRecord[],
  size: number,
  doneBefore: number,
  release: (batch: readonly OutgoingRecord[]) => readonly string[] = () => [],
): Promise<void> {
  if (records.length === 0) {
    await pusher.add([], doneBefore);
    return;
  }
  for (let i = 0; i < records.length; i += size) {
    const batch = records.slice(i, i + size);
    const reach = i + size < records.length ? records[i + size]!.versionMs : doneBefore;
    await pusher.add(batch, reach, release(batch));
  }
}

/**
 * `sink`, counting the Ometria requests its pushes made (those a push added for a 413 or to
 * isolate rejected records included) in `counts`, and collecting their request ids.
 */
export function countingSink(
  sink: GatedSink,
  counts: { ometriaRequests: number },
  options: {
    /** Collects Ometria's request ids (what ties an asynchronous error to this run). */
    requestIds?: Set<string>;
    /**
     * Runs once, at once, and every push waits for it (a run's baseline of Ometria's errors):
     * started beside the run's first reads, it is off the first push's path.
     */
    beforeFirst?: () => Promise<void>;
  } = {},
): GatedSink {
  const first = options.beforeFirst?.();
  // Its failure is the first push's; a run that never pushes does not fail for it.
  first?.catch(() => {});
  return {
    get maxBatchSize() {
      return sink.maxBatchSize;
    },
    push: async (records, pushOptions) => {
      if (first) await first;
      const result = await sink.push(records, pushOptions);
      if (result.sent > 0) counts.ometriaRequests += 1 + (result.extraRequests ?? 0);
      if (result.requestId !== undefined) options.requestIds?.add(result.requestId);
      return result;
    },
  };
}

/**
 * Which records of a batch were not taken, with why. A sink that cannot tell which (an
 * account-wide error list only) has every record of the batch not known to be too large held
 * back: sending them again is safe, and holding back one that went through costs only a
 * retry.
 */
export function rejectedRecords(
  records: readonly { id: string }[],
  result: SinkResult,
): { id: string; reason: string }[] {
  if (result.rejectedRecords) return result.rejectedRecords;
  const tooLarge = new Set(result.tooLarge ?? []);
  const out = [...tooLarge].map((id) => ({
    id,
    reason: "the record is over Ometria's 60 KB limit",
  }));
  if (result.rejected > tooLarge.size) {
    const why = `Ometria rejected ${result.rejected - tooLarge.size} record(s) of its batch${
      result.errors?.length ? `: ${result.errors.join("; ")}` : ""
    }`;
    for (const r of records) if (!tooLarge.has(r.id)) out.push({ id: r.id, reason: why });
  }
  return out;
}

interface _Offer {
  records: readonly OutgoingRecord[];
  /** Index of the first record not taken yet. */
  next: number;
  /** Records taken whose batch Ometria has not answered yet. */
  unsent: number;
  settled: boolean;
  done: PromiseWithResolvers<OutgoingRecord[]>;
}

/**
 * Hands the partial last batch of one stream of a connection's pushes to another stream of
 * the same connection that is still pushing, so that both fill whole requests: Ometria
 * limits requests, not records (8 a second of up to 100 records), and a connection's
 * archived pass and main pass each end in a partial batch otherwise. The records only ride
 * in the taker's requests; the offering stream keeps its own reach, moving it past them once
 * {@linkcode TailCarry.offer} resolves (every record taken was answered; the rest come
 * back to be pushed by the offerer). Which request carries a member's record changes
 * nothing the writer's gate guarantees: every record still passes the gate, and a batch
 * never takes a member it holds already.
 */
export class TailCarry {
  #takers = 0;
  #offers: _Offer[] = [];

  /** A stream that may take offered records starts; {@linkcode TailCarry.close} ends it. */
  open(): void {
    this.#takers++;
  }

  /**
   * A taker ended: after a failure, the offers whose taken records were not all answered
   * reject with `failure` (nothing may count them as sent); once no taker is left, every
   * offer gets back what was not taken.
   */
  close(failure?: { error: unknown }): void {
    this.#takers--;
    for (const o of this.#offers) {
      if (failure !== undefined && o.unsent > 0) {
        o.settled = true;
        o.done.reject(failure.error);
      }
    }
    this.#check();
  }

  /**
   * Offers `records` (the end of a stream, in any order) to the streams open now. Resolves
   * with the records no taker took, once every taken one was answered; at once with all of
   * them when no taker is open.
   */
  offer(records: readonly OutgoingRecord[]): Promise<OutgoingRecord[]> {
    if (this.#takers === 0 || records.length === 0) return Promise.resolve([...records]);
    const offer: _Offer = {
      records,
      next: 0,
      unsent: 0,
      settled: false,
      done: Promise.withResolvers(),
    };
    this.#offers.push(offer);
    return offer.done.promise;
  }

  /** Records offered and not taken yet. */
  get available(): number {
    let count = 0;
    for (const o of this.#offers) if (!o.settled) count += o.records.length - o.next;
    return count;
  }

  /**
   * Takes up to `count` offered records whose members are not in `exclude`, for one batch;
   * `onSent` is that batch's {@linkcode OrderedPusher.add} `onSent`.
   */
  take(
    count: number,
    exclude: ReadonlySet<string>,
  ): { records: OutgoingRecord[]; onSent: () => void } | undefined {
    const records: OutgoingRecord[] = [];
    const from: { offer: _Offer; count: number }[] = [];
    for (const o of this.#offers) {
      if (o.settled || records.length >= count) continue;
      const taken = { offer: o, count: 0 };
      while (o.next < o.records.length && records.length < count) {
        const r = o.records[o.next]!;
        // A member once per request: its two versions in one batch would race in Ometria.
        if (exclude.has(r.id)) break;
        records.push(r);
        o.next++;
        taken.count++;
      }
      if (taken.count > 0) {
        o.unsent += taken.count;
        from.push(taken);
      }
    }
    if (records.length === 0) return undefined;
    return {
      records,
      onSent: () => {
        for (const { offer, count } of from) offer.unsent -= count;
        this.#check();
      },
    };
  }

  /** Resolves the offers that are done: all taken and answered, or no taker left. */
  #check(): void {
    for (const o of this.#offers) {
      if (o.settled || o.unsent > 0) continue;
      if (o.next >= o.records.length || this.#takers === 0) {
        o.settled = true;
        o.done.resolve(o.records.slice(o.next));
      }
    }
    this.#offers = this.#offers.filter((o) => !o.settled);
  }
}
