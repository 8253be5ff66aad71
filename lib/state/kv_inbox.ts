/**
 * The webhook inboxes of the Deno KV store: entries under `["inbox", connection, seq]`, a
 * count under `["inbox-count", connection]` (it bounds the inbox and is what a holder in
 * another process watches), and the de-duplication marks under `["webhook-seen", connection,
 * key]`, all written by one atomic append. The process that received the event wakes its own
 * writer for the connection; when another process holds the connection, that holder sees the
 * count change (`Deno.Kv.watch`) and drains it. No KV queue is used: today's Deno Deploy does
 * not offer them (docs/API_NOTES.md, "Deno Deploy").
 *
 * @module
 */
import type { Clock } from "../clock/clock.ts";
import { DEDUPE_WINDOW_MS, INBOX_CAPACITY } from "./inbox.ts";
import {
  type AppendOutcome,
  type Fence,
  FencedError,
  type Inbox,
  type InboxEntry,
  type InboxItem,
  StateError,
} from "./store.ts";

/** Lost races in a row before an append gives up. */
const _ATTEMPTS = 50;

// Numbers this process's appends, whichever Inbox object makes them (the receiver takes one
// per request): a count per object would start again at 1 for each, and two appends in one
// millisecond would sort by their random tails instead of in the order they were made.
let _sequence = 0;

/** What a KV inbox needs from its store. */
export interface KvInboxDeps {
  kv: Deno.Kv;
  clock: Clock;
  retry: <T>(op: () => Promise<T>) => Promise<T>;
  location: string;
  /** Called after an append committed (this process's own waiters). */
  appended: (id: string) => void;
  /** @default {INBOX_CAPACITY} */
  capacity?: number;
}

/** Connection `id`'s inbox in Deno KV. */
export function kvInbox(d: KvInboxDeps, id: string): Inbox {
  const countKey = ["inbox-count", id];
  const capacity = BigInt(d.capacity ?? INBOX_CAPACITY);
  const append = async (entry: InboxEntry, dedupeKey: string): Promise<AppendOutcome> => {
    const seenKey = ["webhook-seen", id, dedupeKey];
    for (let attempt = 0; attempt < _ATTEMPTS; attempt++) {
      const [seen, count] = await d.retry(() =>
        d.kv.getMany<[{ until: number }, Deno.KvU64]>([seenKey, countKey])
      );
      const now = d.clock.now();
      if (seen.value !== null && seen.value.until > now) return "duplicate";
      if ((count.value?.value ?? 0n) >= capacity) return "full";
      // Time first, so entries sort roughly in arrival order across processes; the rest
      // keeps two appends of one millisecond apart.
      const seq = `${String(now).padStart(15, "0")}-${String(++_sequence).padStart(6, "0")}-${
        crypto.randomUUID().slice(0, 8)
      }`;
      const result = await d.retry(() =>
        d.kv.atomic()
          .check(seen)
          .check(count)
          .set(["inbox", id, seq], entry)
          .sum(countKey, 1n)
          .set(seenKey, { until: now + DEDUPE_WINDOW_MS }, { expireIn: DEDUPE_WINDOW_MS })
          .commit()
      );
      if (result.ok) {
        d.appended(id);
        return "queued";
      }
    }
    throw new StateError(`Cannot queue a webhook event in ${d.location}: too many conflicts.`);
  };
  const peek = async (max: number): Promise<InboxItem[]> => {
    const items: InboxItem[] = [];
    const entries = d.kv.list<InboxEntry>({ prefix: ["inbox", id] }, { limit: max });
    for await (const e of entries) items.push({ seq: String(e.key[2]), entry: e.value });
    return items;
  };
  const remove = async (seqs: readonly string[], fence: Fence): Promise<void> => {
    fence.assertHeld();
    // Only entries still there count down (a second removal of one must not).
    for (let i = 0; i < seqs.length; i += 100) {
      const keys = seqs.slice(i, i + 100).map((seq) => ["inbox", id, seq]);
      for (;;) {
        const present = (await d.retry(() => d.kv.getMany<unknown[]>(keys)))
          .filter((e) => e.versionstamp !== null);
        if (present.length === 0) break;
        let op = d.kv.atomic();
        if (fence.kvCheck) op = op.check(fence.kvCheck());
        for (const e of present) op = op.check(e).delete(e.key);
        // KV counters only add: subtracting is adding the two's complement (they wrap).
        op = op.sum(countKey, (1n << 64n) - BigInt(present.length));
        const result = await d.retry(() => op.commit());
        if (result.ok) break;
        if (fence.recheck && !(await fence.recheck())) {
          throw new FencedError(`Stopped writing: the lease on connection ${id} was lost.`);
        }
      }
    }
  };
  const changed = async (signal: AbortSignal): Promise<void> => {
    if (signal.aborted) return;
    const stream = d.kv.watch<[Deno.KvU64]>([countKey]);
    const reader = stream.getReader();
    const onAbort = () => void reader.cancel().catch(() => {});
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      // The first value is the count now: entries waiting means there is work at once.
      const first = await reader.read();
      if (first.done || (first.value[0]?.value?.value ?? 0n) > 0n) return;
      await reader.read();
    } finally {
      signal.removeEventListener("abort", onAbort);
      await reader.cancel().catch(() => {});
    }
  };
  return { append, peek, remove, changed };
}
