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
  & { malformed?: Readonly<Record<string, unknown>> | undefined };

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
    timestamp_subscribed: member.status === "subscribed" && member.timestamp_opt
      ? member.timestamp_opt
      : null,
  };
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
    if (Object.entries(want).some(([f, v]) => v !== (got[f] ?? null))) stale.push(member.id);
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
