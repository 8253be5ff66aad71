/**
 * One run of the engine over one connection: try the quarantined members again, read the
 * window of changed members from Mailchimp, push them to Ometria in batches, checkpoint after
 * every acknowledged batch, and move the watermark when the whole window is done.
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
 *   recorded before the cursor passes it — and tried again by id on every run until it goes
 *   through or is gone; while anything is quarantined the run's outcome is a failure.
 * - Slices (plan_slices.ts). A big window is cut at whole seconds into slices [a, b) that
 *   tile it, each read by its own reader with every rule above (`before_last_changed = b`,
 *   so a short page proves the slice; a tie group lies in one second, so in one slice).
 *   Slices only change who reads which part, never what counts as proof.
 * - Checkpoints (push_in_order.ts). The cursor moves only over a contiguous prefix of
 *   acknowledged (or quarantined) batches of the whole window: it stops in the first slice
 *   not done, whatever later slices acknowledged; the watermark moves to U only when every
 *   slice is done. A crash costs re-reading and re-pushing the unacknowledged part: what
 *   was in flight, plus what slices after the first unfinished one had pushed.
 * - Ids pushed are written to the ledger before the push, so reconciliation
 *   (reconcile.ts) can opt out every id that later disappears from Mailchimp.
 * - Cost. A run where nothing changed sends one Mailchimp request (two while archived
 *   members still have to be read on their own) and no Ometria request.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { InvalidMember, Member } from "../mailchimp/member.ts";
import { errorText as toErrorText } from "../log/error_text.ts";
import { formatMailchimpTime, parseMailchimpTime } from "../mailchimp/time.ts";
import { unfenced } from "../state/fence.ts";
import { LedgerTable } from "../state/ledger_table.ts";
import type { ConnectionState, RunProgress } from "../state/schema.ts";
import { QUARANTINE_LIMIT, type QuarantineFinding, record } from "../state/transitions.ts";
import type { ConnectionContext } from "./ports.ts";
import { planSlices } from "./plan_slices.ts";
import {
  addBatches,
  countingSink,
  OrderedPusher,
  type OutgoingRecord,
  serializeMembers,
  StoppedError,
} from "./push_in_order.ts";
import { type FirstPage, WindowReader, type WindowSlice } from "./window_reader.ts";

/** Options of {@linkcode runConnection}. */
export interface RunConnectionOptions extends ConnectionContext {
  /** `thresholdSeconds` is recorded in the state for `status`. */
  connection: { id: string; listId: string; thresholdSeconds?: number };
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
   * Slices of one window read at once, each by its own reader (the key's connection limit
   * still caps the requests in flight; each slice holds about two pages). Measured on a
   * million members with the default field mapping: 2 readers read 28k members/s at a
   * 113–117 MiB peak, 3 read 35k/s at 123 MiB, 6 read 39k/s at 153 MiB. @default {2}
   */
  readSlices?: number;
  /**
   * Members a slice should hold: a window (or slice) guessed to hold at least twice this
   * many after its first page is cut into slices (see plan_slices.ts). @default {50_000}
   */
  sliceMembers?: number;
  /** Quarantined members tried again per run (one Mailchimp request each). @default {200} */
  quarantineRetries?: number;
  /** Stops the run between requests and batches (graceful shutdown): progress is kept. */
  signal?: AbortSignal;
  /** Aborts requests in flight (hard stop); progress up to the last checkpoint is kept. */
  hardSignal?: AbortSignal;
  /** Called after every acknowledged batch. */
  onProgress?: (progress: { read: number; pushed: number; total?: number }) => void;
  /**
   * Mailchimp's default listing is known (from another list) to include archived members:
   * skip the separate archived pass. It is the API's behaviour, not a list's.
   * @default {false}
   */
  archivedInListing?: boolean;
}

/** What a run did. */
export interface RunResult {
  outcome: "ok" | "failed" | "aborted";
  /** True when the whole window was acknowledged (the watermark moved to U). */
  completed: boolean;
  /** Members read from Mailchimp by this run that were inside the window. */
  read: number;
  pushed: number;
  rejected: number;
  /** Members in quarantine when the run ended. */
  quarantined: number;
  durationMs: number;
  mailchimpRequests: number;
  ometriaRequests: number;
  /** U of the run (Mailchimp time, ISO) once known. */
  upper?: string;
  error?: string;
  /** True when this run's listing showed archived members among the others. */
  sawArchivedInListing: boolean;
}

