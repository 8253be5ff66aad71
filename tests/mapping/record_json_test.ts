/**
 * A member's record as sent, byte for byte: its JSON is what the content ledger hashes, so a
 * record whose JSON changes (a field moved, a value written otherwise) is sent again to every
 * member once. The digests below were taken from the code as it was before the mapping was
 * made faster; any change to them must be a deliberate change of the records.
 */
import assert from "node:assert/strict";
import type { MergeFieldDefinition } from "../../lib/mailchimp/list_definitions.ts";
import { type Member, memberSchema } from "../../lib/mailchimp/member.ts";
import { toLegacyRecord, toOmetriaContact, toRecordJson } from "../../lib/mapping/contact.ts";
import { type ContactMapping, resolveMapping } from "../../lib/mapping/field_mapping.ts";
import { type FieldsConfig, fullFieldsConfig } from "../../lib/mapping/fields_config.ts";
import { seededRandom } from "../../lib/sim/random.ts";
import { recordHash } from "../../lib/state/record_hash.ts";

const DEFINITIONS: MergeFieldDefinition[] = [
  { tag: "FNAME", type: "text", name: "First Name" },
  { tag: "LNAME", type: "text", name: "Last Name" },
  { tag: "ADDRESS", type: "address", name: "Address" },
  { tag: "PHONE", type: "phone", name: "Phone", options: { phone_format: "none" } },
  { tag: "USPHONE", type: "phone", name: "US phone", options: { phone_format: "US" } },
  { tag: "BIRTHDAY", type: "birthday", name: "Birthday", options: { date_format: "MM/DD" } },
  { tag: "GENDER", type: "dropdown", name: "Gender" },
  { tag: "SIZE", type: "number", name: "Size" },
  { tag: "SINCE", type: "date", name: "Since", options: { date_format: "DD/MM/YYYY" } },
  { tag: "NOTE", type: "text", name: "Note" },
];

const FIELDS: Record<string, FieldsConfig> = {
  default: {},
  explicit: {
    merge_fields: { SINCE: "date_of_birth", NOTE: "middlename", SIZE: "prefix" },
    language: "properties.lang",
    vip: null,
    country: "properties.country",
    tags: { lists: { news: "list-news", vip: "list-vip", gone: "list-gone" } },
    cleared: "empty",
  },
  omit: { other_merge_fields: "ignore", cleared: "omit", interests: null, tags: null },
};

const TEXTS = ["", "Ann", "José", "李", "🚀", 'a "quoted" \\ name', "line\nbreak", "\ud800", " x "];

/** Members with every field the mapping reads, in many shapes, from a seeded random. */
function members(count: number): Member[] {
  const random = seededRandom(19);
  const pick = <T>(values: readonly T[]) => values[Math.floor(random() * values.length)]!;
  const maybe = <T>(value: T) => random() < 0.5 ? value : undefined;
  const out: Member[] = [];
  for (let i = 0; i < count; i++) {
    const merge: Record<string, unknown> = {
      FNAME: pick([...TEXTS, 42, null]),
      LNAME: pick(TEXTS),
      ADDRESS: pick(["", { addr1: "1 High St", city: "London", zip: 12345, country: "GB" }]),
      PHONE: pick(["", "+44 7700 900123", "07700 900123", "0044 20 7946 0018"]),
      USPHONE: pick(["", "(555) 123-4567", "12"]),
      BIRTHDAY: pick(["", "04/23", "13/45"]),
      GENDER: pick(["", "Female", "m", "other"]),
      SIZE: pick(["", 38, 4.5]),
      SINCE: pick(["", "23/04/2019", "2019-06-01", "31/02/2020", "soon"]),
      NOTE: pick(TEXTS),
      NEWTAG: maybe(pick(["x", "", null, 7])),
    };
    for (const key of Object.keys(merge)) if (merge[key] === undefined) delete merge[key];
    const tags = pick([[], [{ name: "news" }], [{ name: "vip" }, { name: "news" }], undefined]);
    out.push(memberSchema.parse({
      id: i.toString(16).padStart(32, "0"),
      email_address: `${pick(TEXTS)}m${i}@example.com`,
      status: pick(["subscribed", "unsubscribed", "cleaned", "pending", "transactional"]),
      merge_fields: merge,
      last_changed: `2026-11-0${1 + (i % 9)}T11:00:0${i % 10}+00:00`,
      timestamp_opt: pick(["", null, "2026-10-01T09:30:00+00:00"]),
      timestamp_signup: maybe(pick(["", null, "2026-09-30T08:00:00+00:00"])),
      language: maybe(pick(["", "en", null])),
      vip: maybe(pick([true, false, null])),
      member_rating: maybe(pick([0, 3, null])),
      location: maybe(pick([{ country_code: "gb" }, { country_code: "" }, {}, null])),
      tags,
      tags_count: tags?.length,
      interests: maybe(pick([{ a1: true, b2: false, c3: true }, {}, null])),
    }));
  }
  return out;
}

function mappingOf(fields: FieldsConfig): ContactMapping {
  const resolved = resolveMapping(
    fullFieldsConfig(fields),
    DEFINITIONS,
    new Map([["a1", "Shoes"], ["b2", "Bags"]]),
  );
  if (!("mapping" in resolved)) throw new Error(resolved.problems.join("; "));
  return { ...resolved.mapping, forceOptin: (m) => m.id.endsWith("3") };
}

/** One hash of every record's JSON, in order (the hash the ledger keeps, of their list). */
function digest(jsons: string[]): string {
  return recordHash(jsons.map(recordHash).join(","));
}

Deno.test("toRecordJson() writes every member's record byte for byte as before", async (t) => {
  const all = members(2_000);
  const expected: Record<string, string> = {
    default: "7354beb4d94bfe99",
    explicit: "70b37b26abaf09c0",
    omit: "1ee341c3accef9c4",
    none: "3444c57ad7cea6a3",
    legacy: "ba0988d91cde86a1",
  };
  const got: Record<string, string> = {};
  for (const [name, fields] of Object.entries(FIELDS)) {
    const mapping = mappingOf(fields);
    got[name] = digest(
      all.map((m) => toRecordJson(toOmetriaContact(m, "a1b2c3d4e5", mapping)).json),
    );
  }
  got.none = digest(all.map((m) => toRecordJson(toOmetriaContact(m, "a1b2c3d4e5")).json));
  got.legacy = digest(all.map((m) => toRecordJson(toLegacyRecord(m)).json));
  for (const name of Object.keys(expected)) {
    await t.step(name, () => assert.equal(got[name], expected[name]));
  }
});
