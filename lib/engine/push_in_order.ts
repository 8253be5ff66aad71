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
import type { RecordsSink } from "./members_source.ts";
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
  /** Called for every batch with rejected records (label names the batch). */
  onRejected: (label: string, rejected: number, errors: string[]) => void;
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
  const batches: { records: OmetriaRecord[]; firstChanged: number }[] = [];
  for (let i = 0; i < members.length; i += batchSize) {
    const slice = members.slice(i, i + batchSize);
    batches.push({
      records: slice.map((m) =>
        options.endpoint === "push" ? toOmetriaContact(m, listId) : toLegacyRecord(m)
      ),
      firstChanged: lastChangedOf(slice[0]!),
    });
  }
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
        const result = await options.sink.push(
          batch.records,
          hardSignal ? { signal: hardSignal, label } : { label },
        );
        if (result.rejected > 0) options.onRejected(label, result.rejected, result.errors ?? []);
        done[index] = {
          pushed: batch.records.length - result.rejected,
          rejected: result.rejected,
        };
      } catch (error) {
        failure ??= error;
        return;
      }
      let pushed = 0;
      let rejected = 0;
      while (contiguous < batches.length && done[contiguous]) {
        pushed += done[contiguous]!.pushed;
        rejected += done[contiguous]!.rejected;
        contiguous++;
      }
      if (pushed + rejected > 0) {
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
