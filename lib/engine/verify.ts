/**
 * `verify`: reads back what Ometria holds for a connection's collection (its Contact API, the
 * Data API's 4 requests/s) and compares it field by field, through the connection's mapping,
 * with Mailchimp's members. Read-only: repairs go through the connection's writer
 * (verify_repair.ts). The steps:
 *
 * - **full**: every member (1000 a Mailchimp page), mapped; then every contact of the
 *   collection, page after page. A contact whose member is not listed is a candidate *extra*
 *   (unless Ometria holds it opted out: what an orphan's opt-out leaves); a member whose contact
 *   was not served, a candidate *missing*; a contact whose fields differ, a candidate *stale*.
 * - **sample N**: N members at random (runs of 10 at random offsets, from a count of the list),
 *   each contact read by id. Extras are not looked for (that needs the whole collection). A
 *   list whose full read costs no more Ometria requests than N lookups (up to about 100 × N
 *   members) is read in full instead.
 * - A field no contact of the verify carried is "not returned" (the Contact API may not serve
 *   every field: docs/API_NOTES.md), never a difference; one that others carry is.
 * - Both listings are read with offsets while the two sides change, so every candidate (up to
 *   `confirmAtMost`) is read again — the member from Mailchimp, the contact by id — and only
 *   what is still different is reported. Beyond that bound, candidates are reported as listed
 *   and counted `unconfirmed`.
 *
 * Cost: full, one Mailchimp request per 1000 members and one Ometria request per 100 contacts
 * (100,000 members: about 1,000 Ometria requests, four minutes at 4/s); sample, N/10 Mailchimp
 * and N Ometria requests; plus two per candidate confirmed.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import type { MappingForMembers } from "../mapping/field_mapper.ts";
import { collectionFor } from "../mapping/contact.ts";
import { OMETRIA_CONTACTS_PAGE, type OmetriaStoredContact } from "../ometria/client.ts";
import { type ContactDifference, contactDifference } from "./contact_diff.ts";
import type { MembersSource } from "./ports.ts";
import { serializeMembers } from "./push_in_order.ts";
import { lastChangedOf } from "./window_reader.ts";

/** The part of the Ometria client `verify` reads with. */
export interface ContactsReader {
  /** Every contact of `collection`, page after page (`onPage` before each request). */
  contactsOf(
    collection: string,
    options?: { signal?: AbortSignal | undefined; onPage?: (() => void) | undefined },
  ): AsyncIterable<OmetriaStoredContact[]>;
  /** One contact, or undefined when Ometria has none. */
  contact(
    collection: string,
    id: string,
    signal?: AbortSignal,
  ): Promise<OmetriaStoredContact | undefined>;
}

