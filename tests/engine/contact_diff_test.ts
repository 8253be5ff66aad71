/**
 * contactDifference(): the field by field comparison `verify` makes between a mapped record
 * and the contact Ometria serves back, on the cases Ometria's reads leave open.
 */
import assert from "node:assert/strict";
import { contactDifference } from "../../lib/engine/contact_diff.ts";

const RECORD = {
  "@type": "contact",
  "@collection": "mailchimp-l1",
  "@force_optin": true,
  id: "abc",
  email: "Ada@Example.com",
  firstname: "Ada",
  lastname: "",
  marketing_optin: "EXPLICITLY_OPTEDIN",
  timestamp_subscribed: "2026-01-01T10:00:00+00:00",
  properties: { plan: "gold", visits: 3 },
};

Deno.test("contactDifference() compares only what the record sends, as Ometria may write it", async (t) => {
  const cases: {
    name: string;
    held: Record<string, unknown>;
    differ: string[];
    absent: string[];
  }[] = [
    {
      name: "the same record with Ometria's own fields added",
      held: { ...RECORD, profile_id: "p1", dt_object_updated: "x", collection: "mailchimp-l1" },
      differ: [],
      absent: [],
    },
    {
      name: "email in another case, a timestamp in Ometria's format, a number as text",
      held: {
        ...RECORD,
        email: " ada@example.com",
        timestamp_subscribed: "2026-01-01 10:00:00+00",
        properties: { plan: "gold", visits: "3" },
      },
      differ: [],
      absent: [],
    },
    {
      name: "a value changed and a property changed",
      held: { ...RECORD, firstname: "Eve", properties: { plan: "silver", visits: 3 } },
      differ: ["firstname", "properties.plan"],
      absent: [],
    },
    {
      name: "an empty field Ometria does not hold equals it; a set one it lacks is absent",
      held: { id: "abc", email: RECORD.email, marketing_optin: "EXPLICITLY_OPTEDIN" },
      differ: [],
      absent: ["firstname", "timestamp_subscribed", "properties.plan", "properties.visits"],
    },
    {
      name: "an instant that differs",
      held: { ...RECORD, timestamp_subscribed: "2026-01-01T11:00:00Z" },
      differ: ["timestamp_subscribed"],
      absent: [],
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const d = contactDifference(RECORD, c.held);
      assert.deepEqual(d.differ, c.differ);
      assert.deepEqual(d.absent, c.absent);
    });
  }
});
