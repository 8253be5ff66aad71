/**
 * Deep reconciliation of one connection, through its writer: every member Mailchimp has now,
 * mapped and hashed, against the content ledger (what this program last sent Ometria).
 * Polling cannot see a member that is gone — deleted permanently, or left behind under its
 * old id by an email change — and nothing but a comparison of contents can see a value that
 * went stale (a clock excursion between two runs, a change Ometria merged away). So:
 *
 * - a member whose record differs from the ledger's is pushed (through the gate, so a newer
 *   push of it in flight is never overtaken);
 * - a member the ledger lacks is pushed;
 * - an id of the ledger Mailchimp did not list is fetched by its subscriber hash (a listing
 *   read with offsets can skip a member while the list changes) and opted out only when
 *   Mailchimp answers 404;
 * - the ledger changes by increments only (the writer's), so nothing a webhook or a run adds
 *   meanwhile is undone.
 *
 * Only differences of members older than the watermark count as a divergence (polling should
 * have delivered them; `connection.diverged`); newer ones are polling's next window, pushed
 * early. Cost: one Mailchimp request per 1000 members, one per apparent orphan, and Ometria
 * requests only for differences.
 *
 * @module
 */
import { DEFAULT_PUSH_CONCURRENCY } from "../config/defaults.ts";
import { errorText } from "../log/error_text.ts";
import { ID_BYTES, IdSet, isMemberId, packId } from "../state/id_set.ts";
import type { LedgerTable } from "../state/ledger_table.ts";
import type { ConnectionState, ReconcileSummary } from "../state/schema.ts";
import { judge } from "../writer/gate.ts";
import { LedgerTable as Table } from "../state/ledger_table.ts";
import {
  addBatches,
  countingSink,
  OrderedPusher,
  orphanRecord,
  type OutgoingRecord,
  rejectedRecords,
  serializeMembers,
} from "./push_in_order.ts";
import type { EngineContext } from "./ports.ts";

/** Options of {@linkcode reconcileConnection}. */
export interface ReconcileOptions extends EngineContext {
  /** Ometria requests in flight at once. @default {8} */
  pushConcurrency?: number;
  /** Stops between requests; nothing is recorded as reconciled. */
  signal?: AbortSignal;
}

/** What a reconciliation found and did. */
export interface ReconcileResult {
  outcome: "ok" | "failed" | "aborted";
  summary?: ReconcileSummary;
  /** Orphans, or members older than the watermark missing or stale in Ometria. */
  diverged: boolean;
  /**
   * True when the connection had no ledger although it had synced (state imported from the
   * original tool): the ledger was started from Mailchimp's members, nothing pushed.
   */
  seeded: boolean;
  mailchimpRequests: number;
  ometriaRequests: number;
  error?: string;
}

const _PAGE = 1000;

/** Why a member is pushed by a reconciliation. */
type _Cause = "missing" | "stale" | "ahead";

