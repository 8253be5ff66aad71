/**
 * Pushes one slice of members to Ometria in batches, several at once, and reports how far a
 * contiguous prefix of acknowledged batches reaches, which is what the cursor may pass.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Member } from "../mailchimp/member.ts";
import { formatMailchimpTime } from "../mailchimp/time.ts";
import { type OmetriaRecord, toLegacyRecord, toOmetriaContact } from "../mapping/contact.ts";
import type { MappingForMembers } from "../mapping/field_mapper.ts";
import type { RecordsSink, SinkResult } from "./ports.ts";
import { lastChangedOf } from "./window_reader.ts";

/** Thrown when a graceful stop left batches of the slice unsent. */
export class StoppedError extends Error {
  constructor() {
    super("stopped before every batch was sent");
    this.name = "StoppedError";
  }
}

/** Options of {@linkcode pushInOrder}. */
export interface PushInOrderOptions {
  sink: RecordsSink;
  endpoint: "push" | "record";
  connectionId: string;
  listId: string;
  logger: Logger;
  batchSize: number;
  concurrency: number;
  /** Graceful stop: no new batch starts; batches in flight finish. */
  signal?: AbortSignal | undefined;
  /** Hard stop: batches in flight are abandoned. */
  hardSignal?: AbortSignal | undefined;
  /**
   * Called whenever the acknowledged prefix grows: every member of the slice with
   * `last_changed` before `doneBefore` is acknowledged.
   */
  onAcknowledged: (doneBefore: number, pushed: number, rejected: number) => Promise<void>;
  /**
   * Called for every batch with records not taken (label names the batch), and for members
   * that cannot be mapped to a record (label "mapping"), each with the reason.
   */
  onRejected: (label: string, rejected: { id: string; reason: string }[]) => void;
  /**
   * The connection's field mapping (push endpoint only; the legacy `/record` format is
   * fixed). Without it a contact carries only the fixed fields.
   */
  mapping?: MappingForMembers | undefined;
}

/**
 * Pushes `members` (sorted by `last_changed`); `doneBefore` is where the slice ends. Throws
 * the first push failure (after the batches in flight settle), or {@linkcode StoppedError}.
 */
export async function pushInOrder(
  members: readonly Member[],
  doneBefore: number,
  options: PushInOrderOptions,
): Promise<void> {
  const { batchSize, connectionId, listId, signal, hardSignal } = options;
  if (members.length === 0) {
    await options.onAcknowledged(doneBefore, 0, 0);
    return;
  }
  // Resolved before any batch is built: a mapping that cannot be resolved (Mailchimp down,
  // a merge tag gone) fails the push as a whole, and nothing passes the cursor.
  const mapping = options.endpoint === "push" && options.mapping
    ? await options.mapping(members)
    : undefined;
  // Members are mapped to records only when their batch is sent: the records of a whole
  // page never exist at once, only those of the batches in flight.
  const batches: { members: readonly Member[]; firstChanged: number }[] = [];
  for (let i = 0; i < members.length; i += batchSize) {
    const slice = members.slice(i, i + batchSize);
    batches.push({ members: slice, firstChanged: lastChangedOf(slice[0]!) });
  }
  const toRecords = (batch: readonly Member[]) => {
    const records: OmetriaRecord[] = [];
    const unmappable: { id: string; reason: string }[] = [];
    for (const m of batch) {
      try {
        records.push(
          options.endpoint === "push" ? toOmetriaContact(m, listId, mapping) : toLegacyRecord(m),
        );
      } catch (error) {
        unmappable.push({ id: m.id, reason: `cannot be mapped to an Ometria record: ${error}` });
      }
    }
    if (unmappable.length > 0) options.onRejected("mapping", unmappable);
    return records;
  };
  const done = new Array<{ pushed: number; rejected: number } | undefined>(batches.length);
  let contiguous = 0;
  let next = 0;
  let failure: unknown;
  // Acknowledgements are reported in order, one at a time, so the cursor never moves back.
  let reporting = Promise.resolve();

  const worker = async () => {
    while (failure === undefined && next < batches.length && !signal?.aborted) {
      const index = next++;
      const batch = batches[index]!;
      const label = `${connectionId} batch ${index + 1}/${batches.length} (from ${
        formatMailchimpTime(batch.firstChanged)
      })`;
      try {
        const records = toRecords(batch.members);
        const result = records.length === 0
          ? { accepted: 0, rejected: 0 }
          : await options.sink.push(
            records,
            hardSignal ? { signal: hardSignal, label } : { label },
          );
        if (result.rejected > 0) {
          options.onRejected(label, rejectedRecords(records, result));
        }
        done[index] = { pushed: records.length - result.rejected, rejected: result.rejected };
      } catch (error) {
        failure ??= error;
        return;
      }
      let pushed = 0;
      let rejected = 0;
      const before = contiguous;
      while (contiguous < batches.length && done[contiguous]) {
        pushed += done[contiguous]!.pushed;
        rejected += done[contiguous]!.rejected;
        contiguous++;
      }
      if (contiguous > before) {
        const reach = contiguous === batches.length
          ? doneBefore
          : batches[contiguous]!.firstChanged;
        reporting = reporting.then(() => options.onAcknowledged(reach, pushed, rejected));
        await reporting;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, batches.length) }, worker));
  await reporting;
  if (failure !== undefined) throw failure;
  if (contiguous < batches.length) throw new StoppedError();
}

/**
 * Which records of a batch were not taken, with why. A sink that cannot tell which (an
 * account-wide error list only) has every record of the batch not known to be too large held
 * back: sending them again is safe, and holding back one that went through costs only a
 * retry.
 */
export function rejectedRecords(
  records: readonly OmetriaRecord[],
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
