/**
 * One run of the engine over one connection, through the connection's writer: try the
 * quarantined members again, read the window of changed members from Mailchimp, push them to
 * Ometria in batches, checkpoint after every acknowledged batch, read what changed after U,
 * and move the watermark when the whole window is done.
 *
 * Why it is lossless — the full argument is docs/ARCHITECTURE.md, "Why nothing is lost":
 *
 * - Times. U is Mailchimp's own clock (the `Date` of the run's first answer) minus a margin
 *   of at least 2 s. The window is `lower ≤ last_changed < U`, its edges enforced on our side.
 * - No answer is taken as one snapshot (window_reader.ts). Only a short page ends a window; a
 *   full page proves only the seconds before its last one; a page that cannot be one
 *   moment's sorted listing is torn and read again; a tie group is complete only when passes
 *   over it, while it provably stood still, cover every position. `total_items` is a hint.
 * - Mailchimp's clock. Each run remembers Mailchimp's clock and ours; a later run that finds
 *   Mailchimp's clock behind by more than the margin warns and starts its window early enough
 *   to cover every change stamped in the stepped-back time.
 * - Nothing is dropped. A member that cannot be read, mapped or accepted is quarantined —
 *   recorded before the cursor passes it (quarantine_book.ts) — and tried again by id on
 *   every run until it goes through or is gone; while anything is held the outcome is a failure.
 * - Slices (slice_board.ts). A big window is cut at whole seconds into slices that tile it,
 *   each read by its own reader with every rule above (several at once within the key's
 *   connections; the pages they hold are bounded by one `PageBudget`); the cursor is the
 *   contiguous acknowledged prefix of the whole window.
 * - Past U. Members read at or after U (the first answer reads without an upper bound) are
 *   pushed too; when the first answer did not already reach the present, a final read from
 *   U on follows the window, so a member that changes faster than the margin still reaches
 *   Ometria in the run that first meets it. Neither moves the watermark past U.
 * - One writer. Every push, checkpoint and hold goes through the connection's writer, which
 *   holds the lease, fences each write and orders the pushes of each member (writer/).
 * - Cost. A run where nothing changed sends one Mailchimp request (two while archived
 *   members still have to be read on their own) and no Ometria request.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import {
  DEFAULT_MAILCHIMP_CLOCK_MARGIN_SECONDS,
  DEFAULT_MAX_TIE_PASSES,
  DEFAULT_PAGE_SIZE,
  DEFAULT_PUSH_CONCURRENCY,
  DEFAULT_QUARANTINE_RETRIES,
  DEFAULT_READ_SLICES,
} from "../config/defaults.ts";
import type { Member } from "../mailchimp/member.ts";
import { errorText as toErrorText } from "../log/error_text.ts";
import { formatMailchimpTime } from "../mailchimp/time.ts";
import type { ConnectionState, RunProgress } from "../state/schema.ts";
import { FencedError } from "../state/store.ts";
import type { ConnectionWriter } from "../writer/connection_writer.ts";
import { planSlices } from "./plan_slices.ts";
import type { EngineContext } from "./ports.ts";
import {
  addBatches,
  countingSink,
  type GatedSink,
  OrderedPusher,
  type OutgoingRecord,
  type ReadStamp,
  serializeMembers,
  StoppedError,
  TailCarry,
} from "./push_in_order.ts";
import { checkAsyncRejections, takeErrorBaseline } from "./async_rejections.ts";
import { QuarantineBook } from "./quarantine_book.ts";
import { recordOutcome, type RunCounts, type RunResult } from "./run_outcome.ts";
import { type Slice, SliceBoard } from "./slice_board.ts";
import {
  type BeyondMember,
  type FirstPage,
  lastChangedOf,
  PageBudget,
  WindowReader,
  type WindowSlice,
} from "./window_reader.ts";

export type { RunResult } from "./run_outcome.ts";

/** Options of {@linkcode runConnection}. */
export interface RunConnectionOptions extends EngineContext {
  /** Recorded in the state for `status`. */
  thresholdSeconds?: number;
  /** Members per Mailchimp page (≤ 1000). @default {1000} */
  pageSize?: number;
  /**
   * Ometria requests in flight at once per stream of batches (each slice read at once has
   * its own). @default {8}
   */
  pushConcurrency?: number;
  /**
   * Seconds taken off Mailchimp's clock for U, so late-stamped changes still land in the
   * next window; at least 2 (see the tie-group argument). @default {60}
   */
  marginSeconds?: number;
  /** Most passes over one tie group before the run gives up. @default {20} */
  maxTiePasses?: number;
  /**
   * Slices of one window read at once, each by its own reader; the key's connection limit
   * caps their requests with every other run's, and beyond two readers' pages they ask for
   * more only while the pages read keep being pushed (see `PageBudget`). @default {6}
   */
  readSlices?: number;
  /** Members a slice should hold (see plan_slices.ts). @default {20_000} */
  sliceMembers?: number;
  /** Quarantined members tried again per run (one Mailchimp request each). @default {200} */
  quarantineRetries?: number;
  /** Stops the run between requests and batches (graceful shutdown): progress is kept. */
  signal?: AbortSignal;
  /** Aborts requests in flight (hard stop); progress up to the last checkpoint is kept. */
  hardSignal?: AbortSignal;
  /** Called after every acknowledged batch. */
  onProgress?: (
    progress: { read: number; pushed: number; unchanged: number; total?: number },
  ) => void;
  /**
   * Mailchimp's default listing is known (from another list) to include archived members:
   * skip the separate archived pass. It is the API's behaviour, not a list's.
   * @default {false}
   */
  archivedInListing?: boolean;
}

