/**
 * Acting on a connection's inbox: Mailchimp webhook events, and members the gate asked to
 * read again (`recheck`). An entry only says which members to look at: each is fetched by its
 * subscriber hash and pushed as Mailchimp holds it now, through the connection's writer, so a
 * stale, replayed or forged-looking event can at worst cause a needless read, and an event
 * can never overtake a newer push of the same member (writer/gate.ts).
 *
 * A member Mailchimp answers 404 for (the old id of an `upemail`, a member deleted) is opted
 * out at once, as reconciliation would, when this program pushed it before (or while the
 * connection has no ledger yet: a contact left opted in is the worse error); a member served
 * malformed, or refused by Ometria, is quarantined and the next run retries it. Entries leave
 * the inbox only once their effect is durable; when an API fails they stay and are tried
 * again. Polling stays the source of truth: nothing here moves a watermark or `fresh_as_of`.
 *
 * @module
 */
import type { InboxItem } from "../state/store.ts";
import type { QuarantineFinding } from "../state/transitions.ts";
import type { GatedRecord } from "../writer/connection_writer.ts";
import { orphanRecord, rejectedRecords, serializeMembers } from "./push_in_order.ts";
import type { EngineContext } from "./ports.ts";

/** Members fetched from Mailchimp at once while acting on inbox entries. */
const _FETCH_CONCURRENCY = 4;

/** What acting on some inbox entries did, per entry type, for metrics and logs. */
export interface InboxOutcome {
  /** Entries acted on (and removed from the inbox). */
  entries: InboxItem[];
  pushed: number;
  unchanged: number;
  optedOut: number;
  quarantined: number;
}

/**
 * Acts on `items` (oldest first) with the connection's writer and removes them from its inbox.
 * Throws when Mailchimp or Ometria fails: the entries then stay for the next attempt.
 */
export async function actOnInbox(
  o: EngineContext & {
    signal?: AbortSignal;
    /**
     * Told of the members a delete event names (with its sealed address) that Mailchimp
     * confirmed gone, once their opt-out is durable (`erase_on_permanent_delete`). A throw
     * keeps the entries for another attempt.
     */
    onConfirmedDeletes?: ((deletes: { id: string; sealed: string }[]) => Promise<void>) | undefined;
  },
  items: readonly InboxItem[],
): Promise<InboxOutcome> {
  const { writer, signal } = o;
  const { connection } = writer;
  const log = writer.logger.with({ connection: connection.id, list_id: connection.listId });
  const ids = [...new Set(items.flatMap((item) => item.entry.memberIds))];
  const table = await writer.table();
  const hold: QuarantineFinding[] = [];
  const records: GatedRecord[] = [];
  const gone: string[] = [];
  await _pool(ids, _FETCH_CONCURRENCY, async (id) => {
    signal?.throwIfAborted();
    writer.fence.assertHeld();
    const seq = writer.nextSeq();
    const now = await o.mailchimp.getMember(connection.listId, id, signal);
    if ("invalid" in now) {
      hold.push({ id: now.invalid.id ?? id, reason: now.invalid.reason });
    } else if ("gone" in now) {
      gone.push(id);
      const entry = table.get(id);
      // Only what this program pushed (or anything, before it has a ledger).
      if ((entry !== undefined && !entry.gone) || table.size === 0) {
        const at = now.serverTimeMs ?? writer.clock.now();
        records.push(orphanRecord(id, connection.listId, o.endpoint ?? "push", at, seq));
      }
    } else {
      const { records: mapped, unmappable } = await serializeMembers([now.member], {
        endpoint: o.endpoint ?? "push",
        listId: connection.listId,
        mapping: o.mapping,
      }, { atMs: now.serverTimeMs, seq });
      records.push(...mapped);
      hold.push(...unmappable);
    }
  });
  const outcome: InboxOutcome = {
    entries: [...items],
    pushed: 0,
    unchanged: 0,
    optedOut: 0,
    quarantined: 0,
  };
  const through: string[] = [...gone];
  for (let i = 0; i < records.length; i += writer.maxBatchSize) {
    const batch = records.slice(i, i + writer.maxBatchSize);
    const result = await writer.push(batch, { signal, label: `${connection.id} webhook` });
    const refused = new Set<string>();
    for (const r of rejectedRecords(batch, result)) {
      refused.add(r.id);
      hold.push(r);
    }
    for (const r of batch) {
      if (refused.has(r.id)) continue;
      through.push(r.id);
      if (r.gone) outcome.optedOut++;
    }
    outcome.pushed += result.sent - refused.size;
    outcome.unchanged += result.unchanged;
  }
  await _recordQuarantine(o, hold, through);
  outcome.quarantined = hold.length;
  const deletes = items.flatMap(({ entry: { sealed, memberIds } }) =>
    sealed === undefined
      ? []
      : memberIds.filter((id) => gone.includes(id)).map((id) => ({ id, sealed }))
  );
  if (deletes.length > 0) await o.onConfirmedDeletes?.(deletes);
  for (const item of items) {
    if (item.entry.type === "recheck") continue;
    await writer.record({
      type: "webhook",
      at: item.entry.receivedAtMs,
      firedAt: item.entry.firedAtMs,
      eventType: item.entry.type,
    });
  }
  await writer.flushAcks();
  await writer.inbox.remove(items.map((item) => item.seq), writer.fence);
  log.info(
    "Acted on {count} inbox entr(y/ies): {pushed} pushed, {unchanged} unchanged, {optedOut} " +
      "opted out, {quarantined} quarantined",
    {
      count: items.length,
      pushed: outcome.pushed - outcome.optedOut,
      unchanged: outcome.unchanged,
      optedOut: outcome.optedOut,
      quarantined: outcome.quarantined,
    },
  );
  return outcome;
}

/** Holds what could not be delivered; held members that went through (or are gone) leave. */
async function _recordQuarantine(
  o: EngineContext,
  hold: readonly QuarantineFinding[],
  through: readonly string[],
): Promise<void> {
  const { writer } = o;
  const state = await writer.store.get(writer.connection.id);
  const held = new Set(state?.quarantine.flatMap((q) => q.id ?? []) ?? []);
  const again = new Set(hold.map((h) => h.id));
  const release = through.filter((id) => held.has(id) && !again.has(id));
  if (hold.length === 0 && release.length === 0) return;
  for (const h of hold) {
    writer.logger.warn("Member {id} quarantined: {reason}", {
      id: h.id ?? "(no id)",
      reason: h.reason,
    });
  }
  await writer.record({ type: "quarantine", at: writer.clock.now(), add: [...hold], release });
}

async function _pool<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  // Every worker ends before the first failure goes on: none keeps reading behind it.
  const settled = await Promise.allSettled(
    Array.from({ length: Math.min(concurrency, items.length) }, worker),
  );
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) throw failed.reason;
}
