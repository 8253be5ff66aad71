/**
 * The proof the sync is about: does the simulated Ometria hold exactly what the simulated
 * Mailchimp holds? Used by the demo, the tests and the benchmark.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";

/** A member as the Mailchimp simulator's truth returns it. */
export type TruthMember = Pick<
  Member,
  "id" | "email_address" | "status" | "merge_fields" | "last_changed" | "timestamp_opt"
>;

/** What differs between Mailchimp's truth and Ometria's copy. */
export interface Comparison {
  /** Members in Mailchimp. */
  expected: number;
  /** Ids in Mailchimp that Ometria lacks. */
  missing: string[];
  /** Ids whose Ometria record differs from the member's latest name, email or status. */
  stale: string[];
  /** Ids Ometria holds for this list that Mailchimp does not have. */
  extra: string[];
}

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
 * contacts of the list's collection for `push`, the legacy records for `record`).
 */
export function compareCopies(
  truth: readonly TruthMember[],
  records: ReadonlyMap<string, Record<string, unknown>>,
  listId: string,
  endpoint: "push" | "record" = "push",
): Comparison {
  const missing: string[] = [];
  const stale: string[] = [];
  const ids = new Set<string>();
  for (const member of truth) {
    ids.add(member.id);
    const got = records.get(member.id);
    if (!got) {
      missing.push(member.id);
      continue;
    }
    const want = _expected(member, listId, endpoint);
    if (Object.entries(want).some(([f, v]) => v !== (got[f] ?? null))) stale.push(member.id);
  }
  const extra = [...records.keys()].filter((id) => !ids.has(id));
  return { expected: truth.length, missing, stale, extra };
}