class _Aborted extends Error {}

/**
 * Pages of members in full a run's readers hold whatever the backlog (see `PageBudget`): two
 * readers' worth, each with a page in hand and one asked for. Beyond it, up to one page in
 * hand and one asked for per reader, places go only while no page read waits to be pushed.
 */
const _BASE_PAGES = 4;

function _iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Runs one connection once with its writer and records the outcome. Never throws for API
 * failures: they become `outcome: "failed"` with the error, and the checkpoint stays.
 */
export async function runConnection(options: RunConnectionOptions): Promise<RunResult> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const marginSeconds = options.marginSeconds ?? DEFAULT_MAILCHIMP_CLOCK_MARGIN_SECONDS;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
    throw new RangeError(`Cannot run as 'pageSize' must be 1..1000: current value ${pageSize}`);
  }
  if (!(marginSeconds >= 2)) {
    throw new RangeError(
      `Cannot run as 'marginSeconds' must be >= 2: current value ${marginSeconds}`,
    );
  }
  const run = await _Run.start(options, pageSize, marginSeconds);
  return await run.execute();
}

/** One run's moving parts, shared by its readers and pushers. */
class _Run {
  readonly o: RunConnectionOptions;
  readonly writer: ConnectionWriter;
  readonly log: Logger;
  readonly startedMs: number;
  readonly state: ConnectionState;
  readonly board: SliceBoard;
  readonly book: QuarantineBook;
  readonly reader: WindowReader;
  readonly counts: RunCounts = {
    read: 0,
    pushed: 0,
    rejected: 0,
    unchanged: 0,
    mailchimpRequests: 0,
    ometriaRequests: 0,
  };
  readonly sink: GatedSink;
  /** The first error of any reader: the others stop at their next request. */
  failure: unknown;
  /** Store writes of the run, one at a time in the order asked for (see `checkpoint`). */
  #saving: Promise<void> = Promise.resolve();
  /** Readers of the main pass running now, and their promises. */
  #active = 0;
  readonly #workers: Promise<void>[] = [];
  /** Ometria's request ids of this run's pushes. */
  readonly #requestIds = new Set<string>();
  /** Whether this connection's pushes are checked against Ometria's `_errors` (push API). */
  #checksErrors = false;
  /** Errors Ometria listed after OK that no member of this connection can be tied to. */
  #untied: string[] = [];
  /** Whether each pass reached the present in one short answer (no final read needed). */
  readonly #toNow = { main: false, archived: false };