/** Options of {@linkcode verifyConnection}. */
export interface VerifyOptions {
  connection: { id: string; listId: string };
  mailchimp: MembersSource;
  ometria: ContactsReader;
  /** The connection's field mapping; without it, only the fixed fields. */
  mapping?: MappingForMembers | undefined;
  /** Members to check at random; undefined checks every member and every contact. */
  sample?: number | undefined;
  /** Source of randomness in [0, 1). @default {Math.random} */
  random?: () => number;
  /** Candidates read again before they are reported. @default {500} */
  confirmAtMost?: number;
  /**
   * The connection's `fresh_as_of` (epoch ms): a member changed at or after it is polling's
   * next window, not a divergence; it is counted `pending`, not reported. Undefined: none.
   */
  pendingFromMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** What a verify found. */
export interface VerifyReport {
  mode: "full" | "sample";
  /** Mailchimp members compared. */
  checked: number;
  /** Contacts Ometria served (the whole collection, or those looked up). */
  ometriaContacts: number;
  /** Members Ometria holds no contact for. */
  missing: string[];
  /** Members whose contact holds other values, with the fields. */
  stale: { id: string; fields: string[] }[];
  /** Contacts of the collection no member has, not opted out. */
  extra: string[];
  /** Mapped fields no contact Ometria served carried (not compared). */
  notReturned: string[];
  /** Candidates reported as the listings showed them, not read again. */
  unconfirmed: number;
  /** Differing members changed since the last completed run: polling's next window. */
  pending: number;
  mailchimpRequests: number;
  ometriaRequests: number;
}

/** Members in one random run of a sample. */
const _RUN = 10;
const _PAGE = 1000;
const _OPTED_OUT = "EXPLICITLY_OPTEDOUT";

interface _Counts {
  mailchimpRequests: number;
  ometriaRequests: number;
}

/** What the reading found before confirmation. */
interface _Found {
  /** Expected record per member compared (JSON text). */
  expected: Map<string, string>;
  /** Per candidate: its difference; `null` when Ometria served no contact. */
  candidates: Map<string, ContactDifference | null>;
  /** Contacts no listed member has. */
  extra: string[];
  /** Fields some served contact carried. */
  carried: Set<string>;
  served: number;
  checked: number;
}

/** Nothing found yet about the members `expected` holds. */
function _found(expected: Map<string, string>): _Found {
  return {
    expected,
    candidates: new Map(),
    extra: [],
    carried: new Set(),
    served: 0,
    checked: expected.size,
  };
}

/** Runs one verify. Throws what the APIs throw (the caller reports it). */
export async function verifyConnection(o: VerifyOptions): Promise<VerifyReport> {
  const counts: _Counts = { mailchimpRequests: 0, ometriaRequests: 0 };
  let total: number | undefined;
  if (o.sample !== undefined) {
    counts.mailchimpRequests++;
    const page = await o.mailchimp.getMembers(
      o.connection.listId,
      { count: 1, fieldsOnlyTotal: true },
      o.signal,
    );
    total = page.totalItems;
  }
  // A sample costs one Ometria request a member, a full read one per page of contacts: when
  // the whole list is no dearer, it is read whole (every member, and extras too).
  const wanted = Math.min(o.sample ?? 0, total ?? 0);
  const mode = total === undefined || Math.ceil(total / OMETRIA_CONTACTS_PAGE) + 1 <= wanted
    ? "full"
    : "sample";
  const found = mode === "full"
    ? await _readFull(o, counts)
    : await _readSample(o, total ?? 0, counts);
  const report: VerifyReport = {
    mode,
    checked: found.checked,
    ometriaContacts: found.served,
    missing: [],
    stale: [],
    extra: [],
    notReturned: [],
    unconfirmed: 0,
    pending: 0,
    ...counts,
  };
  const notReturned = new Set<string>();
  const suspects: string[] = [];
  for (const [id, d] of found.candidates) {
    if (d === null || _fields(d, found.carried, notReturned).length > 0) suspects.push(id);
  }
  const budget = { left: o.confirmAtMost ?? 500 };
  for (const id of suspects) {
    const verdict = budget.left-- > 0
      ? await _confirm(o, id, found, counts, notReturned)
      : _listed(id, found, notReturned);
    if (budget.left < 0) report.unconfirmed++;
    if (verdict === "pending") report.pending++;
    else if (verdict === "missing") report.missing.push(id);
    else if (verdict !== "ok" && verdict !== "extra") report.stale.push({ id, fields: verdict });
    else if (verdict === "extra") report.extra.push(id);
  }
  for (const id of found.extra) {
    const verdict = budget.left-- > 0 ? await _confirm(o, id, found, counts, notReturned) : "extra";
    if (budget.left < 0) report.unconfirmed++;
    if (verdict === "pending") report.pending++;
    else if (verdict === "extra") report.extra.push(id);
    else if (verdict === "missing") report.missing.push(id);
    else if (verdict !== "ok") report.stale.push({ id, fields: verdict });
  }
  report.notReturned = [...notReturned].sort();
  report.mailchimpRequests = counts.mailchimpRequests;
  report.ometriaRequests = counts.ometriaRequests;
  return report;
}

/** Every member, then every contact of the collection. */
async function _readFull(o: VerifyOptions, counts: _Counts): Promise<_Found> {
  const expected = new Map<string, string>();
  for (let offset = 0;;) {
    counts.mailchimpRequests++;
    const page = await o.mailchimp.getMembers(
      o.connection.listId,
      { count: _PAGE, offset },
      o.signal,
    );
    await _expect(o, page.members, expected);
    if (page.size < _PAGE) break;
    offset += page.size;
  }
  const found = _found(expected);
  const unseen = new Set(expected.keys());
  const collection = collectionFor(o.connection.listId);
  const pages = o.ometria.contactsOf(collection, {
    signal: o.signal,
    onPage: () => counts.ometriaRequests++,
  });
  for await (const page of pages) {
    for (const contact of page) {
      found.served++;
      _carry(contact, found.carried);
      const want = expected.get(contact.id);
      if (want === undefined) {
        if (contact.marketing_optin !== _OPTED_OUT) found.extra.push(contact.id);
        continue;
      }
      if (!unseen.delete(contact.id)) continue; // served twice by an offset listing
      const d = contactDifference(JSON.parse(want), contact);
      if (d.differ.length > 0 || d.absent.length > 0) found.candidates.set(contact.id, d);
    }
  }
  for (const id of unseen) found.candidates.set(id, null);
  return found;
}

/** `o.sample` members at random of the list's `totalItems`, each contact read by id. */
async function _readSample(o: VerifyOptions, totalItems: number, counts: _Counts): Promise<_Found> {
  const listId = o.connection.listId;
  const expected = new Map<string, string>();
  const wanted = Math.min(o.sample ?? 0, totalItems);
  for (const offset of _randomRuns(totalItems, Math.ceil(wanted / _RUN), o.random ?? Math.random)) {
    counts.mailchimpRequests++;
    const page = await o.mailchimp.getMembers(listId, { count: _RUN, offset }, o.signal);
    await _expect(o, page.members.slice(0, wanted - expected.size), expected);
    if (expected.size >= wanted) break;
  }
  const found = _found(expected);
  const collection = collectionFor(listId);
  for (const [id, want] of expected) {
    counts.ometriaRequests++;
    const contact = await o.ometria.contact(collection, id, o.signal);
    if (contact === undefined) {
      found.candidates.set(id, null);
      continue;
    }
    found.served++;
    _carry(contact, found.carried);
    const d = contactDifference(JSON.parse(want), contact);
    if (d.differ.length > 0 || d.absent.length > 0) found.candidates.set(id, d);
  }
  return found;
}

/**
 * Reads one candidate again on both sides: `"ok"` (equal now, or gone from both), `"pending"`
 * (it differs, but changed since the last completed run: polling sends it), `"missing"`,
 * `"extra"` (gone from Mailchimp, held and not opted out by Ometria), or the fields that differ.
 */
async function _confirm(
  o: VerifyOptions,
  id: string,
  found: _Found,
  counts: _Counts,
  notReturned: Set<string>,
): Promise<"ok" | "pending" | "missing" | "extra" | string[]> {
  counts.mailchimpRequests++;
  const now = await o.mailchimp.getMember(o.connection.listId, id, o.signal);
  counts.ometriaRequests++;
  const contact = await o.ometria.contact(collectionFor(o.connection.listId), id, o.signal);
  if (!("member" in now)) {
    // Gone (or malformed: the quarantine has it): only a live, opted-in contact is wrong.
    if (!("gone" in now)) return "ok";
    return contact !== undefined && contact.marketing_optin !== _OPTED_OUT ? "extra" : "ok";
  }
  const fresh = new Map<string, string>();
  await _expect(o, [now.member], fresh);
  const want = fresh.get(id);
  if (want === undefined) return "ok"; // cannot be mapped: the quarantine has it
  const fields = contact === undefined
    ? undefined
    : _fields(contactDifference(JSON.parse(want), contact), found.carried, notReturned);
  if (fields !== undefined && fields.length === 0) return "ok";
  if (o.pendingFromMs !== undefined && lastChangedOf(now.member) >= o.pendingFromMs) {
    return "pending";
  }
  return fields ?? "missing";
}

/** A candidate beyond the confirmation budget, as the listing showed it. */
function _listed(id: string, found: _Found, notReturned: Set<string>): "missing" | string[] {
  const d = found.candidates.get(id);
  return d === null || d === undefined ? "missing" : _fields(d, found.carried, notReturned);
}

/** The fields of `d` that are differences: absent ones count only when others carry them. */
function _fields(d: ContactDifference, carried: Set<string>, notReturned: Set<string>): string[] {
  const out = [...d.differ];
  for (const field of d.absent) {
    if (carried.has(field)) out.push(field);
    else notReturned.add(field);
  }
  return out.sort();
}

/** Maps `members` into `into` (id → record JSON); unmappable ones are left to the quarantine. */
async function _expect(
  o: VerifyOptions,
  members: readonly Member[],
  into: Map<string, string>,
): Promise<void> {
  const { records } = await serializeMembers(members, {
    endpoint: "push",
    listId: o.connection.listId,
    mapping: o.mapping,
  }, { atMs: undefined, seq: 0 });
  for (const r of records) into.set(r.id, r.json);
}

/** Notes the fields a served contact carries (top level and `properties.<key>`). */
function _carry(contact: Readonly<Record<string, unknown>>, carried: Set<string>): void {
  for (const [field, value] of Object.entries(contact)) {
    carried.add(field);
    if (field === "properties" && typeof value === "object" && value !== null) {
      for (const key of Object.keys(value)) carried.add(`properties.${key}`);
    }
  }
}

/**
 * `runs` distinct offsets of runs of {@linkcode _RUN} members in a list of `total`, at random
 * (all of them when the list has no more runs than that), in ascending order.
 */
function _randomRuns(total: number, runs: number, random: () => number): number[] {
  const slots = Math.ceil(total / _RUN);
  if (runs >= slots) return Array.from({ length: slots }, (_, i) => i * _RUN);
  // Floyd's algorithm: `runs` distinct slots, each equally likely.
  const chosen = new Set<number>();
  for (let j = slots - runs; j < slots; j++) {
    const t = Math.floor(random() * (j + 1));
    chosen.add(chosen.has(t) ? j : t);
  }
  return [...chosen].sort((a, b) => a - b).map((slot) => slot * _RUN);
}
