/**
 * Reconciliation of one connection: the ids now in Mailchimp against the ids this program
 * has pushed to Ometria (the ledger). Polling cannot see a member that is gone — deleted
 * permanently, or left behind under its old id by an email change — so this is where such a
 * member's Ometria contact is opted out. It also pushes any member polling missed (which
 * should never happen: that is a bug report, and the `connection.diverged` alert says so).
 *
 * Nothing here trusts a listing to be complete: ids are read with offsets, which can skip a
 * member while the list changes, so every id that looks gone is fetched by its subscriber
 * hash first and opted out only when Mailchimp answers 404. Reading costs about one request
 * per 1000 members; a million ids cost 16 MB in each of the two sets compared.
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";
import type { Member } from "../mailchimp/member.ts";
import { type OmetriaRecord, toOrphanRecord, toRecordJson } from "../mapping/contact.ts";
import { unfenced } from "../state/fence.ts";
import { ID_BYTES, IdSet, isMemberId, packId } from "../state/id_set.ts";
import { LedgerTable } from "../state/ledger_table.ts";
import type { ReconcileSummary } from "../state/schema.ts";
import { record } from "../state/transitions.ts";
import type { ConnectionContext } from "./ports.ts";
import { countingSink, pushInOrder, rejectedRecords } from "./push_in_order.ts";
import { writeAheadRecords } from "./run_connection.ts";

/** Options of {@linkcode reconcileConnection}. */
export interface ReconcileOptions extends ConnectionContext {
  /**
   * Most members missing from the ledger fetched one by one and pushed; more than this is
   * repaired by reading the whole list again on the next run instead. @default {1000}
   */
  missingFetchLimit?: number;
  /** Ometria requests in flight at once. @default {8} */
  pushConcurrency?: number;
  /** Stops between requests; nothing is recorded as reconciled. */
  signal?: AbortSignal;
}

/** What a reconciliation found and did. */
export interface ReconcileResult {
  outcome: "ok" | "failed" | "aborted";
  summary?: ReconcileSummary;
  /** Orphans found or members polling missed: the copy had diverged. */
  diverged: boolean;
  /** True when the ledger was empty and has been started from Mailchimp's ids. */
  seeded: boolean;
  mailchimpRequests: number;
  ometriaRequests: number;
  error?: string;
}

const _PAGE = 1000;