/** Runs one reconciliation; never throws for API failures (they become `failed`). */
export async function reconcileConnection(o: ReconcileOptions): Promise<ReconcileResult> {
  const { writer, signal } = o;
  const { connection } = writer;
  const log = writer.logger.with({ connection: connection.id, list_id: connection.listId });
  const counts = { mailchimpRequests: 0, ometriaRequests: 0 };
  const step = () => {
    signal?.throwIfAborted();
    writer.fence.assertHeld();
    counts.mailchimpRequests++;
  };
  try {
    const state = await writer.store.get(connection.id);
    const table = await writer.table();
    const ledgerBefore = table.liveSize;
    const found = await _readAndPush(o, state, table, step, counts);
    const orphans = await _confirmOrphans(o, table, found.seen, step, counts);
    step();
    const list = await o.mailchimp.getList(connection.listId, signal);
    await writer.record({ type: "list-named", name: list.name });
    const c = found.causes;
    const summary: ReconcileSummary = {
      at: new Date(writer.clock.now()).toISOString(),
      mailchimp_members: found.seen.size,
      ledger_members: ledgerBefore,
      orphans: orphans.optedOut.length,
      missing: c.missing,
      stale: c.stale,
      ahead: c.ahead,
      adopted: found.adopted,
      repaired: orphans.optedOut.length + found.pushed,
      orphan_ids: orphans.optedOut.slice(0, 20),
    };
    await writer.record({ type: "reconciled", summary });
    const diverged = summary.orphans > 0 || c.missing > 0 || c.stale > 0;
    log[diverged ? "warn" : "info"](
      "Reconciled: {mailchimp} in Mailchimp, {ledger} pushed before, {orphans} orphan(s) opted " +
        "out, {missing} missing and {stale} stale pushed, {ahead} newer than the watermark " +
        "pushed early, {unchanged} unchanged",
      {
        mailchimp: summary.mailchimp_members,
        ledger: ledgerBefore,
        orphans: summary.orphans,
        missing: c.missing,
        stale: c.stale,
        ahead: c.ahead,
        unchanged: found.unchanged,
      },
    );
    return { outcome: "ok", summary, diverged, seeded: found.seeded, ...counts };
  } catch (error) {
    const none = { diverged: false, seeded: false, ...counts };
    if (signal?.aborted) return { outcome: "aborted", ...none };
    const text = errorText(error, o.secrets ?? []);
    log.error("Reconciliation failed: {error}", { error: text });
    return { outcome: "failed", error: text, ...none };
  }
}

interface _Found {
  seen: IdSet;
  causes: Record<_Cause, number>;
  pushed: number;
  unchanged: number;
  /** Entries of the id-only ledger of earlier releases given the hash Mailchimp has now. */
  adopted: number;
  /** The ledger was empty although the connection had synced: it was started, not pushed. */
  seeded: boolean;
}

/**
 * Reads every member (default order, with offsets), pushes what differs from the ledger, and
 * returns the ids seen. Members are not kept: each page is mapped, judged and pushed.
 */
async function _readAndPush(
  o: ReconcileOptions,
  state: ConnectionState | undefined,
  table: LedgerTable,
  step: () => void,
  counts: { ometriaRequests: number },
): Promise<_Found> {
  const { writer, signal } = o;
  const { connection } = writer;
  const watermark = state?.watermark ? Date.parse(state.watermark) : -Infinity;
  const found: _Found = {
    seen: IdSet.empty(),
    causes: { missing: 0, stale: 0, ahead: 0 },
    pushed: 0,
    unchanged: 0,
    adopted: 0,
    // State imported from the original tool: polling has pushed everyone listed now.
    seeded: table.size === 0 && state?.watermark != null,
  };
  const quarantined = new Set(state?.quarantine.flatMap((e) => e.id ?? []) ?? []);
  const refused: { id: string; reason: string }[] = [];
  const pusher = new OrderedPusher({
    sink: countingSink(writer, counts),
    connectionId: connection.id,
    concurrency: o.pushConcurrency ?? DEFAULT_PUSH_CONCURRENCY,
    signal,
    onAcknowledged: (_reach, c) => {
      found.pushed += c.pushed;
      return Promise.resolve();
    },
    onRejected: (_label, rejected) => refused.push(...rejected),
  });
  let ids: Uint8Array<ArrayBuffer> = new Uint8Array(ID_BYTES * _PAGE);
  let idCount = 0;
  const adopt: OutgoingRecord[] = [];
  await pusher.feed(async () => {
    for (let offset = 0;;) {
      step();
      const seq = writer.nextSeq();
      const page = await o.mailchimp.getMembers(
        connection.listId,
        { count: _PAGE, offset },
        signal,
      );
      if (offset === 0 && page.totalItems > _PAGE) {
        ids = _grow(ids, ID_BYTES * (page.totalItems + _PAGE));
      }
      const { records } = await serializeMembers(page.members, {
        endpoint: o.endpoint ?? "push",
        listId: connection.listId,
        mapping: o.mapping,
      }, { atMs: page.serverTimeMs, seq });
      const send: OutgoingRecord[] = [];
      for (const r of records) {
        if (!isMemberId(r.id)) continue;
        if ((idCount + 1) * ID_BYTES > ids.length) ids = _grow(ids, ids.length * 2);
        packId(r.id, ids, idCount++ * ID_BYTES);
        const entry = table.get(r.id);
        if (found.seeded || (entry !== undefined && entry.hash === "" && !entry.gone)) {
          adopt.push(r);
          continue;
        }
        const verdict = judge(entry, entry?.issuedSeq ?? 0, r);
        if (verdict === "unchanged" || verdict === "stale") {
          if (verdict === "unchanged") found.unchanged++;
          continue;
        }
        if (quarantined.has(r.id)) continue; // the run retries it, and status shows it
        const cause: _Cause = r.versionMs >= watermark
          ? "ahead"
          : entry === undefined
          ? "missing"
          : "stale";
        found.causes[cause]++;
        send.push(r);
      }
      for (let i = 0; i < send.length; i += writer.maxBatchSize) {
        await addBatches(pusher, send.slice(i, i + writer.maxBatchSize), writer.maxBatchSize, 0);
      }
      if (page.size < _PAGE) break;
      offset += page.size;
    }
  });
  found.adopted = await _adopt(o, table, adopt);
  if (refused.length > 0) {
    await writer.record({ type: "quarantine", at: writer.clock.now(), add: refused, release: [] });
  }
  found.seen = IdSet.fromPacked(ids.subarray(0, idCount * ID_BYTES));
  return found;
}