  private constructor(
    o: RunConnectionOptions,
    state: ConnectionState,
    startedMs: number,
    pageSize: number,
    marginMs: number,
  ) {
    this.o = o;
    this.writer = o.writer;
    const { connection } = o.writer;
    this.log = o.writer.logger.with({ connection: connection.id, list_id: connection.listId });
    this.state = state;
    this.startedMs = startedMs;
    const resumed = state.run;
    const cursor = resumed
      ? (resumed.cursor ? Date.parse(resumed.cursor) : undefined)
      : (state.watermark ? Date.parse(state.watermark) : undefined);
    this.board = new SliceBoard(cursor);
    this.book = new QuarantineBook({
      entries: state.quarantine,
      listId: connection.listId,
      write: async (change) => {
        await this.writer.record({ type: "quarantine", at: this.writer.clock.now(), ...change });
      },
      onHeld: (f) =>
        this.log.warn("Member {id} quarantined: {reason}", {
          id: f.id ?? "(no id)",
          reason: f.reason,
        }),
    });
    const checksErrors = (o.endpoint ?? "push") === "push";
    this.sink = countingSink(o.writer, this.counts, {
      requestIds: this.#requestIds,
      // A connection's first pushes: the errors Ometria lists already are not its own.
      ...(checksErrors && state.async_errors_seen === null
        ? { beforeFirst: () => takeErrorBaseline(o.writer, o.hardSignal).then(() => {}) }
        : {}),
    });
    this.#checksErrors = checksErrors;
    const readSlices = Math.max(1, o.readSlices ?? DEFAULT_READ_SLICES);
    this.reader = new WindowReader({
      listId: connection.listId,
      source: o.mailchimp,
      logger: this.log,
      pageSize,
      pages: new PageBudget(2 * readSlices, Math.min(2 * readSlices, _BASE_PAGES)),
      marginMs,
      maxTiePasses: o.maxTiePasses ?? DEFAULT_MAX_TIE_PASSES,
      hardSignal: o.hardSignal,
      beforeRequest: () => this.beforeRequest(),
      readSeq: () => this.writer.nextSeq(),
      now: () => this.writer.clock.now(),
      rewind: (serverTimeMs, lower) => {
        const now = this.writer.clock.now();
        const to = _rewindFor(state, serverTimeMs, lower, now, marginMs, this.log);
        // The main pass starts from the cursor too, whichever pass met the clock first.
        if (to !== undefined) this.board.rewind(to);
        return to;
      },
    });
    if (resumed) {
      this.log.info("Resuming an interrupted run from {cursor}", {
        cursor: resumed.cursor ?? "the beginning",
      });
    }
  }

  static async start(o: RunConnectionOptions, pageSize: number, marginSeconds: number) {
    const startedMs = o.writer.clock.now();
    const state = await o.writer.record({
      type: "run-started",
      at: startedMs,
      thresholdSeconds: o.thresholdSeconds,
    });
    return new _Run(o, state, startedMs, pageSize, marginSeconds * 1000);
  }

  /** Throws to stop between requests (a stop signal, a lost lease, another reader's failure). */
  beforeRequest(): void {
    const { signal, hardSignal } = this.o;
    if (signal?.aborted || hardSignal?.aborted || this.failure !== undefined) {
      throw new _Aborted();
    }
    this.writer.fence.assertHeld();
    this.counts.mailchimpRequests++;
  }

  /** The checkpoint: how far the window is acknowledged, as the state keeps it. */
  progress(): RunProgress | null {
    const upper = this.reader.upper;
    const cursor = this.board.cursor;
    return upper === undefined ? null : {
      upper: _iso(upper),
      cursor: cursor === undefined ? null : _iso(cursor),
      started_at: this.state.run?.started_at ?? _iso(this.startedMs),
      read: this.counts.read,
      pushed: this.counts.pushed,
      rejected: this.counts.rejected,
    };
  }

