/**
 * The proof the sync is about: does the simulated Ometria hold exactly what the simulated
 * Mailchimp holds? Used by the demo, the tests and the benchmark. Nothing may diverge
 * silently: besides members missing or stale in Ometria, it sorts the contacts Ometria
 * holds for members Mailchimp no longer has (deleted, or re-keyed by an email change) into
 * those the sync handled (opted out or marked deleted) and those still live, and it lists
 * apart the members Mailchimp serves malformed, which no sync can copy exactly.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";

/**
 * A member as the Mailchimp simulator's truth returns it: its true state, plus, for a
 * member served malformed, the raw values served instead (`malformed`, see
 * `MailchimpSimulator.corruptMember`).
 */
export type TruthMember =
  & Pick<
    Member,
    "id" | "email_address" | "status" | "merge_fields" | "last_changed" | "timestamp_opt"
  >
  & {
    malformed?: Readonly<Record<string, unknown>> | undefined;
    /** The fields a mapping reads (the simulator's truth has them all). */
    timestamp_signup?: string | undefined;
    tags?: readonly { name: string }[] | undefined;
    interests?: Readonly<Record<string, boolean>> | undefined;
    language?: string | undefined;
    vip?: boolean | undefined;
    member_rating?: number | undefined;
    location?: { country_code: string } | undefined;
  };

/**
 * What {@linkcode compareCopies} needs to check the fields of the documented default
 * mapping too: the list's merge fields (tag and type) and interest names by id.
 */
export interface DefaultFieldsCheck {
  mergeFields: readonly { tag: string; type: string }[];
  interestNames: ReadonlyMap<string, string>;
}

/** What differs between Mailchimp's truth and Ometria's copy. */
export interface Comparison {
  /** Members in Mailchimp. */
  expected: number;
  /** Ids in Mailchimp that Ometria lacks (malformed members excepted). */
  missing: string[];
  /**
   * Ids whose Ometria record differs from the member's latest name, email or status
   * (malformed members excepted).
   */
  stale: string[];
  /**
   * Ids Ometria holds for this list that Mailchimp does not have (orphans: members deleted
   * for good, or the old id of a re-keyed member): `extraOptedOut` and `extraNotOptedOut`
   * together.
   */
  extra: string[];
  /**
   * Orphans the sync handled: `marketing_optin` is `EXPLICITLY_OPTEDOUT` (push), or the
   * legacy status is one that stops marketing (`deleted`, `archived`, `unsubscribed`,
   * `cleaned`).
   */
  extraOptedOut: string[];
  /** Orphans still live in Ometria (opted in or unspecified): a silent divergence. */
  extraNotOptedOut: string[];
  /**
   * Members Mailchimp serves with a field the sync reads replaced or missing (`id`,
   * `email_address`, `status`, `merge_fields`, `last_changed`, `timestamp_opt`). The sync
   * cannot copy them exactly, so whatever Ometria holds for them (or nothing) is reported
   * here instead of in `missing` or `stale`; their ids are not `extra`. Members whose
   * malformation only adds unknown fields, or touches fields the sync does not read, are
   * compared as usual: the sync must copy them despite the noise.
   */
  malformed: string[];
}

/** The member fields the sync reads: corrupting one of them makes a member uncopyable. */
const _READ_FIELDS: ReadonlySet<string> = new Set([
  "id",
  "email_address",
  "status",
  "merge_fields",
  "last_changed",
  "timestamp_opt",
]);

/** Legacy `/record` statuses under which an orphan receives no marketing. */
const _LEGACY_STOPPED: ReadonlySet<unknown> = new Set([
  "deleted",
  "archived",
  "unsubscribed",
  "cleaned",
]);

/**
 * What Ometria must hold for a member, written out here rather than taken from
 * lib/mapping: the check is an independent oracle, so a mapping bug cannot hide itself.
 */
function _expected(member: TruthMember, listId: string, endpoint: "push" | "record") {
  const names = member.merge_fields as { FNAME?: unknown; LNAME?: unknown };
  const firstname = typeof names.FNAME === "string" ? names.FNAME : "";
  const lastname = typeof names.LNAME === "string" ? names.LNAME : "";
  if (endpoint === "record") {
    return { email: member.email_address, firstname, lastname, status: member.status };
  }
  const optin = member.status === "subscribed"
    ? "EXPLICITLY_OPTEDIN"
    : member.status === "unsubscribed" || member.status === "cleaned"
    ? "EXPLICITLY_OPTEDOUT"
    : "NOT_SPECIFIED";
  return {
    "@collection": `mailchimp-${listId}`,
    email: member.email_address,
    firstname,
    lastname,
    marketing_optin: optin,
    // Ometria merges what a record leaves out, so a member no longer subscribed keeps the
    // time it subscribed: only a subscribed member's is checked.
    timestamp_subscribed: member.status === "subscribed" && member.timestamp_opt
      ? member.timestamp_opt
      : undefined,
  };
}

/**
 * The fields the documented default mapping adds for a member, written out from the README
 * table rather than taken from lib/mapping, for the same reason as `_expected`.
 */
