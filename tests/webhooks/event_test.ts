/**
 * Contract tests of the webhook parser and receiver against Mailchimp's documented deliveries
 * (tests/fixtures/mailchimp_webhooks.ts): the member of each is the subscriber hash of its
 * address, and a valid delivery the sync does not act on is answered 2xx and counted by type.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { parseWebhookEvent } from "../../lib/webhooks/event.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { recordingReceiver } from "../_helpers/recording_receiver.ts";
import * as fixtures from "../fixtures/mailchimp_webhooks.ts";

/** MD5 of the lowercased address, written out here as Mailchimp's SDK defines the member id. */
const md5 = (email: string) => createHash("md5").update(email.toLowerCase()).digest("hex");

Deno.test("parseWebhookEvent() names the member of each documented delivery by its email's hash", async (t) => {
  const cases: [string, string, string[], "unsub" | "delete" | null][] = [
    ["subscribe", fixtures.SUBSCRIBE, [md5("api@mailchimp.com")], null],
    ["unsubscribe", fixtures.UNSUBSCRIBE, [md5("api+unsub@mailchimp.com")], "unsub"],
    ["profile", fixtures.PROFILE, [md5("api@mailchimp.com")], null],
    [
      "upemail",
      fixtures.UPEMAIL,
      [md5("api+old@mailchimp.com"), md5("api+new@mailchimp.com")],
      null,
    ],
    ["cleaned", fixtures.CLEANED, [md5("api+cleaned@mailchimp.com")], null],
    ["captured subscribe", fixtures.SUBSCRIBE_CAPTURED, [md5("someone@example.com")], null],
  ];
  for (const [name, body, memberIds, action] of cases) {
    await t.step(name, () => {
      const parsed = parseWebhookEvent(new URLSearchParams(body));
      assert.ok("event" in parsed, JSON.stringify(parsed));
      assert.deepEqual(parsed.event.memberIds, memberIds);
      assert.equal(parsed.event.action, action);
      assert.match(parsed.event.listId ?? "", /^[0-9a-f]{10}$/);
      assert.notEqual(parsed.event.firedAtMs, null);
    });
  }
});

Deno.test("parseWebhookEvent() tells valid deliveries not to act on from bodies that are no event", async (t) => {
  const ignored: [string, string, string][] = [
    ["campaign", fixtures.CAMPAIGN, "campaign"],
    ["sms_subscribe", fixtures.SMS_SUBSCRIBE, "sms_subscribe"],
    ["profile of an SMS-only contact", fixtures.PROFILE_SMS_ONLY, "no_email"],
    [
      "a type this version does not know, in Mailchimp's envelope",
      "type=sms_optin&fired_at=2026-05-01+10%3A00%3A00&data%5Blist_id%5D=a6b5da1054",
      "unknown_type",
    ],
  ];
  for (const [name, body, kind] of ignored) {
    await t.step(name, () => {
      assert.deepEqual(
        (parseWebhookEvent(new URLSearchParams(body)) as { ignored?: string }).ignored,
        kind,
      );
    });
  }
  await t.step("another list's event, when the list is known", () => {
    const parsed = parseWebhookEvent(new URLSearchParams(fixtures.SUBSCRIBE), "otherlist1");
    assert.equal((parsed as { ignored?: string }).ignored, "other_list");
  });
  for (const body of ["", "hello=world", "type=nonsense&data[id]=x", "type=DROP%20TABLE"]) {
    await t.step(`not an event: ${JSON.stringify(body)}`, () => {
      assert.ok("problem" in parseWebhookEvent(new URLSearchParams(body)));
    });
  }
});

Deno.test("the receiver queues documented deliveries and answers 200 to those it does not act on, counted by type", async () => {
  const clock = new FakeClock(Date.UTC(2026, 3, 30, 10, 0, 0));
  const r = recordingReceiver(
    [{ id: "c1", listId: "a6b5da1054", secret: "s3cret-0123456789abcdef" }],
    clock,
  );
  const path = "/webhooks/mailchimp/c1/s3cret-0123456789abcdef";
  try {
    for (
      const body of [
        fixtures.SUBSCRIBE,
        fixtures.UNSUBSCRIBE,
        fixtures.PROFILE,
        fixtures.UPEMAIL,
        fixtures.CLEANED,
        fixtures.CAMPAIGN,
        fixtures.SMS_SUBSCRIBE,
        fixtures.PROFILE_SMS_ONLY,
      ]
    ) {
      const [status, text] = await r.post(path, body);
      assert.equal(status, 200, `${text} for ${body.slice(0, 40)}`);
    }
    assert.equal((await r.post(path, "type=nonsense&data[id]=x"))[0], 400);
    await r.settle();
    assert.deepEqual(r.outcomes, [
      "queued",
      "queued",
      "queued",
      "queued",
      "queued",
      "ignored_campaign",
      "ignored_sms_subscribe",
      "ignored_no_email",
      "bad_request",
    ]);
    assert.deepEqual(r.jobs.map((j) => j.event.type), [
      "subscribe",
      "unsubscribe",
      "profile",
      "upemail",
      "cleaned",
    ]);
  } finally {
    await r.close();
  }
});
