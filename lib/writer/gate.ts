/**
 * The rule that orders every write of one member: before a record is sent, it is judged
 * against the ledger's entry for that member (what was sent last). The argument is
 * docs/ARCHITECTURE.md, "One writer per connection"; in short:
 *
 * - Reads and pushes of one writer are numbered in the order they start (`readSeq`, the
 *   entry's `issuedSeq`). A read that started after the entry's push was issued saw a state at
 *   least as new as the one pushed: it wins, whatever its `last_changed` says (a Mailchimp
 *   clock that stepped back stamps new changes with older times). Every entry a writer found
 *   on disk was issued before any of its reads.
 * - A read that started before the entry's push was issued overlaps it, and may be the older
 *   of the two: then versions decide. A member's version is its `last_changed`; a member gone
 *   from Mailchimp (404) is versioned by the `Date` of that answer (every read that still saw
 *   it carries a `last_changed` at or before that, and one created again is stamped later).
 * - Two overlapping reads of one version can still differ when the member changed twice in
 *   that second. A read is *final* when its answer's `Date` is at least 2 s after the version:
 *   the second was over. A final read wins such a tie; between two reads that are not final the
 *   member is read again (a recheck) rather than guessed.
 *
 * @module
 */
import type { LedgerEntry } from "../state/ledger_table.ts";

/** How far an answer's `Date` must be past a version for the read to be final. */
export const FINAL_AFTER_MS = 2_000;

/** What one read of one member says, as it is about to be sent. */
export interface Observation {
  /** Present: the member's `last_changed` (epoch ms); gone: the `Date` of the 404 answer. */
  versionMs: number;
  /** The member is gone from Mailchimp: what is sent is its opt-out. */
  gone: boolean;
  /** The read can no longer be beaten by another read of the same version (see above). */
  final: boolean;
  /** The record's hash (`recordHash` of what is sent). */
  hash: string;
  /** When the read started, in the writer's numbering (`ConnectionWriter.nextSeq`). */
  readSeq: number;
}

/**
 * What to do with an observation:
 * - `send`: it is newer than what was sent (or nothing was);
 * - `unchanged`: Ometria acknowledged this very record already;
 * - `stale`: something newer was sent (or is in flight): sending this would go back in time;
 * - `recheck`: it ties with what was sent and neither read can be trusted to be the later:
 *   read the member again once its second is surely over.
 */
export type Verdict = "send" | "unchanged" | "stale" | "recheck";

/** Whether an answer at `serverTimeMs` makes a read of `versionMs` final. */
export function isFinal(versionMs: number, serverTimeMs: number | undefined): boolean {
  return serverTimeMs !== undefined && serverTimeMs - versionMs >= FINAL_AFTER_MS;
}

/**
 * Judges `o` against the ledger's `entry` (undefined: nothing sent yet); `issuedSeq` is when
 * this writer issued the entry's push (0: before this writer). `repush` sends what is
 * unchanged too (a repair after someone changed Ometria by hand). Pure.
 */
export function judge(
  entry: LedgerEntry | undefined,
  issuedSeq: number,
  o: Observation,
  options: { repush?: boolean } = {},
): Verdict {
  if (entry === undefined) return "send";
  const acked = entry.acked && !options.repush;
  // Opted out already: another 404 says nothing new (an opt-out record differs only in when
  // it was made).
  if (o.gone && entry.gone) return acked ? "unchanged" : "send";
  const same = o.gone === entry.gone && o.hash === entry.hash;
  if (o.readSeq > issuedSeq) return same && acked ? "unchanged" : "send";
  // The read overlaps the push of the entry: the versions decide.
  if (o.versionMs < entry.versionMs) return "stale";
  if (o.versionMs > entry.versionMs) return "send";
  if (same) return acked ? "unchanged" : "send";
  if (o.final) return "send";
  return entry.final ? "stale" : "recheck";
}
