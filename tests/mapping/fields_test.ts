/**
 * The field mapping: the default for a full member, a custom one from the connections file,
 * birthday and address handling, tags as a property or as lists, interests by name.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../lib/config/config.ts";
import { type Member, memberSchema } from "../../lib/mailchimp/member.ts";
import { toLegacyRecord, toOmetriaContact } from "../../lib/mapping/contact.ts";
import type { MergeFieldDefinition } from "../../lib/mailchimp/list_definitions.ts";
import {
  type ContactMapping,
  type DroppedValue,
  resolveMapping,
} from "../../lib/mapping/field_mapping.ts";
import { type FieldsConfig, fullFieldsConfig } from "../../lib/mapping/fields_config.ts";

const ID = "b642b4217b34b1e8d3bd915fc65c4452";

const DEFINITIONS: MergeFieldDefinition[] = [
  { tag: "FNAME", type: "text", name: "First Name" },
  { tag: "LNAME", type: "text", name: "Last Name" },
  { tag: "ADDRESS", type: "address", name: "Address" },
  { tag: "PHONE", type: "phone", name: "Phone Number" },
  { tag: "BIRTHDAY", type: "birthday", name: "Birthday" },
  { tag: "GENDER", type: "dropdown", name: "Gender" },
  { tag: "SHOESIZE", type: "number", name: "Shoe size" },
  { tag: "CARDSINCE", type: "date", name: "Store card since" },
];

const INTERESTS = new Map([["a1b2c3d4e5", "Shoes"], ["f6a7b8c9d0", "Bags"], ["0a1b", "Menswear"]]);

/** A member as Mailchimp serves it with every field the mapping reads. */
function fullMember(fields: Record<string, unknown> = {}): Member {
  return memberSchema.parse({
    id: ID,
    email_address: "ann.smith@example.com",
    status: "subscribed",
    merge_fields: {
      FNAME: "Ann",
      LNAME: "Smith",
      ADDRESS: {
        addr1: "1 High Street",
        addr2: "",
        city: "London",
        state: "",
        zip: "SW1A 1AA",
        country: "GB",
      },
      PHONE: "+44 7700 900123",
      BIRTHDAY: "04/23",
      GENDER: "Female",
      SHOESIZE: 38,
      CARDSINCE: "2019-06-01",
    },
    last_changed: "2026-11-01T11:00:00+00:00",
    timestamp_opt: "2026-10-01T09:30:00+00:00",
    timestamp_signup: "2026-09-30T08:00:00+00:00",
    language: "en",
    vip: true,
    member_rating: 4,
    location: { latitude: 0, longitude: 0, country_code: "gb", timezone: "" },
    tags: [{ id: 11, name: "Newsletter" }, { id: 7, name: "VIP" }],
    interests: { a1b2c3d4e5: true, f6a7b8c9d0: false, "0a1b": true },
    ...fields,
  });
}

function mappingFor(fields?: FieldsConfig): ContactMapping {
  const resolved = resolveMapping(fullFieldsConfig(fields), DEFINITIONS, INTERESTS);
  if ("problems" in resolved) throw new Error(resolved.problems.join("; "));
  return resolved.mapping;
}

Deno.test("toOmetriaContact() maps a full member with the documented default", () => {
  assert.deepEqual(toOmetriaContact(fullMember(), "l1", mappingFor()), {
    "@type": "contact",
    "@collection": "mailchimp-l1",
    id: ID,
    email: "ann.smith@example.com",
    firstname: "Ann",
    lastname: "Smith",
    marketing_optin: "EXPLICITLY_OPTEDIN",
    timestamp_subscribed: "2026-10-01T09:30:00+00:00",
    // E.164, as Ometria validates phone numbers.
    phone_number: "+447700900123",
    gender: "f",
    timestamp_acquired: "2026-09-30T08:00:00+00:00",
    country_id: "GB",
    properties: {
      // An address is an object: one property per part, empty parts cleared.
      address_addr1: "1 High Street",
      address_addr2: null,
      address_state: null,
      address_city: "London",
      address_zip: "SW1A 1AA",
      address_country: "GB",
      // A birthday has no year: never date_of_birth.
      birthday: "04/23",
      shoesize: 38,
      cardsince: "2019-06-01",
      language: "en",
      vip: true,
      member_rating: 4,
      mailchimp_tags: ["Newsletter", "VIP"],
      mailchimp_interests: ["Menswear", "Shoes"],
    },
  });
});

