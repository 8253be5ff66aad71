/**
 * Contract tests of the field mapping through the real Mailchimp client, against answers
 * shaped as Mailchimp records and documents them (tests/fixtures/mailchimp_answers.ts):
 * merge-field options decide date and phone formats, and a member with more than the 50
 * tags a listing serves keeps every list its tags map to.
 */
import assert from "node:assert/strict";
import { systemClock } from "../../lib/clock/clock.ts";
import { ConcurrencyLimiter } from "../../lib/http/concurrency_limiter.ts";
import { MailchimpClient } from "../../lib/mailchimp/client.ts";
import { toOmetriaContact } from "../../lib/mapping/contact.ts";
import { FieldMapper } from "../../lib/mapping/field_mapper.ts";
import type { DroppedValue } from "../../lib/mapping/field_mapping.ts";
import type { FieldsConfig } from "../../lib/mapping/fields_config.ts";
import * as answers from "../fixtures/mailchimp_answers.ts";

/** A server answering the merge fields, the members page and the member's tags. */
function fixture() {
  const paths: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
    const url = new URL(req.url);
    paths.push(url.pathname);
    const body = url.pathname.endsWith("/merge-fields")
      ? answers.MERGE_FIELDS
      : url.pathname.endsWith("/tags")
      ? answers.memberTagsPage(
        Number(url.searchParams.get("offset") ?? 0),
        Number(url.searchParams.get("count") ?? 10),
      )
      : answers.MEMBERS_PAGE;
    return new Response(body, { headers: { "content-type": "application/json" } });
  });
  const client = new MailchimpClient({
    apiKey: "key-us3",
    baseUrl: `http://127.0.0.1:${server.addr.port}/3.0`,
    clock: systemClock,
    limiter: new ConcurrencyLimiter(10),
    memberFields: ["members.tags", "members.tags_count"],
  });
  return { client, paths, close: () => server.shutdown() };
}

async function contactOf(fields: FieldsConfig, dropped: DroppedValue[] = []) {
  const f = fixture();
  try {
    const page = await f.client.getMembers("26d8e9db1e", { count: 1000 });
    const mapper = new FieldMapper("26d8e9db1e", fields, f.client, {
      onDropped: (d) => dropped.push(d),
    });
    const mapping = await mapper.forRun()(page.members);
    return { contact: toOmetriaContact(page.members[0]!, "26d8e9db1e", mapping), paths: f.paths };
  } finally {
    await f.close();
  }
}

Deno.test("dates, birthdays and phones follow their merge field's options; phone_number is E.164", async () => {
  const { contact } = await contactOf({
    merge_fields: { JOINED: "date_of_birth", MOBILE: "properties.mobile" },
  });
  // phone_format "none" (international): the trunk "(0)" and the spaces go.
  assert.equal(contact.phone_number, "+442079460018");
  // date_format DD/MM/YYYY: 01/06/2019 is the first of June.
  assert.equal(contact.date_of_birth, "2019-06-01");
  const properties = contact.properties as Record<string, unknown>;
  // A DD/MM birthday is sent as Mailchimp writes birthdays, MM/DD.
  assert.equal(properties.birthday, "04/23");
  assert.equal(properties.ltv, 100);
  // An emptied address is cleared part by part.
  assert.equal(properties.address_addr1, null);
});

Deno.test("a US phone field's national number gets +1", async () => {
  const dropped: DroppedValue[] = [];
  const us = await contactOf({ merge_fields: { MOBILE: "phone_number", PHONE: null } }, dropped);
  assert.equal(us.contact.phone_number, "+15125550123");
  assert.deepEqual(dropped, []);
});

Deno.test("a member with more tags than the listing serves keeps every list its tags map to", async () => {
  const { contact, paths } = await contactOf({
    tags: { lists: { "Segment 2": "L2", "Segment 52": "L52", Other: "L0" } },
  });
  // Segment 52 is past the 50 tags the listing served: read from the member's tags endpoint.
  assert.deepEqual(contact["@add_to_lists"], ["L2", "L52"]);
  assert.deepEqual(contact["@remove_from_lists"], ["L0"]);
  assert.ok(paths.some((p) => p.endsWith("/members/b0149f75fe84c92d0dec9a0b13e6960b/tags")));
});
