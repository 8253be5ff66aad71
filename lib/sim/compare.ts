/**
 * The proof the sync is about: does the simulated Ometria hold exactly what the simulated
 * Mailchimp holds? Used by the demo, the tests and the benchmark.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import { collectionFor, toLegacyRecord, toOmetriaContact } from "../mapping/contact.ts";

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

const FIELDS = {
  push: ["email", "firstname", "lastname", "marketing_optin", "timestamp_subscribed"],
  record: ["email", "firstname", "lastname", "status"],
} as const;

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
    const want: Record<string, unknown> = endpoint === "push"
      ? { ...toOmetriaContact(member as Member, listId) }
      : { ...toLegacyRecord(member as Member) };
    if (FIELDS[endpoint].some((f) => (want[f] ?? null) !== (got[f] ?? null))) stale.push(member.id);
    else if (endpoint === "push" && got["@collection"] !== collectionFor(listId)) {
      stale.push(member.id);
    }
  }
  const extra = [...records.keys()].filter((id) => !ids.has(id));
  return { expected: truth.length, missing, stale, extra };
}