Deno.test("toOmetriaContact() stamps the unsubscribe and sends emptied fields as fields.cleared says", async (t) => {
  const member = fullMember({
    status: "unsubscribed",
    merge_fields: { FNAME: "", LNAME: "", ADDRESS: "", PHONE: "", BIRTHDAY: "", GENDER: "" },
    timestamp_signup: "",
    language: "",
    location: { country_code: "" },
    tags: [],
    interests: {},
  });
  const address = ["addr1", "addr2", "city", "state", "zip", "country"].map((p) => `address_${p}`);
  // Ometria merges what a record leaves out (its Push API page), so an emptied field is sent.
  for (const [cleared, blank] of [["null", null], ["empty", ""]] as const) {
    await t.step(cleared, () => {
      const contact = toOmetriaContact(member, "l1", mappingFor({ cleared }));
      assert.equal(contact.timestamp_unsubscribed, "2026-11-01T11:00:00+00:00");
      // No signup time: the opt-in time is when the member was acquired.
      assert.equal(contact.timestamp_acquired, "2026-10-01T09:30:00+00:00");
      for (const field of ["phone_number", "gender", "country_id"]) {
        assert.equal(contact[field], blank, field);
      }
      assert.equal("timestamp_subscribed" in contact, false);
      assert.deepEqual(contact.properties, {
        ...Object.fromEntries(address.map((p) => [p, blank])),
        birthday: blank,
        language: blank,
        vip: true,
        member_rating: 4,
        mailchimp_tags: [],
        mailchimp_interests: [],
      });
    });
  }
  await t.step("omit", () => {
    const contact = toOmetriaContact(member, "l1", mappingFor({ cleared: "omit" }));
    for (const field of ["phone_number", "gender", "country_id", "timestamp_subscribed"]) {
      assert.equal(field in contact, false, field);
    }
    assert.deepEqual(contact.properties, {
      vip: true,
      member_rating: 4,
      mailchimp_tags: [],
      mailchimp_interests: [],
    });
  });
});

Deno.test("a custom mapping from the connections file routes every field it names", async () => {
  const file = {
    connections: [{
      id: "uk-shop",
      list_id: "a1b2c3d4e5",
      mailchimp_api_key_env: "MC",
      ometria_api_key_env: "OM",
      fields: {
        merge_fields: {
          PHONE: "properties.mobile",
          BIRTHDAY: "properties.bday",
          CARDSINCE: "date_of_birth",
          ADDRESS: "properties.home",
        },
        other_merge_fields: "ignore",
        language: null,
        vip: "properties.is_vip",
        timestamp_signup: "properties.signed_up",
        country: null,
        tags: { lists: { VIP: "1234", Wholesale: "5678" } },
        interests: "properties.groups",
      },
    }],
  };
  const loaded = await loadConfig({
    env: { MC: "0123456789abcdef0123456789abcdef-us9", OM: "om-key" },
    args: ["--connections", "c.json"],
    readTextFile: () => Promise.resolve(JSON.stringify(file)),
  });
  assert.ok(loaded.ok, JSON.stringify(loaded));
  const fields = loaded.config.connections[0]!.fields;
  const contact = toOmetriaContact(fullMember(), "a1b2c3d4e5", mappingFor(fields));
  assert.deepEqual(contact, {
    "@type": "contact",
    "@collection": "mailchimp-a1b2c3d4e5",
    id: ID,
    email: "ann.smith@example.com",
    firstname: "Ann",
    lastname: "Smith",
    marketing_optin: "EXPLICITLY_OPTEDIN",
    timestamp_subscribed: "2026-10-01T09:30:00+00:00",
    // Tags as Ometria lists: the mapped tags the member has are added, the others removed.
    "@add_to_lists": ["1234"],
    "@remove_from_lists": ["5678"],
    // A full date (type "date") may be date_of_birth; GENDER and SHOESIZE are ignored.
    date_of_birth: "2019-06-01",
    properties: {
      // Only phone_number takes E.164: a property keeps the number as typed.
      mobile: "+44 7700 900123",
      bday: "04/23",
      home_addr1: "1 High Street",
      home_addr2: null,
      home_state: null,
      home_city: "London",
      home_zip: "SW1A 1AA",
      home_country: "GB",
      is_vip: true,
      member_rating: 4,
      signed_up: "2026-09-30T08:00:00+00:00",
      groups: ["Menswear", "Shoes"],
    },
  });
});

