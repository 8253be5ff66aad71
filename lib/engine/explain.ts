/**
 * `explain`: everything this program knows about one member of one connection, gathered
 * without writing anything — the member as Mailchimp has it now (fetched by its subscriber
 * hash), the record a run would send for it (mapped and hashed as a run does), the content
 * ledger's entry (what was sent last, whether Ometria acknowledged it, whether it equals the
 * record now), the quarantine entry and the open erasure, if any. The one command support
 * needs when someone asks "why is this contact wrong".
 *
 * Addresses are personal data: what this returns carries the member's address masked
 * (`j…@example.com`), in the member and in the record alike; nothing here logs.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import type { LedgerTable } from "../state/ledger_table.ts";
import type { ConnectionState, ErasureRecord, QuarantineEntry } from "../state/schema.ts";
import { collectionFor } from "../mapping/contact.ts";
import { judge } from "../writer/gate.ts";
import { contactDifference } from "./contact_diff.ts";
import { type ChangeCause, changeCause, type MemberReader } from "./dry_run.ts";
import { erasureIdentity, erasureLabel } from "./erasure.ts";
import { serializeMembers } from "./push_in_order.ts";

/** What Mailchimp answered for the member. */
export type MailchimpSide =
  | { found: true; member: Member; read_at: string | null }
  | { found: false; reason: "gone" | "malformed"; detail: string | null };

/** The record a run would send now, as sent (the address masked). */
export interface RecordSide {
  /** The record's fields, parsed from the JSON a run would send (address masked). */
  record: Record<string, unknown> | null;
  /** Its hash, as the ledger keeps it. */
  hash: string | null;
  /** Why it cannot be mapped, when it cannot (a run would hold the member). */
  unmappable: string | null;
}

/** The ledger's entry, read back. */
export interface LedgerSide {
  /** The version sent: the member's `last_changed` then (or the 404's time for an opt-out). */
  sent_version: string | null;
  hash: string;
  /** Ometria acknowledged the push that carried it. */
  acked: boolean;
  /** It is the opt-out of a member gone from Mailchimp. */
  gone: boolean;
  /** Its hash equals the record's now: null when there is no record now. */
  same_as_now: boolean | null;
  /** What a run reading the member now would do with it: `unchanged` is not sent. */
  next_run: "unchanged" | "send" | null;
  /** Why the record now differs from the entry, when it does. */
  cause: ChangeCause | null;
}

/** What Ometria holds, or why that cannot be said. */
export type OmetriaSide =
  | {
    available: true;
    /** What Ometria holds (address masked); null: no such contact. */
    record: Record<string, unknown> | null;
    /** Fields the record a run would send sets that Ometria holds with another value. */
    differ: string[];
    /** Fields the record sets that Ometria's answer does not carry. */
    absent: string[];
  }
  | { available: false; note: string };

/** Everything known about one member of one connection. */
export interface Explanation {
  connection: string;
  list_id: string;
  member_id: string;
  mailchimp: MailchimpSide;
  mapped: RecordSide;
  /** Null: never sent by this program (or erased from the ledger). */
  ledger: LedgerSide | null;
  quarantine: QuarantineEntry | null;
  /**
   * The open erasure of the address (its label and record), null when none; `unknown` when
   * the member was named by its hash: erasures are kept under a salted hash of the address.
   */
  erasure: (ErasureRecord & { label: string }) | null | "unknown";
  /** Only with `--ometria`. */
  ometria?: OmetriaSide;
}

/** Options of {@linkcode explainMember}. */
export interface ExplainOptions {
  reader: MemberReader;
  state: ConnectionState | undefined;
  table: LedgerTable;
  memberId: string;
  /** The address, when given: finds the member's erasure record. */
  email: string | undefined;
  /** Ask what Ometria holds too (`--ometria`). */
  ometria: boolean;
  signal?: AbortSignal;
}

