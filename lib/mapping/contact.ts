/**
 * Mailchimp member → Ometria record, pure functions (the mapping table of the README,
 * "Fields"; the facts it rests on are in docs/API_NOTES.md).
 *
 * @module
 */
import type { Member, MemberStatus } from "../mailchimp/member.ts";
import { type ContactMapping, mappedFields } from "./field_mapping.ts";

/** Ometria's marketing opt-in values. */
export type MarketingOptin = "EXPLICITLY_OPTEDIN" | "EXPLICITLY_OPTEDOUT" | "NOT_SPECIFIED";

/** A contact record for `POST /v2/push`. */
export interface OmetriaContact {
  "@type": "contact";
  "@collection": string;
  id: string;
  email: string;
  firstname: string;
  lastname: string;
  marketing_optin: MarketingOptin;
  timestamp_subscribed?: string;
  /**
   * Fields a connection's mapping adds (see `field_mapping.ts`): `phone_number`,
   * `date_of_birth`, `gender`, `country_id`, `timestamp_acquired`, `timestamp_unsubscribed`,
   * `properties`, `@add_to_lists`, `@remove_from_lists`, …
   */
  [field: string]: unknown;
}

/** A record for the original tool's `POST /record` endpoint. */
export interface LegacyRecord {
  id: string;
  firstname: string;
  lastname: string;
  email: string;
  status: MemberStatus;
}

/**
 * A partial contact that opts out a member who is gone from Mailchimp (deleted, or an old id
 * left by an email change); `@merge` keeps what Ometria already holds of it.
 */
export interface OrphanContact {
  "@type": "contact";
  "@collection": string;
  "@merge": true;
  id: string;
  marketing_optin: "EXPLICITLY_OPTEDOUT";
  properties: { mailchimp_removed_at: string };
}

/** The original tool's `/record` format for a member who is gone from Mailchimp. */
export interface OrphanLegacyRecord {
  id: string;
  firstname: "";
  lastname: "";
  email: "";
  status: "deleted";
}

/** Any record shape; which one is sent depends on the configured endpoint. */
export type OmetriaRecord = OmetriaContact | LegacyRecord | OrphanContact | OrphanLegacyRecord;

/**
 * A record as it is sent: its id and its JSON. The engine serialises each member's record
 * once, as soon as its page is read, and keeps only this until Ometria acknowledges it: one
 * flat string per member is much cheaper to hold (and for the garbage collector to move)
 * than the member's object tree.
 */
export interface RecordJson {
  id: string;
  json: string;
}

/** `record` as it is sent. */
export function toRecordJson(record: OmetriaRecord): RecordJson {
  return { id: record.id, json: recordJson(record) };
}

/**
 * The JSON a record is sent (and hashed) as: the one serialisation, so that every path's
 * record hash agrees with the ledger's.
 */
export function recordJson(record: OmetriaRecord): string {
  return JSON.stringify(record);
}

/**
 * The record that opts out member `id`, gone from Mailchimp since `removedAt` (ISO) at the
 * latest. Opted out rather than left alone: a contact Ometria keeps opted in would go on
 * receiving marketing Mailchimp no longer allows (a GDPR erasure is the usual reason).
 */
export function toOrphanRecord(
  id: string,
  listId: string,
  endpoint: "push" | "record",
  removedAt: string,
): OrphanContact | OrphanLegacyRecord {
  if (endpoint === "record") {
    return { id, firstname: "", lastname: "", email: "", status: "deleted" };
  }
  return {
    "@type": "contact",
    "@collection": collectionFor(listId),
    "@merge": true,
    id,
    marketing_optin: "EXPLICITLY_OPTEDOUT",
    properties: { mailchimp_removed_at: removedAt },
  };
}

/** The `@collection` used for one Mailchimp list (Ometria recommends one per source). */
export function collectionFor(listId: string): string {
  return `mailchimp-${listId}`;
}

// One list's members are mapped one after another: its collection name is made once.
let _lastCollection = { listId: "", collection: "" };

function _collection(listId: string): string {
  if (_lastCollection.listId !== listId) {
    _lastCollection = { listId, collection: collectionFor(listId) };
  }
  return _lastCollection.collection;
}

const OPTIN: Record<MemberStatus, MarketingOptin> = {
  subscribed: "EXPLICITLY_OPTEDIN",
  unsubscribed: "EXPLICITLY_OPTEDOUT",
  cleaned: "EXPLICITLY_OPTEDOUT",
  pending: "NOT_SPECIFIED",
  transactional: "NOT_SPECIFIED",
  archived: "NOT_SPECIFIED",
};

function _name(member: Member, field: "FNAME" | "LNAME"): string {
  const value = member.merge_fields[field];
  if (typeof value === "string") return value;
  // A merge field holding digits can arrive as a JSON number (a "name" such as 42 or an
  // id pasted into it): its text is what the user typed, so it is kept, not blanked.
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value === "bigint") return String(value);
  return "";
}

/**
 * Maps a member to an Ometria contact. The record id is Mailchimp's member id (an MD5 of
 * the lowercased email), which carries no personal data in clear. A subscription event
 * needs `timestamp_subscribed` on the same record as the opt-in, so it is sent with it.
 * With a `mapping` (the connection's fields, resolved for its list), the mapped fields are
 * added; the fixed ones above cannot be overridden by it.
 */
export function toOmetriaContact(
  member: Member,
  listId: string,
  mapping?: ContactMapping,
): OmetriaContact {
  // The mapped fields, then the fixed ones, in one object (a run makes one per member): no
  // mapped target names a fixed field (see OMETRIA_CONTACT_FIELDS), so none is overridden.
  const contact = (mapping ? mappedFields(member, mapping) : {}) as OmetriaContact;
  contact["@type"] = "contact";
  contact["@collection"] = _collection(listId);
  contact.id = member.id;
  contact.email = member.email_address;
  contact.firstname = _name(member, "FNAME");
  contact.lastname = _name(member, "LNAME");
  contact.marketing_optin = OPTIN[member.status];
  if (member.status === "subscribed" && member.timestamp_opt) {
    contact.timestamp_subscribed = member.timestamp_opt;
  }
  // Only ever beside an opt-in, and only where the connection asked for it (README, "Consent").
  if (member.status === "subscribed" && mapping?.forceOptin?.(member)) {
    contact["@force_optin"] = true;
  }
  return contact;
}

/** Maps a member to the original tool's `/record` format (status passed through as is). */
export function toLegacyRecord(member: Member): LegacyRecord {
  return {
    id: member.id,
    firstname: _name(member, "FNAME"),
    lastname: _name(member, "LNAME"),
    email: member.email_address,
    status: member.status,
  };
}