/**
 * Entries of the id-only ledger of earlier releases (no hash) take the hash of the member as
 * Mailchimp has it now, without a push: polling sent each of them at its last change, so
 * Ometria holds that content unless something diverged, which `verify` shows. Sending them
 * all instead would spend hours of the account's push budget once per upgrade.
 */
async function _adopt(
  o: ReconcileOptions,
  table: LedgerTable,
  records: readonly OutgoingRecord[],
): Promise<number> {
  if (records.length === 0) return 0;
  const parts = records.map((r) => {
    const entry = { versionMs: r.versionMs, hash: r.hash, acked: true, gone: false, final: true };
    table.set(r.id, entry);
    return Table.packRecord(r.id, entry);
  });
  await o.writer.appendLedger(parts);
  return records.length;
}

/**
 * Ids of the ledger (not opted out already) that the listing did not show, each fetched by
 * its hash; those Mailchimp answers 404 for are opted out through the gate, the others (a
 * listing read with offsets skipped them) are left alone.
 */
async function _confirmOrphans(
  o: ReconcileOptions,
  table: LedgerTable,
  seen: IdSet,
  step: () => void,
  counts: { ometriaRequests: number },
): Promise<{ optedOut: string[] }> {
  const { writer, signal } = o;
  const { connection } = writer;
  const endpoint = o.endpoint ?? "push";
  const candidates = table.liveIds().minus(seen);
  const gone: OutgoingRecord[] = [];
  for (const id of candidates) {
    step();
    const readSeq = writer.nextSeq();
    const now = await o.mailchimp.getMember(connection.listId, id, signal);
    if (!("gone" in now)) continue;
    gone.push(
      orphanRecord(
        id,
        connection.listId,
        endpoint,
        now.serverTimeMs ?? writer.clock.now(),
        readSeq,
      ),
    );
  }
  const optedOut: string[] = [];
  const sink = countingSink(writer, counts);
  for (let i = 0; i < gone.length; i += writer.maxBatchSize) {
    const batch = gone.slice(i, i + writer.maxBatchSize);
    const result = await sink.push(batch, { signal, label: `${connection.id} orphans` });
    const refused = new Set(rejectedRecords(batch, result).map((r) => r.id));
    for (const r of batch) if (!refused.has(r.id)) optedOut.push(r.id);
  }
  if (optedOut.length > 0) {
    writer.logger.warn("Opted out {count} contact(s) of {connection} gone from Mailchimp: {ids}", {
      count: optedOut.length,
      connection: connection.id,
      ids: optedOut.slice(0, 10).join(", "),
    });
  }
  return { optedOut };
}

function _grow(bytes: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  const grown = new Uint8Array(size);
  grown.set(bytes);
  return grown;
}
