import assert from "node:assert/strict";
import { type Member, MEMBER_STATUSES, memberSchema } from "../../lib/mailchimp/member.ts";
import {
  collectionFor,
  type MarketingOptin,
  toLegacyRecord,
  toOmetriaContact,
} from "../../lib/mapping/contact.ts";

const ID = "b642b4217b34b1e8d3bd915fc65c4452";

function member(fields: Partial<Record<keyof Member, unknown>> = {}): Member {
  // Parsed like a Mailchimp response, so defaults (empty merge_fields…) are the real ones.
  return memberSchema.parse({
    id: ID,
    email_address: "Ann.Smith@Example.com",
    status: "subscribed",
    merge_fields: { FNAME: "Ann", LNAME: "Smith" },
    last_changed: "2026-11-01T11:00:00+00:00",
    timestamp_opt: "2026-10-01T09:30:00+00:00",
    ...fields,
  });
}

Deno.test("toOmetriaContact() maps every Mailchimp status to its marketing_optin", async (t) => {
  const expected: Record<(typeof MEMBER_STATUSES)[number], MarketingOptin> = {
    subscribed: "EXPLICITLY_OPTEDIN",
    unsubscribed: "EXPLICITLY_OPTEDOUT",
    cleaned: "EXPLICITLY_OPTEDOUT",
    pending: "NOT_SPECIFIED",
    transactional: "NOT_SPECIFIED",
    archived: "NOT_SPECIFIED",
  };
  assert.deepEqual(Object.keys(expected).sort(), [...MEMBER_STATUSES].sort());
  for (const status of MEMBER_STATUSES) {
    await t.step(`${status} → ${expected[status]}`, () => {
      const contact = toOmetriaContact(member({ status }), "a1b2c3d4e5");
      assert.equal(contact.marketing_optin, expected[status]);
      // Only a subscription carries its time: anything else would fire a subscription event.
      assert.equal(
        contact.timestamp_subscribed,
        status === "subscribed" ? "2026-10-01T09:30:00+00:00" : undefined,
      );
      assert.equal("timestamp_subscribed" in contact, status === "subscribed");
    });
  }
});

Deno.test("toOmetriaContact() builds the whole contact record", () => {
  assert.deepEqual(toOmetriaContact(member(), "a1b2c3d4e5"), {
    "@type": "contact",
    "@collection": "mailchimp-a1b2c3d4e5",
    id: ID,
    email: "Ann.Smith@Example.com",
    firstname: "Ann",
    lastname: "Smith",
    marketing_optin: "EXPLICITLY_OPTEDIN",
    timestamp_subscribed: "2026-10-01T09:30:00+00:00",
  });
  assert.equal(collectionFor("f6g7h8i9j0"), "mailchimp-f6g7h8i9j0");
});

Deno.test("toOmetriaContact() leaves timestamp_subscribed out without an opt-in time", () => {
  for (const fields of [{ timestamp_opt: "" }, { timestamp_opt: undefined }]) {
    const contact = toOmetriaContact(member(fields), "l1");
    assert.equal(contact.marketing_optin, "EXPLICITLY_OPTEDIN");
    assert.equal("timestamp_subscribed" in contact, false);
  }
});

Deno.test("toOmetriaContact() sends empty names for missing or non-text merge fields", () => {
  const cases: unknown[] = [undefined, {}, { FNAME: "", LNAME: "" }, { FNAME: {}, LNAME: null }];
  for (const merge_fields of cases) {
    const contact = toOmetriaContact(member({ merge_fields }), "l1");
    assert.deepEqual([contact.firstname, contact.lastname], ["", ""], JSON.stringify(merge_fields));
    const legacy = toLegacyRecord(member({ merge_fields }));
    assert.deepEqual([legacy.firstname, legacy.lastname], ["", ""]);
  }
});

Deno.test("toOmetriaContact() keeps a merge field that arrives as a number as its text", () => {
  const merge_fields = { FNAME: 7, LNAME: 1e3 };
  const contact = toOmetriaContact(member({ merge_fields }), "l1");
  assert.deepEqual([contact.firstname, contact.lastname], ["7", "1000"]);
  const legacy = toLegacyRecord(member({ merge_fields }));
  assert.deepEqual([legacy.firstname, legacy.lastname], ["7", "1000"]);
});

Deno.test("toLegacyRecord() passes Mailchimp's status through as is", async (t) => {
  for (const status of MEMBER_STATUSES) {
    await t.step(status, () => {
      assert.deepEqual(toLegacyRecord(member({ status })), {
        id: ID,
        firstname: "Ann",
        lastname: "Smith",
        email: "Ann.Smith@Example.com",
        status,
      });
    });
  }
});
