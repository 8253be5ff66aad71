/**
 * `sync --dry-run`: what a run of one connection would push now, found without writing
 * anything — no Ometria request, no state, no ledger, no lease. The members a run would read
 * (those changed since its checkpoint, or the whole list after `reset`) are read, mapped and
 * hashed as a run does, and each record is judged against the content ledger as the writer's
 * gate would judge it:
 *
 * - **new**: the ledger has no entry (or only the opt-out of a member gone before);
 * - **changed**: the ledger's entry differs (its hash, or Ometria never acknowledged it);
 * - **opted out**: a record that would be sent and opts the contact out (an unsubscribed or
 *   cleaned member), counted here rather than under new or changed;
 * - **unchanged**: the record hashes as the one Ometria acknowledged: not sent.
 *
 * Which fields of a changed record differ cannot be told from the ledger: it keeps one 8-byte
 * hash of the whole record as sent, not the record. What is told is why the hash differs
 * ({@linkcode ChangeCause}); naming fields needs the copy Ometria holds, through
 * {@linkcode DryRunOptions.fieldsDiffer} once a Contact API read exists.
 *
 * It is an estimate of one moment: pages are read with offsets, and a member that changes
 * while they are read may be counted twice or not at all (a run proves its window complete;
 * this does not need to).
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import type { MappingForMembers } from "../mapping/field_mapper.ts";
import type { LedgerEntry, LedgerTable } from "../state/ledger_table.ts";
import type { ConnectionState } from "../state/schema.ts";
import { judge } from "../writer/gate.ts";
import type { MembersSource } from "./ports.ts";
import { type OutgoingRecord, serializeMembers } from "./push_in_order.ts";

/** What reading and mapping one connection's members takes, without its writer. */
export interface MemberReader {
  connection: { id: string; listId: string };
  mailchimp: MembersSource;
  /** The record format the connection sends. */
  endpoint: "push" | "record";
  /** The connection's field mapping, resolved as a run resolves it (push endpoint only). */
  mapping?: MappingForMembers | undefined;
  /**
   * Ometria's Contact API read of one contact (push endpoint only: `/record` has no
   * read-back); undefined from Ometria means it holds no such contact.
   */
  contacts?: {
    contact(
      collection: string,
      id: string,
      signal?: AbortSignal,
    ): Promise<Record<string, unknown> | undefined>;
  } | undefined;
}

/** Why a changed member's record differs from the ledger's entry. */
export type ChangeCause =
  /** Mailchimp's `last_changed` is newer than the version sent: the member changed. */
  | "changed_in_mailchimp"
  /**
   * Same version, another record: the field mapping (or this program's mapping) changed since
   * it was sent, or the member changed twice within one second.
   */
  | "mapping_changed"
  /** The version sent is newer than Mailchimp's now: Mailchimp's clock stepped back. */
  | "older_than_sent"
  /** The record is the one sent, but Ometria never acknowledged it (or refused it after OK). */
  | "not_acknowledged";

/** One changed member, for the examples. */
export interface ChangedExample {
  /** The subscriber hash (never the address). */
  id: string;
  cause: ChangeCause;
  /** The version sent (the member's `last_changed` then), ISO; null when unknown. */
  sent_version: string | null;
  /** The member's `last_changed` now, ISO. */
  version: string;
  /** Fields that differ from Ometria's copy, or null: the ledger cannot name them. */
  fields: string[] | null;
}

/** What a run of one connection would do now. */
export interface DryRunReport {
  id: string;
  list_id: string;
  /** The lower edge read from (Mailchimp time, ISO): null for the whole list. */
  since: string | null;
  /** Members read. */
  read: number;
  new: number;
  changed: number;
  opted_out: number;
  unchanged: number;
  /** Members a run would hold in quarantine (malformed in Mailchimp, or not mappable). */
  unreadable: number;
  /** Members held in quarantine now (a run tries each again by itself). */
  quarantined: number;
  /** A `reset --repush` is pending: the next run sends the unchanged members too. */
  repush_pending: boolean;
  /** Mailchimp requests this dry run made. */
  mailchimp_requests: number;
  /** A few ids of each kind (subscriber hashes). */
  examples: {
    new: string[];
    changed: ChangedExample[];
    opted_out: string[];
    unreadable: { id: string | null; reason: string }[];
  };
}

