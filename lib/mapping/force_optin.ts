/**
 * `force_optin_on_resubscribe`: which members are sent to Ometria with `@force_optin`.
 *
 * In Ometria, opt-outs win: a contact stays opted out while any listing (or Ometria's own
 * preference centre) says so, and an unsubscribe made in Ometria can only be overridden by a
 * listing sent with `@force_optin: true`, which then decides the contact's status whatever
 * the other listings say — and blocks later opt-ins that are not forced (docs/API_NOTES.md,
 * "Consent"). So the product never sends it, unless a connection sets
 * `force_optin_on_resubscribe`, and then only for a member who **opted in again in Mailchimp
 * after this program had sent them**: a subscribed member whose `timestamp_opt` (when
 * Mailchimp recorded the opt-in) is later than the version the ledger holds for them. Mailchimp
 * records an opt-in only when the person makes it (a signup form, a confirmed double opt-in:
 * it refuses API resubscribes), so this is their own, fresh consent.
 *
 * The same version of a member must map to the same record whoever maps it (a resend, a
 * webhook, a reconciliation), or the ledger's hash would differ and the member would be pushed
 * again and counted as diverged: a member read again at the version last sent keeps the flag
 * exactly when what was sent carried it (the hash of the forced record equals the ledger's).
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import { parseMailchimpTime } from "../mailchimp/time.ts";
import type { LedgerTable } from "../state/ledger_table.ts";
import { recordHash } from "../state/record_hash.ts";
import { toOmetriaContact } from "./contact.ts";
import type { MappingForMembers } from "./field_mapper.ts";
import type { ContactMapping } from "./field_mapping.ts";

/**
 * `base` with {@linkcode ContactMapping.forceOptin} set from the connection's ledger (its
 * writer's table, loaded once): see the module doc for the rule.
 */
export function forcingResubscribes(
  base: MappingForMembers,
  listId: string,
  table: () => Promise<LedgerTable>,
): MappingForMembers {
  return async (members) => {
    const mapping = await base(members);
    const ledger = await table();
    return { ...mapping, forceOptin: (m) => resubscribed(m, listId, mapping, ledger) };
  };
}

/** Whether `member` opted in again since the version the ledger holds (see the module doc). */
export function resubscribed(
  member: Member,
  listId: string,
  mapping: ContactMapping,
  ledger: LedgerTable,
): boolean {
  if (member.status !== "subscribed" || !member.timestamp_opt) return false;
  const entry = ledger.get(member.id);
  // Never sent, or sent by a release that kept no version: nothing says they came back.
  if (entry === undefined || entry.versionMs === 0) return false;
  const optedIn = parseMailchimpTime(member.timestamp_opt);
  if (optedIn === undefined) return false;
  if (optedIn > entry.versionMs) return true;
  if (parseMailchimpTime(member.last_changed) !== entry.versionMs) return false;
  // Mapped again only to compare: what it leaves out was counted by the mapping that sends.
  const again = { ...mapping, onDropped: undefined, forceOptin: () => true };
  const forced = toOmetriaContact(member, listId, again);
  return recordHash(JSON.stringify(forced)) === entry.hash;
}