function _expectedDefaultFields(
  member: TruthMember,
  check: DefaultFieldsCheck,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const properties: Record<string, unknown> = {};
  const phone = check.mergeFields.find((d) => d.type === "phone")?.tag;
  const types = new Map(check.mergeFields.map((d) => [d.tag, d.type]));
  for (const [tag, value] of Object.entries(member.merge_fields)) {
    if (tag === "FNAME" || tag === "LNAME") continue;
    // An emptied field is cleared: a value Ometria kept would be stale.
    if (value === "" || value == null) {
      if (tag === phone) out.phone_number = null;
      else if (tag === "GENDER") out.gender = null;
      continue;
    }
    if (tag === phone) out.phone_number = _e164(String(value));
    else if (tag === "GENDER") {
      const g = String(value).toLowerCase();
      out.gender = g === "female" ? "f" : g === "male" ? "m" : "o";
    } else if (types.get(tag) === "address" && typeof value === "object") {
      for (const [part, text] of Object.entries(value as Record<string, unknown>)) {
        if (text !== "") properties[`${tag.toLowerCase()}_${part}`] = text;
      }
    } else properties[tag.toLowerCase()] = value;
  }
  if (member.language) properties.language = member.language;
  if (member.vip !== undefined) properties.vip = member.vip;
  if (member.member_rating !== undefined) properties.member_rating = member.member_rating;
  const acquired = member.timestamp_signup || member.timestamp_opt;
  if (acquired) out.timestamp_acquired = acquired;
  if (member.location?.country_code) out.country_id = member.location.country_code;
  // An unsubscribe time is history: a member subscribed again keeps it (not checked then).
  out.timestamp_unsubscribed = member.status === "unsubscribed" || member.status === "cleaned"
    ? member.last_changed
    : undefined;
  if (member.tags) properties.mailchimp_tags = member.tags.map((t) => t.name).sort();
  if (member.interests) {
    properties.mailchimp_interests = Object.entries(member.interests).filter(([, on]) => on)
      .map(([id]) => check.interestNames.get(id) ?? id).sort();
  }
  out.properties = Object.keys(properties).length > 0 ? properties : null;
  return out;
}

/**
 * An international number as E.164, written out here for the simulator's numbers (`+44 7700
 * 123456`): its spaces, dots, dashes and parentheses taken out.
 */
function _e164(text: string): string {
  return text.replace(/[\s().-]/g, "");
}

/**
 * JSON with object keys sorted, so two equal values give equal text; a key holding null is
 * no value, as a key left out (whether Ometria stores a cleared field as null or drops it).
 */
function _canonical(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) =>
      typeof v === "object" && v !== null && !Array.isArray(v)
        ? Object.fromEntries(
          Object.entries(v).filter(([, x]) => x !== null).sort(([a], [b]) =>
            a < b ? -1 : a > b ? 1 : 0
          ),
        )
        : v,
  ) ?? "null";
}

/**
 * Compares the truth of one list with the records Ometria holds for it (`records`: the
 * contacts of the list's collection for `push`, `legacyRecords()` for `record`). A copy
 * with no silent divergence has no `missing`, no `stale` and no `extraNotOptedOut`; what
 * `malformed` holds needs a look of its own.
 */
export function compareCopies(
  truth: readonly TruthMember[],
  records: ReadonlyMap<string, object>,
  listId: string,
  endpoint: "push" | "record" = "push",
  options: {
    /** Also compare the fields of the documented default mapping (push only). */
    defaultFields?: DefaultFieldsCheck;
  } = {},
): Comparison {
  const missing: string[] = [];
  const stale: string[] = [];
  const malformed: string[] = [];
  const ids = new Set<string>();
  for (const member of truth) {
    ids.add(member.id);
    if (member.malformed && Object.keys(member.malformed).some((f) => _READ_FIELDS.has(f))) {
      malformed.push(member.id);
      continue;
    }
    const got = records.get(member.id) as Readonly<Record<string, unknown>> | undefined;
    if (!got) {
      missing.push(member.id);
      continue;
    }
    const want = _expected(member, listId, endpoint);
    if (Object.entries(want).some(([f, v]) => v !== undefined && v !== (got[f] ?? null))) {
      stale.push(member.id);
      continue;
    }
    if (options.defaultFields && endpoint === "push") {
      const fields = _expectedDefaultFields(member, options.defaultFields);
      const differs = ([f, v]: [string, unknown]) =>
        v !== undefined && _canonical(v) !== _canonical(got[f] ?? null);
      if (Object.entries(fields).some(differs)) {
        stale.push(member.id);
      }
    }
  }
  const extra = [...records.keys()].filter((id) => !ids.has(id));
  const extraOptedOut: string[] = [];
  const extraNotOptedOut: string[] = [];
  for (const id of extra) {
    const got = records.get(id) as Readonly<Record<string, unknown>>;
    const stopped = endpoint === "push"
      ? got.marketing_optin === "EXPLICITLY_OPTEDOUT"
      : _LEGACY_STOPPED.has(got.status);
    (stopped ? extraOptedOut : extraNotOptedOut).push(id);
  }
  return {
    expected: truth.length,
    missing,
    stale,
    extra,
    extraOptedOut,
    extraNotOptedOut,
    malformed,
  };
}