/** Gathers the explanation (one Mailchimp request, or two for a list's field definitions). */
export async function explainMember(o: ExplainOptions): Promise<Explanation> {
  const { reader, state, table, memberId } = o;
  const { listId } = reader.connection;
  const lookup = await reader.mailchimp.getMember(listId, memberId, o.signal);
  const readAt = lookup.serverTimeMs === undefined
    ? null
    : new Date(lookup.serverTimeMs).toISOString();
  let mailchimp: MailchimpSide;
  const mapped: RecordSide = { record: null, hash: null, unmappable: null };
  let now: { versionMs: number; hash: string; gone: boolean; final: boolean } | undefined;
  let sent: Record<string, unknown> | undefined;
  if ("member" in lookup) {
    mailchimp = { found: true, member: _maskMember(lookup.member), read_at: readAt };
    const { records, unmappable } = await serializeMembers([lookup.member], {
      endpoint: reader.endpoint,
      listId,
      mapping: reader.mapping,
    }, { atMs: lookup.serverTimeMs, seq: 1 });
    const r = records[0];
    if (r !== undefined) {
      sent = JSON.parse(r.json);
      mapped.record = _maskRecord(sent!);
      mapped.hash = r.hash;
      now = r;
    } else mapped.unmappable = unmappable[0]?.reason ?? "cannot be mapped";
  } else if ("invalid" in lookup) {
    mailchimp = { found: false, reason: "malformed", detail: lookup.invalid.reason };
  } else mailchimp = { found: false, reason: "gone", detail: null };
  const explanation: Explanation = {
    connection: reader.connection.id,
    list_id: listId,
    member_id: memberId,
    mailchimp,
    mapped,
    ledger: _ledgerSide(table, memberId, now),
    quarantine: state?.quarantine.find((e) => e.id === memberId) ?? null,
    erasure: await _erasure(state, o.email),
  };
  if (o.ometria) explanation.ometria = await ometriaCopy(reader, memberId, sent, o.signal);
  return explanation;
}

/**
 * What Ometria holds for `memberId` in the connection's collection (its Contact API, on the
 * Data API's own limiter), compared field by field with `sent`, the record a run would send
 * (as `verify` compares: engine/contact_diff.ts).
 */
export async function ometriaCopy(
  reader: MemberReader,
  memberId: string,
  sent: Record<string, unknown> | undefined,
  signal?: AbortSignal,
): Promise<OmetriaSide> {
  if (reader.contacts === undefined) {
    return {
      available: false,
      note: "not available: this connection sends to Ometria's /record endpoint, which has no " +
        "read-back; the ledger above says what was sent and whether Ometria acknowledged it",
    };
  }
  const held = await reader.contacts.contact(
    collectionFor(reader.connection.listId),
    memberId,
    signal,
  );
  if (held === undefined) return { available: true, record: null, differ: [], absent: [] };
  const diff = sent === undefined ? { differ: [], absent: [] } : contactDifference(sent, held);
  return { available: true, record: _maskRecord({ ...held }), ...diff };
}

function _ledgerSide(
  table: LedgerTable,
  id: string,
  now: { versionMs: number; hash: string; gone: boolean; final: boolean } | undefined,
): LedgerSide | null {
  const entry = table.get(id);
  if (entry === undefined) return null;
  const verdict = now === undefined ? undefined : judge(entry, 0, { ...now, readSeq: 1 });
  const sent = entry.versionMs > 0 ? new Date(entry.versionMs).toISOString() : null;
  return {
    sent_version: sent,
    hash: entry.hash,
    acked: entry.acked,
    gone: entry.gone,
    same_as_now: now === undefined ? null : now.hash === entry.hash && !entry.gone,
    next_run: verdict === undefined ? null : verdict === "unchanged" ? "unchanged" : "send",
    cause: now === undefined || verdict === "unchanged" ? null : changeCause(entry, now),
  };
}

async function _erasure(
  state: ConnectionState | undefined,
  email: string | undefined,
): Promise<Explanation["erasure"]> {
  if (email === undefined) return "unknown";
  const salt = state?.erasures.salt;
  if (salt === null || salt === undefined) return null;
  const identity = await erasureIdentity(salt, email);
  const record = state!.erasures.open.find((r) => r.identity === identity);
  return record === undefined ? null : { ...record, label: erasureLabel(identity) };
}

/** `jane@example.com` → `j…@example.com`: enough to tell two addresses apart, no more. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf("@");
  if (at <= 0) return "…";
  return `${email.slice(0, 1)}…${email.slice(at)}`;
}

function _maskMember(member: Member): Member {
  return { ...member, email_address: maskEmail(member.email_address) };
}

function _maskRecord(record: Record<string, unknown>): Record<string, unknown> {
  return typeof record.email === "string" && record.email !== ""
    ? { ...record, email: maskEmail(record.email) }
    : record;
}