Deno.test("resolveMapping() refuses a birthday as date_of_birth and an address outside properties", () => {
  const birthday = resolveMapping(
    fullFieldsConfig({ merge_fields: { BIRTHDAY: "date_of_birth", ADDRESS: "country_id" } }),
    DEFINITIONS,
  );
  assert.ok("problems" in birthday);
  assert.match(birthday.problems[0]!, /ADDRESS is an address/);
  assert.match(
    birthday.problems[1] ?? birthday.problems.join(),
    /BIRTHDAY is a birthday \(MM\/DD, no year\)/,
  );
});

Deno.test("resolveMapping() names every merge tag the list does not have", () => {
  const resolved = resolveMapping(
    fullFieldsConfig({
      merge_fields: { PHONE: "phone_number", MOBILE: null, SIZE: "properties.size" },
    }),
    DEFINITIONS,
  );
  assert.ok("problems" in resolved);
  assert.match(resolved.problems[0]!, /does not have: MOBILE, SIZE/);
});

Deno.test("a value that cannot be normalised is left out with its reason, not sent as typed", () => {
  const dropped: DroppedValue[] = [];
  const mapping = {
    ...mappingFor({ merge_fields: { CARDSINCE: "date_of_birth" } }),
    onDropped: (d: DroppedValue) => dropped.push(d),
  };
  const member = fullMember({
    merge_fields: { FNAME: "A", LNAME: "B", CARDSINCE: "sometime", PHONE: "07700 900123" },
  });
  const contact = toOmetriaContact(member, "l1", mapping);
  assert.equal("date_of_birth" in contact, false);
  assert.equal("phone_number" in contact, false);
  assert.deepEqual(dropped, [
    { target: "date_of_birth", from: "CARDSINCE", reason: "not_a_date" },
    { target: "phone_number", from: "PHONE", reason: "no_country_code" },
  ]);
});

Deno.test("tags go to a property, to lists, or nowhere, as the connection chooses", async (t) => {
  await t.step("property", () => {
    const c = toOmetriaContact(fullMember(), "l1", mappingFor({ tags: "properties.segments" }));
    assert.deepEqual((c.properties as Record<string, unknown>).segments, ["Newsletter", "VIP"]);
    assert.equal("@add_to_lists" in c, false);
  });
  await t.step("lists", () => {
    const c = toOmetriaContact(
      fullMember(),
      "l1",
      mappingFor({ tags: { lists: { VIP: "10", Newsletter: "11", Gone: "12" } } }),
    );
    assert.deepEqual(c["@add_to_lists"], ["10", "11"]);
    assert.deepEqual(c["@remove_from_lists"], ["12"]);
    assert.equal("mailchimp_tags" in (c.properties as Record<string, unknown>), false);
  });
  await t.step("nowhere", () => {
    const c = toOmetriaContact(fullMember(), "l1", mappingFor({ tags: null }));
    assert.equal("mailchimp_tags" in (c.properties as Record<string, unknown>), false);
  });
});

Deno.test("the legacy /record format stays fixed whatever the member carries", () => {
  assert.deepEqual(toLegacyRecord(fullMember()), {
    id: ID,
    firstname: "Ann",
    lastname: "Smith",
    email: "ann.smith@example.com",
    status: "subscribed",
  });
});

async function configErrors(entry: Record<string, unknown>): Promise<string> {
  const file = {
    connections: [{
      id: "uk",
      list_id: "a1b2c3d4e5",
      mailchimp_api_key_env: "MC",
      ometria_api_key_env: "OM",
      ...entry,
    }],
  };
  const loaded = await loadConfig({
    env: { MC: "0123456789abcdef0123456789abcdef-us9", OM: "om-key" },
    args: ["--connections", "c.json"],
    readTextFile: () => Promise.resolve(JSON.stringify(file)),
  });
  assert.ok(!loaded.ok);
  return loaded.errors.join("\n");
}

Deno.test("the connections file refuses fields it cannot use, saying how", async () => {
  assert.match(
    await configErrors({ fields: { merge_fields: { FNAME: "properties.x" } } }),
    /FNAME and LNAME always go to firstname and lastname/,
  );
  const text = await configErrors({
    fields: { merge_fields: { PHONE: "telephone" }, tags: "lists" },
  });
  assert.match(text, /must be null, properties\.<name>, or one of phone_number/);
  assert.match(text, /must be null, properties\.<name>, or \{"lists"[\s\S]*fields\.tags/);
  assert.match(
    await configErrors({ ometria_endpoint: "record", fields: { tags: null } }),
    /"fields" only applies to the push endpoint; the legacy \/record format is fixed/,
  );
});
