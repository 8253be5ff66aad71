/**
 * `verify --repair`: pushes what a verify found different, through the connection's writer
 * (the one path that holds its lease: docs/ARCHITECTURE.md, "One writer per connection"), as
 * reconciliation and quarantine retries do. Each member is read again from Mailchimp under
 * the writer (numbered by the writer, so the gate orders it after any push in flight) and
 * sent as it is now; a contact no member has any more is opted out. The ledger already
 * holds these records as acknowledged — Ometria changed behind this program's back — so they
 * are sent with `repush`, and the ledger records them again as sent and acknowledged. Records
 * Ometria refuses are quarantined with the reason, as a run's are.
 *
 * @module
 */
import type { EngineContext } from "./ports.ts";
import {
  orphanRecord,
  type OutgoingRecord,
  rejectedRecords,
  serializeMembers,
} from "./push_in_order.ts";

/** What a repair did. */
export interface RepairResult {
  /** Members pushed as Mailchimp has them now. */
  pushed: number;
  /** Contacts opted out: their member is gone from Mailchimp. */
  optedOut: number;
  /** Records Ometria refused (now quarantined). */
  rejected: number;
  mailchimpRequests: number;
  ometriaRequests: number;
}

/** Members read from Mailchimp at once while repairing. */
const _READS_AT_ONCE = 8;

/**
 * Repairs `ids` (members a verify found missing, stale or extra) with `o.writer`. Throws
 * what the APIs throw, or `FencedError` once the lease is gone.
 */
export async function repairContacts(
  o: EngineContext & { signal?: AbortSignal | undefined },
  ids: readonly string[],
): Promise<RepairResult> {
  const { writer, signal } = o;
  const { connection } = writer;
  const result: RepairResult = {
    pushed: 0,
    optedOut: 0,
    rejected: 0,
    mailchimpRequests: 0,
    ometriaRequests: 0,
  };
  const records: OutgoingRecord[] = [];
  for (let i = 0; i < ids.length; i += _READS_AT_ONCE) {
    const read = await Promise.all(
      ids.slice(i, i + _READS_AT_ONCE).map(async (id) => {
        signal?.throwIfAborted();
        writer.fence.assertHeld();
        const seq = writer.nextSeq();
        result.mailchimpRequests++;
        const now = await o.mailchimp.getMember(connection.listId, id, signal);
        if ("gone" in now) {
          return [
            orphanRecord(
              id,
              connection.listId,
              "push",
              now.serverTimeMs ?? writer.clock.now(),
              seq,
            ),
          ];
        }
        if (!("member" in now)) return []; // malformed in Mailchimp: the quarantine has it
        const { records } = await serializeMembers([now.member], {
          endpoint: "push",
          listId: connection.listId,
          mapping: o.mapping,
        }, { atMs: now.serverTimeMs, seq });
        return records;
      }),
    );
    records.push(...read.flat());
  }
  const refused: { id: string; reason: string }[] = [];
  for (let i = 0; i < records.length; i += writer.maxBatchSize) {
    const batch = records.slice(i, i + writer.maxBatchSize);
    const answer = await writer.push(batch, {
      signal,
      label: `${connection.id} verify repair`,
      repush: true,
    });
    if (answer.sent > 0) result.ometriaRequests += 1 + (answer.extraRequests ?? 0);
    const rejected = rejectedRecords(batch, answer);
    refused.push(...rejected);
    const no = new Set(rejected.map((r) => r.id));
    for (const r of batch) {
      if (no.has(r.id)) continue;
      if (r.gone) result.optedOut++;
      else result.pushed++;
    }
  }
  result.rejected = refused.length;
  if (refused.length > 0) {
    await writer.record({ type: "quarantine", at: writer.clock.now(), add: refused, release: [] });
  }
  await writer.flushAcks();
  return result;
}