  /**
   * Writes the holds, then the cursor, taken at one instant. A member is held before the
   * cursor can pass it, so every member this cursor passes without Ometria having it is
   * among these holds, written first; writes run one at a time in the order asked for.
   */
  checkpoint(): Promise<void> {
    this.#saving = this.#saving.then(async () => {
      const holds = this.book.take();
      const run = this.progress();
      await this.book.write(holds);
      if (run) {
        await this.writer.record({
          type: "progress",
          run,
          archivedInListing: this.reader.sawArchived,
        });
      }
    });
    return this.#saving;
  }

  /**
   * A pusher for one stream of batches. `onReach` learns how far its acknowledged prefix
   * reaches (absent: the cursor stays, as for past-U members and quarantine retries).
   */
  newPusher(onReach?: (reach: number) => void): OrderedPusher {
    // A stream of the window keeps its share, and takes a larger one as other streams end,
    // so the last slices drain with the run's whole window rather than a sixth of it.
    const share = this.#pushShare();
    return new OrderedPusher({
      sink: this.sink,
      connectionId: this.writer.connection.id,
      concurrency: onReach === undefined ? share : () => Math.max(share, this.#pushShare()),
      signal: this.o.signal,
      hardSignal: this.o.hardSignal,
      onAcknowledged: async (reach, c, released) => {
        this.counts.pushed += c.pushed;
        this.counts.rejected += c.rejected;
        this.counts.unchanged += c.unchanged;
        this.book.release(released);
        const before = this.board.cursor;
        onReach?.(reach);
        // A checkpoint that would not move the cursor can wait for one that does.
        if (onReach === undefined || this.board.cursor !== before || this.book.pending) {
          await this.checkpoint();
        }
        const total = this.reader.totalHint;
        this.o.onProgress?.({
          read: this.counts.read,
          pushed: this.counts.pushed,
          unchanged: this.counts.unchanged,
          ...(total !== undefined ? { total } : {}),
        });
      },
      onRejected: (label, rejected) => {
        this.book.hold(rejected.map((r) => ({ id: r.id, reason: r.reason })));
        this.log.error("{count} record(s) of {batch} not taken by Ometria: {reasons}", {
          count: rejected.length,
          batch: label,
          reasons: [...new Set(rejected.map((r) => r.reason))].slice(0, 3).join("; "),
        });
      },
    });
  }

  /**
   * Ometria requests in flight for a stream of batches starting now: the run's push
   * concurrency shared by the readers running (at least 2 each, never more than the whole).
   * Ten streams with eight each would hold ten times the records serialised, for little more
   * speed: Ometria's rate is per account.
   */
  #pushShare(): number {
    const whole = this.o.pushConcurrency ?? DEFAULT_PUSH_CONCURRENCY;
    return Math.max(Math.min(whole, 2), Math.ceil(whole / Math.max(1, this.#active)));
  }

  /** Members as they are sent (mapped, serialised, hashed); one that cannot be mapped is held. */
  async outgoing(members: readonly Member[], read: ReadStamp) {
    if (members.length === 0) return [];
    const { records, unmappable } = await serializeMembers(members, {
      endpoint: this.o.endpoint ?? "push",
      listId: this.writer.connection.listId,
      mapping: this.o.mapping,
    }, read);
    if (unmappable.length > 0) this.book.hold(unmappable);
    return records;
  }

  /** Pushes records (in any order) without moving the cursor; resolves once all went. */
  async pushUnordered(records: readonly OutgoingRecord[]): Promise<void> {
    if (records.length === 0) return;
    const pusher = this.newPusher();
    await pusher.feed(() =>
      addBatches(pusher, records, this.writer.maxBatchSize, 0, (b) => this.book.heldIn(b))
    );
  }

  /** Pushes members read at or after U (see window_reader.ts): newer than Ometria's copy. */
  async pushBeyond(beyond: readonly BeyondMember[]): Promise<void> {
    if (beyond.length === 0) return;
    this.counts.read += beyond.length;
    const byRead = Map.groupBy(beyond, (b) => b.readSeq);
    const records: OutgoingRecord[] = [];
    for (const [seq, group] of byRead) {
      const read = { atMs: group[0]!.readAtMs, seq };
      records.push(...await this.outgoing(group.map((b) => b.member), read));
    }
    await this.pushUnordered(records);
  }

  /**
   * Pushes the members of `parts` (a reader's slices, in last_changed order) through one
   * pusher. Members that do not fill a whole batch wait for the next page, so requests carry
   * full batches (Ometria limits requests, not records); the reach then stops at the first
   * member left waiting: everything before it is acknowledged. The archived pass's last
   * partial batch rides in the main pass's partial batches instead (`#carry`): its reach
   * moves past those records once they were answered.
   */
  async pushParts(
    parts: AsyncIterable<WindowSlice>,
    pusher: OrderedPusher,
    pass: "main" | "archived",
    onPart?: (part: WindowSlice) => void,
    onReadDone?: () => void,
  ): Promise<void> {
    let waiting: OutgoingRecord[] = [];
    const size = this.writer.maxBatchSize;
    // Records of the archived pass riding at the front of `waiting` (see `#carry`): they go
    // in the next batch, and the reach counts this stream's own records only.
    let carried: { count: number; onSent: () => void } | undefined;
    const addWaiting = async (upTo: number, doneBefore: number) => {
      while (waiting.length > 0 && waiting.length >= upTo) {
        let batch = waiting.slice(0, size);
        // A member once per request: two of its versions in one would race in Ometria.
        if (carried && new Set(batch.map((r) => r.id)).size < batch.length) {
          batch = batch.slice(0, carried.count);
        }
        waiting = waiting.slice(batch.length);
        const onSent = carried?.onSent;
        carried = undefined;
        const reach = waiting.length > 0 ? waiting[0]!.versionMs : doneBefore;
        await pusher.add(batch, reach, this.book.heldIn(batch), onSent);
      }
    };
    /** The archived pass's end, when its last partial batch is offered to the main pass. */
    let tail: number | undefined;
    if (pass === "main") this.#carry.open();
    let failure: { error: unknown } | undefined;
    try {
      await pusher.feed(async () => {
        for await (const part of parts) {
          // The archived pass sends every archived member it reads: the main pass's reads (the
          // final read's too) leave them out rather than send them twice.
          const members = pass === "main" && this.#archivedPassRan
            ? part.members.filter((m) => m.status !== "archived")
            : part.members;
          this.counts.read += members.length;
          this.book.holdInvalid(part.invalid);
          if (part.last && part.toNow) this.#toNow[pass] = true;
          onPart?.(part);
          await this.pushBeyond(part.beyond);
          const read = { atMs: part.readAtMs, seq: part.readSeq };
          // Serialised a batch at a time, as the pusher takes them: a record then lives from
          // its batch's turn to Ometria's answer, not while the rest of its page goes out
          // (what outlives two scavenges is what fills the old generation: README, "What
          // holds memory"). The reach stops at the first member not serialised yet.
          for (let i = 0; i < members.length;) {
            const chunk = members.slice(i, i + Math.max(1, size - waiting.length));
            i += chunk.length;
            const records = await this.outgoing(chunk, read);
            if (pass === "main" && carried === undefined && this.#carry.available > 0) {
              const ids = new Set([...waiting, ...records].map((r) => r.id));
              const taken = this.#carry.take(size - Math.min(waiting.length, size - 1), ids);
              if (taken !== undefined) {
                carried = { count: taken.records.length, onSent: taken.onSent };
                waiting = taken.records.concat(waiting);
              }
            }
            waiting = waiting.length === 0 ? records : waiting.concat(records);
            if (i < members.length) await addWaiting(size, lastChangedOf(members[i]!));
          }
          if (part.last && pass === "archived" && waiting.length % size > 0) {
            // The main pass may take these into its batches: no partial request of their own.
            // Offered once the reader is done, so that its last page goes back to the run's
            // page budget first: the main pass's batch that carries them may need that place.
            await addWaiting(size, part.doneBefore);
            tail = part.doneBefore;
            continue;
          }
          // Members that do not fill a whole batch wait for the next page, but not past the last.
          await addWaiting(part.last ? 1 : size, part.doneBefore);
          const own = waiting.slice(carried?.count ?? 0);
          await pusher.add([], own.length > 0 ? own[0]!.versionMs : part.doneBefore);
        }
        if (tail !== undefined) {
          // Nothing is left to read: the reader's place goes to the main pass's slices while
          // the offer waits for one of their batches.
          onReadDone?.();
          waiting = await this.#carry.offer(waiting);
          await addWaiting(1, tail);
          await pusher.add([], tail);
        }
      });
    } catch (error) {
      failure = { error };
      throw error;
    } finally {
      if (pass === "main") this.#carry.close(failure);
    }
  }

  /** The archived pass's last partial batch, offered to the main pass (see pushParts). */
  readonly #carry = new TailCarry();

  #archivedPassRan = false;

  /** Reads one slice of the main pass with its own reader, cutting off what others can read. */
  async readSlice(slice: Slice): Promise<void> {
    const range = {
      ...(slice.end !== undefined ? { end: slice.end } : {}),
      split: (first: FirstPage) => this.cut(slice, first),
    };
    await this.pushParts(
      this.reader.slices(slice.start, undefined, range),
      this.newPusher((reach) => this.board.reached(slice, reach)),
      "main",
      (part) => {
        if (part.last) slice.end = part.doneBefore;
      },
    );
  }

  /** Cuts what is left of `slice` after its first page into slices for other readers. */
  cut(slice: Slice, first: FirstPage): number | undefined {
    const edges = planSlices(first, {
      ...(this.o.sliceMembers !== undefined ? { sliceMembers: this.o.sliceMembers } : {}),
    });
    if (edges.length === 0) return undefined;
    const end = this.board.cut(slice, edges, first.end);
    this.log.debug("Reading {from} to {to} as {count} slices at once", {
      from: formatMailchimpTime(first.from),
      to: formatMailchimpTime(first.end),
      count: edges.length + 1,
    });
    this.spawn();
    return end;
  }

  /** Starts readers for slices not yet taken, up to `readSlices` at once. */
  spawn(): void {
    const readSlices = Math.max(1, this.o.readSlices ?? DEFAULT_READ_SLICES);
    let waiting = this.board.waiting;
    while (this.#active < readSlices && waiting-- > 0) {
      this.#active++;
      this.#workers.push(this.#worker());
    }
  }

  async #worker(): Promise<void> {
    try {
      for (;;) {
        if (this.failure !== undefined) return;
        const slice = this.board.take();
        if (slice === undefined) return;
        await this.readSlice(slice);
      }
    } catch (error) {
      this.failure ??= error;
    } finally {
      this.#active--;
    }
  }

  /** Tries every quarantined member with an id again, as it is now in Mailchimp. */
  async retryQuarantine(): Promise<void> {
    const ids = QuarantineBook.retryable(
      this.state.quarantine,
      this.o.quarantineRetries ?? DEFAULT_QUARANTINE_RETRIES,
    );
    if (ids.length === 0) return;
    this.log.info("Trying {count} quarantined member(s) again", { count: ids.length });
    const records: OutgoingRecord[] = [];
    const gone: string[] = [];
    for (const id of ids) {
      this.beforeRequest();
      const seq = this.writer.nextSeq();
      const now = await this.o.mailchimp.getMember(
        this.writer.connection.listId,
        id,
        this.o.hardSignal,
      );
      // Deleted or re-keyed: reconciliation opts it out if it was ever pushed.
      if ("gone" in now) gone.push(id);
      else if ("invalid" in now) this.book.hold([{ id, reason: now.invalid.reason }]);
      else records.push(...await this.outgoing([now.member], { atMs: now.serverTimeMs, seq }));
    }
    this.book.release(gone);
    await this.book.flush();
    // Not in last_changed order, and never moving the cursor.
    await this.pushUnordered(records);
    await this.book.flush();
  }

  /** The window: the archived pass (when needed) beside the main pass's slices. */
  async window(): Promise<void> {
    let archived: Promise<void> | undefined;
    if (this.state.archived_in_listing !== true && this.o.archivedInListing !== true) {
      archived = this.#archivedPass();
      // Its first answer fixes U (and finds a clock step): the main pass starts after it.
      await this.#archivedFirstPage.promise;
    }
    this.board.restart();
    this.#mainStarted = true;
    this.spawn();
    // The archived pass first: when it holds the only reader, the main pass starts as it
    // ends. Readers started while this waits are appended, so the loop waits for them too.
    await archived;
    for (let i = 0; i < this.#workers.length; i++) await this.#workers[i];
    if (this.failure !== undefined) throw this.failure;
  }

  #archivedFirstPage = Promise.withResolvers<void>();
  #mainStarted = false;

  /**
   * Until Mailchimp has shown that its default listing includes archived members, they are
   * read on their own, by one of the readers, beside the main pass (which leaves them out).
   * The cursor may not pass what this pass has not had acknowledged, so a crash cannot leave
   * an archived member behind it.
   */
  #archivedPass(): Promise<void> {
    this.#archivedPassRan = true;
    this.board.startArchivedPass();
    this.#active++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#active--;
      // Its reader goes to the main pass's slices waiting for one.
      if (this.#mainStarted) this.spawn();
    };
    return this.pushParts(
      this.reader.slices(this.board.cursor, "archived"),
      this.newPusher((reach) => this.board.archivedReached(reach)),
      "archived",
      () => this.#archivedFirstPage.resolve(),
      release,
    ).then(
      () => this.board.archivedDone(),
      (error) => {
        this.failure ??= error;
      },
    ).finally(() => {
      this.#archivedFirstPage.resolve();
      release();
    });
  }

  /**
   * After the window: what changed from U on, for each pass whose first answer did not reach
   * the present already. Pushed, never moving the watermark past U.
   */
  async finalRead(): Promise<void> {
    const upper = this.reader.upper;
    if (upper === undefined) return;
    const passes: ("main" | "archived")[] = [];
    if (!this.#toNow.main) passes.push("main");
    if (this.#archivedPassRan && !this.#toNow.archived) passes.push("archived");
    // Both at once: neither bounds the other. Both settle before a failure goes on, so no
    // push of either lands after the run recorded its end.
    const done = await Promise.allSettled(passes.map((pass) =>
      this.pushParts(
        this.reader.slices(upper, pass === "archived" ? "archived" : undefined, {
          unbounded: true,
        }),
        this.newPusher(),
        pass,
      )
    ));
    for (const d of done) if (d.status === "rejected") throw d.reason;
  }

  /**
   * After a run that pushed: what Ometria refused after answering OK (async_rejections.ts).
   * Members it names are held and stop counting as acknowledged; the rest fail the run.
   */
  async checkAsyncRejections(): Promise<void> {
    if (!this.#checksErrors || this.counts.pushed + this.counts.rejected === 0) return;
    const state = await this.writer.store.get(this.writer.connection.id);
    const found = await checkAsyncRejections(
      this.writer,
      state?.async_errors_seen ?? null,
      this.#requestIds,
      this.counts.rejected,
      this.o.hardSignal,
    );
    if (found === undefined) return;
    if (found.held.length > 0) {
      this.book.hold(found.held);
      await this.writer.unacknowledge(found.held.flatMap((h) => h.id ?? []));
      this.counts.rejected += found.held.length;
    }
    this.#untied = found.truncated
      ? [...found.untied, "more may have been lost: Ometria keeps its latest 100 errors"]
      : found.untied;
  }

  /** The whole run: retries, window, final read, outcome. */
  async execute(): Promise<RunResult> {
    let outcome: RunResult["outcome"] = "ok";
    let error: string | undefined;
    try {
      await this.retryQuarantine();
      await this.window();
      await this.finalRead();
      await this.#saving;
      await this.book.flush();
      await this.writer.flushAcks();
    } catch (e) {
      const { hardSignal } = this.o;
      if (
        e instanceof _Aborted || e instanceof StoppedError ||
        (hardSignal?.aborted && e === hardSignal.reason)
      ) {
        outcome = "aborted";
      } else {
        outcome = "failed";
        // Stored, logged and sent by alerts: no configured secret may ride along.
        if (!(e instanceof FencedError)) error = toErrorText(e, this.o.secrets ?? []);
      }
    }
    if (!this.writer.fence.signal.aborted) {
      await this.#saving.catch(() => {});
      // Whatever else happened: what this run sent is checked, so its errors are its own.
      try {
        await this.checkAsyncRejections();
      } catch (e) {
        if (e instanceof FencedError) throw e;
        this.log.warn("Cannot check what Ometria refused after OK: {error}", {
          error: toErrorText(e, this.o.secrets ?? []),
        });
      }
      await this.book.flush();
      if (this.#untied.length > 0 && outcome === "ok") {
        outcome = "failed";
        error = `Ometria refused ${this.#untied.length} record(s) after answering OK that ` +
          `cannot be tied to a member (${this.#untied.slice(0, 3).join("; ")}${
            this.#untied.length > 3 ? "; …" : ""
          }): look at the account's data import errors in Ometria`;
      }
    }
    const upper = this.reader.upper;
    const cursor = this.board.cursor;
    return await recordOutcome({
      writer: this.writer,
      outcome,
      error,
      completed: outcome === "ok" && upper !== undefined && cursor !== undefined &&
        cursor >= upper,
      upperMs: upper,
      fullRead: this.state.run === null && this.state.watermark === null,
      startedMs: this.startedMs,
      resumedStartedAt: this.state.run?.started_at,
      counts: this.counts,
      findings: {
        archivedInListing: this.reader.sawArchived,
        clockSeen: this.reader.serverTimeMs === undefined
          ? undefined
          : { mailchimpMs: this.reader.serverTimeMs, localMs: this.startedMs },
      },
      progress: this.progress(),
      sawArchived: this.reader.sawArchived,
      untiedRejections: this.#untied,
    });
  }
}

/**
 * Where a window must start when Mailchimp's clock stepped back, or undefined. The last run
 * saw Mailchimp at `clock_seen.mailchimp_at` when ours said `local_at`; without a step,
 * Mailchimp would now say that plus the time passed on ours. A shortfall (the step) larger
 * than the margin means changes since then may be stamped before the lower edge: the window
 * starts where the last run's Mailchimp time falls on the stepped-back clock. Our own clock
 * stepping forward looks the same and only makes us read more; stepping back hides nothing.
 */
function _rewindFor(
  state: ConnectionState,
  serverTimeMs: number,
  lower: number | undefined,
  localNowMs: number,
  marginMs: number,
  log: Logger,
): number | undefined {
  if (lower === undefined) return undefined;
  const seen = state.clock_seen;
  let step: number;
  let from: number;
  if (seen) {
    const then = Date.parse(seen.mailchimp_at);
    step = then + Math.max(0, localNowMs - Date.parse(seen.local_at)) - serverTimeMs;
    from = then - step;
  } else {
    // No earlier reading: only a clock behind the lower edge itself shows the step.
    step = lower + marginMs - serverTimeMs;
    from = serverTimeMs - marginMs - step;
  }
  if (step <= marginMs) return undefined;
  const rewound = Math.floor(from / 1000) * 1000 - 1000;
  if (rewound >= lower) return undefined;
  log.warn(
    "Mailchimp's clock for {connection} is behind: it says {mailchimp}, {step} s behind what " +
      "the last run saw, and behind the watermark {watermark}; reading again from {from} so " +
      "changes stamped in the stepped-back time are not missed",
    {
      connection: state.id,
      mailchimp: new Date(serverTimeMs).toISOString(),
      step: Math.round(step / 1000),
      watermark: formatMailchimpTime(lower),
      from: formatMailchimpTime(rewound),
    },
  );
  return rewound;
}