/** Options of {@linkcode dryRun}. */
export interface DryRunOptions {
  reader: MemberReader;
  /** The connection's state as saved (undefined: never ran). */
  state: ConnectionState | undefined;
  /** Its content ledger as saved. */
  table: LedgerTable;
  /** Members per Mailchimp page (≤ 1000). @default {1000} */
  pageSize?: number;
  /** Examples kept per kind. @default {5} */
  examples?: number;
  /**
   * Names the fields of a changed record that differ from what Ometria holds, or undefined
   * when it cannot (no Contact API read yet): then `fields` is null.
   */
  fieldsDiffer?: (id: string, json: string) => Promise<string[] | undefined>;
  signal?: AbortSignal;
}

/** Statuses whose record opts the contact out (contact.ts, `OPTIN`; `/record` passes them). */
const _OPTED_OUT = new Set(["unsubscribed", "cleaned"]);

/** Reads what a run of the connection would read and judges it; writes nothing. */
export async function dryRun(o: DryRunOptions): Promise<DryRunReport> {
  const { reader, state, signal } = o;
  const { connection } = reader;
  const since = _lowerEdge(state);
  const report: DryRunReport = {
    id: connection.id,
    list_id: connection.listId,
    since: since === undefined ? null : new Date(since).toISOString(),
    read: 0,
    new: 0,
    changed: 0,
    opted_out: 0,
    unchanged: 0,
    unreadable: 0,
    quarantined: state?.quarantine.length ?? 0,
    repush_pending: state?.repush_pending === true,
    mailchimp_requests: 0,
    examples: { new: [], changed: [], opted_out: [], unreadable: [] },
  };
  const max = o.examples ?? 5;
  const count = o.pageSize ?? 1000;
  for (let offset = 0;;) {
    signal?.throwIfAborted();
    report.mailchimp_requests++;
    const page = await reader.mailchimp.getMembers(connection.listId, {
      count,
      offset,
      ...(since === undefined ? {} : { sinceMs: since }),
      sortField: "last_changed",
      sortDir: "ASC",
    }, signal);
    report.read += page.size;
    const { records, unmappable } = await serializeMembers(page.members, {
      endpoint: reader.endpoint,
      listId: connection.listId,
      mapping: reader.mapping,
    }, { atMs: page.serverTimeMs, seq: 1 });
    const held = [...page.invalid, ...unmappable];
    report.unreadable += held.length;
    for (const h of held) _example(report.examples.unreadable, max, { id: h.id, reason: h.reason });
    await _judgeAll(o, report, records, _statuses(page.members), max);
    if (page.size < count) break;
    offset += page.size;
  }
  return report;
}

/** Where a run would start reading: its checkpoint, else the watermark; undefined: all. */
function _lowerEdge(state: ConnectionState | undefined): number | undefined {
  const edge = state?.run ? state.run.cursor : state?.watermark ?? null;
  return edge === null || edge === undefined ? undefined : Date.parse(edge);
}

function _statuses(members: readonly Member[]): Map<string, string> {
  return new Map(members.map((m) => [m.id, m.status]));
}

/** Counts each record under its kind, as the writer's gate would judge it. */
async function _judgeAll(
  o: DryRunOptions,
  report: DryRunReport,
  records: readonly OutgoingRecord[],
  statuses: ReadonlyMap<string, string>,
  max: number,
): Promise<void> {
  for (const r of records) {
    const entry = o.table.get(r.id);
    // Read after every entry on disk was issued (readSeq 1 > issuedSeq 0): as a new run reads.
    if (judge(entry, 0, r) === "unchanged") {
      report.unchanged++;
      continue;
    }
    if (_OPTED_OUT.has(statuses.get(r.id) ?? "")) {
      report.opted_out++;
      _example(report.examples.opted_out, max, r.id);
    } else if (entry === undefined || entry.gone) {
      report.new++;
      _example(report.examples.new, max, r.id);
    } else {
      report.changed++;
      if (report.examples.changed.length < max) {
        report.examples.changed.push({
          id: r.id,
          cause: changeCause(entry, r),
          sent_version: entry.versionMs > 0 ? new Date(entry.versionMs).toISOString() : null,
          version: new Date(r.versionMs).toISOString(),
          fields: (await o.fieldsDiffer?.(r.id, r.json)) ?? null,
        });
      }
    }
  }
}

/** Why `record` differs from the ledger's `entry` of its member. */
export function changeCause(
  entry: LedgerEntry,
  record: { versionMs: number; hash: string },
): ChangeCause {
  if (entry.hash === record.hash) return "not_acknowledged";
  if (entry.versionMs === 0 || record.versionMs > entry.versionMs) return "changed_in_mailchimp";
  if (record.versionMs < entry.versionMs) return "older_than_sent";
  return "mapping_changed";
}

function _example<T>(into: T[], max: number, value: T): void {
  if (into.length < max) into.push(value);
}