/** Runs one reconciliation; never throws for API failures (they become `failed`). */
export async function reconcileConnection(o: ReconcileOptions): Promise<ReconcileResult> {
  const { connection, store, clock, signal } = o;
  const log = o.logger.with({ connection: connection.id, list_id: connection.listId });
  const endpoint = o.endpoint ?? "push";
  const counts = { mailchimpRequests: 0, ometriaRequests: 0 };
  const step = () => {
    signal?.throwIfAborted();
    counts.mailchimpRequests++;
  };
  const ometria = countingSink(o.ometria, counts);
  /** Pushes members (mapped as a run would); returns the ids Ometria did not take. */
  const pushMembers = async (members: Member[]) => {
    const refused = new Set<string>();
    await pushInOrder(members, 0, {
      sink: ometria,
      endpoint,
      connectionId: connection.id,
      listId: connection.listId,
      concurrency: o.pushConcurrency ?? 8,
      mapping: o.mapping,
      signal,
      onAcknowledged: () => Promise.resolve(),
      onRejected: (_label, rejected) => rejected.forEach((r) => refused.add(r.id)),
    });
    return refused;
  };
  /** Pushes orphan records, a batch at a time; returns the ids Ometria did not take. */
  const pushOrphans = async (records: OmetriaRecord[]) => {
    const refused = new Set<string>();
    for (let i = 0; i < records.length; i += ometria.maxBatchSize) {
      signal?.throwIfAborted();
      const batch = records.slice(i, i + ometria.maxBatchSize);
      const result = await ometria.pushJson(batch.map(toRecordJson), {
        label: `${connection.id} orphans`,
      });
      if (result.rejected > 0) rejectedRecords(batch, result).forEach((r) => refused.add(r.id));
    }
    return refused;
  };
  // For the status page: a list's name is worth one request a reconciliation (a day), not
  // one a run. A list renamed since is named anew.
  const nameList = async () => {
    step();
    const list = await o.mailchimp.getList(connection.listId);
    await record(store, connection, { type: "list-named", name: list.name });
  };
  try {
    const state = await store.get(connection.id);
    const quarantined = new Set(state?.quarantine.flatMap((e) => e.id ?? []) ?? []);
    const ledger = store.ledger(connection.id);
    // Transitional: a reconciliation does not carry its lease's fence down yet.
    const fence = unfenced(connection.id);
    const pushed = (await ledger.load()).liveIds();

    // Every id in Mailchimp now, 16 bytes each, in a buffer that grows as pages come.
    let buffer = new Uint8Array(ID_BYTES * _PAGE);
    let count = 0;
    for (let offset = 0;;) {
      step();
      const page = await o.mailchimp.getMemberIds(connection.listId, { offset, count: _PAGE });
      if (count === 0 && page.totalItems > _PAGE) {
        buffer = new Uint8Array(ID_BYTES * (page.totalItems + _PAGE));
      }
      for (const id of page.ids) {
        if (!isMemberId(id)) continue; // served malformed: the sync quarantines it
        if ((count + 1) * ID_BYTES > buffer.length) {
          const grown = new Uint8Array(buffer.length * 2);
          grown.set(buffer);
          buffer = grown;
        }
        packId(id, buffer, count * ID_BYTES);
        count++;
      }
      if (page.size < _PAGE) break;
      offset += page.size;
    }
    let inMailchimp: IdSet | undefined = IdSet.fromPacked(buffer.subarray(0, count * ID_BYTES));
    buffer = new Uint8Array(0);

    if (pushed.size === 0 && state?.watermark != null) {
      // A connection synced before the ledger existed: polling has pushed everyone listed
      // now, so the ledger starts from them. Earlier deletions cannot be known any more.
      await ledger.compact(LedgerTable.fromLegacyIds(inMailchimp), fence);
      const summary = _summary(clock.now(), inMailchimp.size, 0, 0, 0, 0, []);
      await record(store, connection, { type: "reconciled", summary });
      await nameList();
      log.info("Reconciliation started the ledger from Mailchimp's {count} member id(s)", {
        count: inMailchimp.size,
      });
      return { outcome: "ok", summary, diverged: false, seeded: true, ...counts };
    }

    // Ids that look gone: confirmed one by one, since a listing read with offsets while the
    // list changes can skip a member who is still there.
    const orphans: string[] = [];
    for (const id of pushed.minus(inMailchimp)) {
      step();
      if (await o.mailchimp.getMember(connection.listId, id) === undefined) orphans.push(id);
    }
    const missingIds = inMailchimp.minus(pushed).filter((id) => !quarantined.has(id));
    const mailchimpCount = inMailchimp.size;
    inMailchimp = undefined; // 16 MB a million ids: not kept while pushing

    let repaired = 0;
    let optedOut: string[] = [];
    if (orphans.length > 0) {
      const at = new Date(clock.now()).toISOString();
      const refused = await pushOrphans(
        orphans.map((id) => toOrphanRecord(id, connection.listId, endpoint, at)),
      );
      optedOut = orphans.filter((id) => !refused.has(id));
      repaired += optedOut.length;
      log.warn("Opted out {count} contact(s) gone from Mailchimp: {ids}", {
        count: optedOut.length,
        ids: optedOut.slice(0, 10).join(", "),
      });
    }
    const added: string[] = [];
    if (missingIds.length > (o.missingFetchLimit ?? 1000)) {
      // Cheaper to read the whole list again than to fetch so many one by one.
      await record(store, connection, { type: "reset" });
      log.error(
        "{count} member(s) in Mailchimp were never pushed: the next run reads the whole list",
        { count: missingIds.length },
      );
    } else if (missingIds.length > 0) {
      const members: Member[] = [];
      for (const id of missingIds) {
        step();
        const now = await o.mailchimp.getMember(connection.listId, id);
        if (now !== undefined && "member" in now) members.push(now.member);
      }
      // Write-ahead, as in a run.
      await ledger.append(writeAheadRecords(members), fence);
      const refused = await pushMembers(members);
      for (const m of members) if (!refused.has(m.id)) added.push(m.id);
      repaired += added.length;
      log.error("Pushed {count} member(s) that polling had missed: {ids}", {
        count: added.length,
        ids: added.slice(0, 10).join(", "),
      });
    }
    // The opted-out orphans leave the ledger (what was added above is in it already).
    await ledger.append(LedgerTable.packRecords(optedOut.map((id) => [id, undefined])), fence);
    // Compacted once a reconciliation, as before, so a run's write-ahead records do not pile up.
    await ledger.compact(await ledger.load(), fence);
    const summary = _summary(
      clock.now(),
      mailchimpCount,
      pushed.size,
      orphans.length,
      missingIds.length,
      repaired,
      orphans,
    );
    await record(store, connection, { type: "reconciled", summary });
    await nameList();
    const diverged = orphans.length > 0 || missingIds.length > 0;
    log.info(
      "Reconciled: {mailchimp} in Mailchimp, {ledger} pushed before, {orphans} orphan(s), " +
        "{missing} missed, {repaired} repaired",
      {
        mailchimp: mailchimpCount,
        ledger: pushed.size,
        orphans: orphans.length,
        missing: missingIds.length,
        repaired,
      },
    );
    return { outcome: "ok", summary, diverged, seeded: false, ...counts };
  } catch (error) {
    if (signal?.aborted) return { outcome: "aborted", diverged: false, seeded: false, ...counts };
    const text = errorText(error, o.secrets ?? []);
    log.error("Reconciliation failed: {error}", { error: text });
    return { outcome: "failed", diverged: false, seeded: false, error: text, ...counts };
  }
}

function _summary(
  at: number,
  mailchimp: number,
  ledger: number,
  orphans: number,
  missing: number,
  repaired: number,
  orphanIds: string[],
): ReconcileSummary {
  return {
    at: new Date(at).toISOString(),
    mailchimp_members: mailchimp,
    ledger_members: ledger,
    orphans,
    missing,
    repaired,
    orphan_ids: orphanIds.slice(0, 20),
  };
}