class _Aborted extends Error {}

function _iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Runs one connection once and records the outcome in the store. Never throws for API
 * failures: they become `outcome: "failed"` with the error, and the checkpoint stays.
 */
export async function runConnection(options: RunConnectionOptions): Promise<RunResult> {
  const { connection, store, clock, logger, signal, hardSignal } = options;
  const pageSize = options.pageSize ?? 1000;
  const marginSeconds = options.marginSeconds ?? 60;
  const log = logger.with({ connection: connection.id, list_id: connection.listId });
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
    throw new RangeError(`Cannot run as 'pageSize' must be 1..1000: current value ${pageSize}`);
  }
  if (!(marginSeconds >= 2)) {
    throw new RangeError(
      `Cannot run as 'marginSeconds' must be >= 2: current value ${marginSeconds}`,
    );
  }

  const started = clock.now();
  const conn = { id: connection.id, listId: connection.listId };
  const state: ConnectionState = await record(store, conn, {
    type: "run-started",
    at: started,
    thresholdSeconds: connection.thresholdSeconds,
  });
  const ledger = store.ledger(connection.id);
  // Transitional: a run does not carry its lease's fence down yet.
  const fence = unfenced(connection.id);
  const resumed = state.run;
  /** Every window member with last_changed < cursor is acknowledged (undefined: none yet). */
  let cursor: number | undefined = resumed
    ? (resumed.cursor ? Date.parse(resumed.cursor) : undefined)
    : (state.watermark ? Date.parse(state.watermark) : undefined);
  const fullRead = cursor === undefined;
  const counts = { read: 0, pushed: 0, rejected: 0, mailchimpRequests: 0, ometriaRequests: 0 };
  if (resumed) {
    log.info("Resuming an interrupted run from {cursor}", {
      cursor: resumed.cursor ?? "the beginning",
    });
  }
  /** The first error of any slice: the other slices stop at their next request. */
  let failure: unknown;
  const beforeRequest = () => {
    if (signal?.aborted || hardSignal?.aborted || failure !== undefined) throw new _Aborted();
    counts.mailchimpRequests++;
  };

  // Quarantine bookkeeping: what is held now, and what this run adds and releases. Additions
  // are recorded before the checkpoint that passes them (see `checkpoint`).
  let pendingHold: QuarantineFinding[] = [];
  // A member at the edge of two pages is met twice; it is one attempt.
  const heldThisRun = new Set<string>();
  // Every key the quarantine holds or will hold (the member's id, or `?reason` for one
  // without): it may not grow past QUARANTINE_LIMIT.
  const heldKeys = new Set(state.quarantine.map((e) => e.id ?? `?${e.reason}`));
  /**
   * Holds members back. Throws when the quarantine is full: the member cannot be held, so
   * its batch must not count as done and the cursor must not pass it (a throw here fails the
   * batch in push_in_order, or the slice in the read loop); the run fails and the next one
   * reads it again.
   */
  const hold = (findings: readonly QuarantineFinding[]) => {
    for (const f of findings) {
      const key = f.id ?? `?${f.reason}`;
      if (heldThisRun.has(key)) continue;
      if (!heldKeys.has(key) && heldKeys.size >= QUARANTINE_LIMIT) {
        throw new Error(
          `More than ${QUARANTINE_LIMIT} members of list ${connection.listId} cannot be ` +
            `delivered (the latest: ${f.reason}); the run stops before them so that none is ` +
            "skipped. Fix the cause shown by status, and the next run goes on from here",
        );
      }
      heldKeys.add(key);
      heldThisRun.add(key);
      pendingHold.push(f);
    }
  };
  /** Takes the holds waiting to be written: the caller writes them with `writeHolds`. */
  const takeHolds = () => {
    const add = pendingHold;
    pendingHold = [];
    return add;
  };
  const writeHolds = async (add: QuarantineFinding[], release: readonly string[] = []) => {
    if (add.length === 0 && release.length === 0) return;
    try {
      await record(store, conn, { type: "quarantine", at: clock.now(), add, release });
    } catch (error) {
      // Not written: they wait for the next write (the run's last one at the latest), so
      // the cursor that run records never passes a hold that is not on disk.
      pendingHold = [...add, ...pendingHold];
      releasing = [...release, ...releasing];
      throw error;
    }
    for (const id of release) heldKeys.delete(id);
    for (const f of add) {
      log.warn("Member {id} quarantined: {reason}", { id: f.id ?? "(no id)", reason: f.reason });
    }
  };
  const recordHolds = (release: readonly string[] = []) => {
    const add = takeHolds();
    return writeHolds(add, [...release, ...takeReleases(add)]);
  };
  // Held members that went through this run leave quarantine at the next write of holds (one
  // held again meanwhile stays).
  let releasing: string[] = [];
  const takeReleases = (add: readonly QuarantineFinding[]) => {
    const out = releasing;
    releasing = [];
    if (add.length === 0) return out;
    const again = new Set(add.map((f) => f.id));
    return out.filter((id) => !again.has(id));
  };
  const holdInvalid = (invalid: readonly InvalidMember[]) =>
    hold(invalid.map((m) => ({ id: m.id, reason: m.reason })));

  const reader = new WindowReader({
    listId: connection.listId,
    source: options.mailchimp,
    logger: log,
    pageSize,
    marginMs: marginSeconds * 1000,
    maxTiePasses: options.maxTiePasses ?? 20,
    hardSignal,
    beforeRequest,
    rewind: (serverTimeMs, lower) => {
      const to = _rewindFor(state, serverTimeMs, lower, clock.now(), marginSeconds * 1000, log);
      // The main pass starts from the cursor too, whichever pass met the clock first.
      if (to !== undefined && cursor !== undefined && to < cursor) {
        cursor = to;
        if (slices[0]!.reach === undefined) slices[0]!.start = to;
      }
      return to;
    },
  });

  const progress = (): RunProgress | null =>
    reader.upper === undefined ? null : {
      upper: _iso(reader.upper),
      cursor: cursor === undefined ? null : _iso(cursor),
      started_at: resumed?.started_at ?? _iso(started),
      read: counts.read,
      pushed: counts.pushed,
      rejected: counts.rejected,
    };
  // Slices acknowledge concurrently; their store writes go one at a time, in the order they
  // were asked for, so a hold is always written before a checkpoint that passes it.
  let saving = Promise.resolve();
  const serially = (write: () => Promise<void>) => {
    saving = saving.then(write);
    return saving;
  };
  const checkpoint = () =>
    serially(async () => {
      // The holds and the cursor are taken at one instant: a member is held (hold) before
      // the cursor can pass it (onReach), so every member this cursor passes without Ometria
      // having it is among these holds, written first. Taking the cursor after the holds'
      // write would let it pass a member held meanwhile, whose hold is not written yet.
      const add = takeHolds();
      const run = progress();
      await writeHolds(add, takeReleases(add));
      if (run) {
        await record(store, conn, {
          type: "progress",
          run,
          archivedInListing: reader.sawArchived,
        });
      }
    });

  const ometria = countingSink(options.ometria, counts);
  const batchSize = () => options.ometria.maxBatchSize;
  /**
   * A pusher for one stream of batches. `onReach` learns how far its acknowledged prefix
   * reaches (absent: the cursor stays, as for the archived pass and quarantine retries).
   */
  const newPusher = (onReach?: (reach: number) => void) =>
    new OrderedPusher({
      sink: ometria,
      connectionId: connection.id,
      concurrency: options.pushConcurrency ?? 8,
      signal,
      hardSignal,
      onAcknowledged: async (reach, pushed, rejected, released) => {
        counts.pushed += pushed;
        counts.rejected += rejected;
        if (released.length > 0) releasing.push(...released);
        const before = cursor;
        onReach?.(reach);
        // A checkpoint that would not move the cursor can wait for one that does.
        if (
          onReach === undefined || cursor !== before || pendingHold.length > 0 ||
          released.length > 0
        ) {
          await checkpoint();
        }
        const total = reader.totalHint;
        options.onProgress?.({
          read: counts.read,
          pushed: counts.pushed,
          ...(total !== undefined ? { total } : {}),
        });
      },
      onRejected: (label, rejected) => {
        hold(rejected.map((r) => ({ id: r.id, reason: r.reason })));
        log.error("{count} record(s) of {batch} not taken by Ometria: {reasons}", {
          count: rejected.length,
          batch: label,
          reasons: [...new Set(rejected.map((r) => r.reason))].slice(0, 3).join("; "),
        });
      },
    });
  /** Ids of a batch that are held now: they leave quarantine once it goes through. */
  const heldIn = (batch: readonly OutgoingRecord[]) =>
    heldKeys.size === 0 ? [] : batch.flatMap((r) => heldKeys.has(r.id) ? [r.id] : []);
  /**
   * Members as they are sent: written to the ledger first (an id is there before Ometria
   * can have it), then mapped and serialised; one that cannot be mapped is held.
   */
  const outgoing = async (members: readonly Member[]) => {
    if (members.length === 0) return [];
    await ledger.append(writeAheadRecords(members), fence);
    const { records, unmappable } = await serializeMembers(members, {
      endpoint: options.endpoint ?? "push",
      listId: connection.listId,
      mapping: options.mapping,
    });
    if (unmappable.length > 0) hold(unmappable);
    return records;
  };
  /** Pushes members (in any order) without moving the cursor; resolves once all went. */
  const push = async (members: readonly Member[]) => {
    const pusher = newPusher();
    await pusher.feed(async () =>
      addBatches(pusher, await outgoing(members), batchSize(), 0, heldIn)
    );
  };
  /**
   * Pushes the members of `parts` (a reader's slices, in last_changed order) through one
   * pusher. Members that do not fill a whole batch wait for the next page, so requests carry
   * full batches (Ometria limits requests, not records); the reach then stops at the first
   * member left waiting: everything before it is acknowledged.
   */
  const pushParts = async (
    parts: AsyncIterable<WindowSlice>,
    pusher: OrderedPusher,
    archivedPass: boolean,
    onPart?: (part: WindowSlice) => void,
  ) => {
    let waiting: OutgoingRecord[] = [];
    await pusher.feed(async () => {
      for await (const part of parts) {
        // The archived pass sent every archived member of the window (one changed since is
        // stamped at or after U, outside it): the same version is not sent twice in one run.
        const members = archivedPass
          ? part.members.filter((m) => m.status !== "archived")
          : part.members;
        counts.read += members.length;
        holdInvalid(part.invalid);
        onPart?.(part);
        const records = await outgoing(members);
        waiting = waiting.length === 0 ? records : waiting.concat(records);
        const size = batchSize();
        const full = part.last ? waiting.length : waiting.length - waiting.length % size;
        const now = waiting.slice(0, full);
        waiting = waiting.slice(full);
        const reach = waiting.length > 0 ? waiting[0]!.changedMs : part.doneBefore;
        await addBatches(pusher, now, size, reach, heldIn);
      }
    });
  };

  /**
   * One slice of the main pass: [start, end) of the window, read by its own reader. `end`
   * is undefined until known (the first slice's is U or where it was cut); `reach`: every
   * member of the slice before it is acknowledged.
   */
  interface Slice {
    start: number | undefined;
    end: number | undefined;
    reach: number | undefined;
    started: boolean;
  }
  const slices: Slice[] = [{ start: cursor, end: undefined, reach: undefined, started: false }];
  /**
   * The cursor passes only a contiguous acknowledged prefix of the whole window: it stops in
   * the first slice not yet done, whatever later slices have acknowledged.
   */
  const moveCursor = () => {
    let reach: number | undefined;
    for (const s of slices) {
      const r = s.reach ?? s.start;
      if (r !== undefined && (reach === undefined || r > reach)) reach = r;
      if (s.end === undefined || r === undefined || r < s.end) break;
    }
    // Nor may it pass an archived member the archived pass has not had acknowledged.
    if (reach !== undefined && archivedCap !== null && reach > archivedCap) reach = archivedCap;
    if (reach !== undefined && reach !== -Infinity && (cursor === undefined || reach > cursor)) {
      cursor = reach;
    }
  };
  /**
   * While the archived pass runs beside the main pass: how far it has had every archived
   * member acknowledged (-Infinity: nothing yet). Null: no archived pass is running.
   */
  let archivedCap: number | null = null;
  const readSlices = Math.max(1, options.readSlices ?? 2);
  const workers: Promise<void>[] = [];
  let active = 0;
  /** Cuts what is left of `slice` after its first page into slices for other readers. */
  const cut = (slice: Slice, first: FirstPage, archivedPass: boolean): number | undefined => {
    const edges = planSlices(first, {
      ...(options.sliceMembers !== undefined ? { sliceMembers: options.sliceMembers } : {}),
    });
    if (edges.length === 0) return undefined;
    const bounds = [...edges, first.end];
    const added = edges.map((start, i): Slice => ({
      start,
      end: bounds[i + 1]!,
      reach: undefined,
      started: false,
    }));
    slice.end = edges[0]!;
    slices.splice(slices.indexOf(slice) + 1, 0, ...added);
    log.debug("Reading {from} to {to} as {count} slices at once", {
      from: formatMailchimpTime(first.from),
      to: formatMailchimpTime(first.end),
      count: added.length + 1,
    });
    spawn(archivedPass);
    return slice.end;
  };
  const readSlice = async (slice: Slice, archivedPass: boolean) => {
    const range = {
      ...(slice.end !== undefined ? { end: slice.end } : {}),
      split: (first: FirstPage) => cut(slice, first, archivedPass),
    };
    const onReach = (reach: number) => {
      if (slice.reach === undefined || reach > slice.reach) slice.reach = reach;
      moveCursor();
    };
    await pushParts(
      reader.slices(slice.start, undefined, range),
      newPusher(onReach),
      archivedPass,
      (part) => {
        if (part.last) slice.end = part.doneBefore;
      },
    );
  };
  const worker = async (archivedPass: boolean) => {
    try {
      for (;;) {
        const slice = slices.find((s) => !s.started);
        if (slice === undefined || failure !== undefined) return;
        slice.started = true;
        await readSlice(slice, archivedPass);
      }
    } catch (error) {
      failure ??= error;
    } finally {
      active--;
    }
  };
  /** Starts readers for slices not yet started, up to `readSlices` at once. */
  function spawn(archivedPass: boolean) {
    let waitingSlices = slices.filter((s) => !s.started).length;
    while (active < readSlices && waitingSlices-- > 0) {
      active++;
      workers.push(worker(archivedPass));
    }
  }

  let outcome: RunResult["outcome"] = "ok";
  let errorText: string | undefined;
  try {
    await _retryQuarantine();
    let archivedPass = false;
    let archived: Promise<void> | undefined;
    let mainStarted = false;
    if (state.archived_in_listing !== true && options.archivedInListing !== true) {
      archivedPass = true;
      // Until Mailchimp has shown that its default listing includes archived members, they
      // are read on their own, by one of the readers, beside the main pass (which leaves
      // them out). The cursor may not pass what this pass has not had acknowledged, so a
      // crash cannot leave an archived member behind it.
      archivedCap = -Infinity;
      const firstPage = Promise.withResolvers<void>();
      const onArchivedReach = (reach: number) => {
        if (archivedCap !== null && reach > archivedCap) archivedCap = reach;
        moveCursor();
      };
      active++;
      archived = pushParts(
        reader.slices(cursor, "archived"),
        newPusher(onArchivedReach),
        false,
        () => firstPage.resolve(),
      ).then(
        () => {
          archivedCap = null;
          moveCursor();
        },
        (error) => {
          failure ??= error;
        },
      ).finally(() => {
        active--;
        firstPage.resolve();
        // Its reader goes to the main pass's slices waiting for one.
        if (mainStarted) spawn(true);
      });
      // The first answer fixes U (and finds a clock step): the main pass starts after it.
      await firstPage.promise;
    }
    // The main pass starts at the cursor (a clock step lowers it).
    slices[0]!.start = cursor;
    mainStarted = true;
    spawn(archivedPass);
    // The archived pass first: when it holds the only reader, the main pass starts as it
    // ends. Readers started while this waits are appended, so the loop waits for them too.
    await archived;
    for (let i = 0; i < workers.length; i++) await workers[i];
    if (failure !== undefined) throw failure;
  } catch (error) {
    if (
      error instanceof _Aborted || error instanceof StoppedError ||
      (hardSignal?.aborted && error === hardSignal.reason)
    ) {
      outcome = "aborted";
    } else {
      outcome = "failed";
      // Stored, logged and sent by alerts: no configured secret may ride along.
      errorText = toErrorText(error, options.secrets ?? []);
    }
  }

  /** Tries every quarantined member with an id again, as it is now in Mailchimp. */
  async function _retryQuarantine(): Promise<void> {
    const ids = state.quarantine.flatMap((e) => e.id === null ? [] : [e.id])
      .slice(0, options.quarantineRetries ?? 200);
    if (ids.length === 0) return;
    log.info("Trying {count} quarantined member(s) again", { count: ids.length });
    const members: Member[] = [];
    const gone: string[] = [];
    for (const id of ids) {
      beforeRequest();
      const now = await options.mailchimp.getMember(connection.listId, id, hardSignal);
      if (now === undefined) gone.push(id); // deleted or re-keyed: reconciliation's part
      else if ("invalid" in now) hold([{ id, reason: now.invalid.reason }]);
      else members.push(now.member);
    }
    await recordHolds(gone);
    // Not in last_changed order, and never moving the cursor.
    if (members.length > 0) await push(members);
    await recordHolds();
  }

  const finished = Math.max(started, clock.now());
  const upper = reader.upper;
  const completed = outcome === "ok" && upper !== undefined && cursor !== undefined &&
    cursor >= upper;
  const findings = {
    archivedInListing: reader.sawArchived,
    clockSeen: reader.serverTimeMs === undefined
      ? undefined
      : { mailchimpMs: reader.serverTimeMs, localMs: started },
  };
  await recordHolds();
  let quarantine = (await store.get(connection.id))?.quarantine ?? [];
  if (completed && fullRead && quarantine.some((e) => e.id === null)) {
    // A full read of the list has met every member it could: an unidentifiable member it
    // did not meet again is gone.
    const after = await record(store, conn, {
      type: "quarantine",
      at: finished,
      add: [],
      release: [],
      forgetUnidentifiedBefore: started,
    });
    quarantine = after.quarantine;
  }
  if (outcome === "ok" && quarantine.length > 0) {
    // Never "ok" over a member that was not delivered.
    outcome = "failed";
    const shown = quarantine.slice(0, 3).map((e) => `${e.id ?? "(no id)"}: ${e.reason}`);
    errorText = `${quarantine.length} member(s) quarantined, not in Ometria as they are in ` +
      `Mailchimp (${shown.join("; ")}${quarantine.length > 3 ? "; …" : ""}); see status`;
  }
  const summary = {
    started_at: resumed?.started_at ?? _iso(started),
    finished_at: _iso(finished),
    read: counts.read,
    pushed: counts.pushed,
    rejected: counts.rejected,
    duration_ms: finished - started,
    mailchimp_requests: counts.mailchimpRequests,
    ometria_requests: counts.ometriaRequests,
  };
  // Each update is durable when it resolves on the file store (journaled) and on Deno KV;
  // the tick flushes at its end for any store that coalesces.
  if (completed) {
    // The whole window is acknowledged or held in quarantine. The connection is healthy and
    // moves on without backoff; the quarantine makes the outcome a failure until it empties.
    await record(store, conn, {
      type: "run-completed",
      ...findings,
      upperMs: upper!,
      error: errorText ?? null,
      summary: { ...summary, outcome: outcome === "ok" ? "ok" : "failed" },
    });
  } else if (outcome === "failed") {
    await record(store, conn, {
      type: "run-failed",
      ...findings,
      at: finished,
      run: progress(),
      error: errorText ?? "unknown error",
      summary: { ...summary, outcome: "failed" },
    });
  } else {
    await record(store, conn, { type: "run-aborted", ...findings, run: progress() });
  }

  const result: RunResult = {
    outcome,
    completed,
    read: counts.read,
    pushed: counts.pushed,
    rejected: counts.rejected,
    quarantined: quarantine.length,
    durationMs: finished - started,
    mailchimpRequests: counts.mailchimpRequests,
    ometriaRequests: counts.ometriaRequests,
    sawArchivedInListing: reader.sawArchived,
  };
  if (upper !== undefined) result.upper = _iso(upper);
  if (errorText !== undefined) result.error = errorText;
  return result;
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

/**
 * The ledger records written ahead of pushing `members`: each member's version, its record's
 * hash not known yet, not acknowledged (so the entry never makes a member count as
 * unchanged). Transitional, shared by the engine's three entry points until the content
 * ledger is kept by the run itself.
 */
export function writeAheadRecords(members: readonly Member[]): Uint8Array {
  return LedgerTable.packRecords(members.map((m) => [m.id, {
    // Whole seconds already; kept within what a record holds.
    versionMs: Math.min(Math.max(parseMailchimpTime(m.last_changed) ?? 0, 0), 0xffffffff * 1000),
    hash: "",
    acked: false,
    gone: false,
    final: false,
  }]));
}
