/**
 * The Mailchimp simulator's member tags, merge-field options and webhook deliveries, as
 * docs/API_NOTES.md describes Mailchimp's: 50 tags in a listing beside `tags_count`, the
 * tags endpoint, `options.date_format`/`phone_format`, 10-hex ids in webhooks, SMS and
 * campaign events only where asked, signed deliveries.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { MailchimpSimulator, type MailchimpSimulatorOptions } from "../../lib/sim/mailchimp_sim.ts";

const LIST = "list000001";
const AUTH = { authorization: `Basic ${btoa("any:simkey0000000000000000000000000000-us1")}` };

async function start(options: MailchimpSimulatorOptions = {}) {
  const sim = await MailchimpSimulator.start({
    clock: new FakeClock(Date.UTC(2026, 4, 1)),
    ...options,
  });
  return sim;
}

async function json(sim: MailchimpSimulator, path: string, init: RequestInit = {}) {
  const res = await fetch(`${sim.url}/${path}`, { ...init, headers: { ...AUTH, ...init.headers } });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
}

Deno.test("MailchimpSimulator serves 50 tags in a listing, tags_count, and every tag at the member's tags endpoint", async () => {
  const sim = await start();
  try {
    sim.addList(LIST, { profile: "retail" });
    const tags = Array.from({ length: 60 }, (_, i) => `Tag ${i}`);
    const m = sim.upsertMember(LIST, { email: "many@example.com", extra: { tags } });
    const page = await json(
      sim,
      `lists/${LIST}/members?fields=members.id,members.tags,members.tags_count`,
    );
    const served = page.body.members.find((x: { id: string }) => x.id === m.id);
    assert.equal(served.tags.length, 50);
    assert.equal(served.tags_count, 60);
    const first = await json(sim, `lists/${LIST}/members/${m.id}/tags?count=40`);
    assert.equal(first.body.total_items, 60);
    assert.equal(first.body.tags.length, 40);
    assert.deepEqual(Object.keys(first.body.tags[0]).sort(), ["date_added", "id", "name"]);
    const rest = await json(sim, `lists/${LIST}/members/${m.id}/tags?count=40&offset=40`);
    assert.deepEqual(
      [...first.body.tags, ...rest.body.tags].map((t: { name: string }) => t.name),
      tags,
    );
    assert.equal((await json(sim, `lists/${LIST}/members/${"0".repeat(32)}/tags`)).status, 404);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator serves merge-field options and date values normalised or as displayed", async () => {
  const sim = await start();
  try {
    sim.addList(LIST, {
      profile: "retail",
      formats: { date: "DD/MM/YYYY", birthday: "DD/MM", phone: "US" },
    });
    const fields = await json(sim, `lists/${LIST}/merge-fields?count=100`);
    const options = Object.fromEntries(
      fields.body.merge_fields.map((f: { tag: string; options: unknown }) => [f.tag, f.options]),
    );
    assert.deepEqual(options.PHONE, { phone_format: "US" });
    assert.deepEqual(options.BIRTHDAY, { date_format: "DD/MM" });
    assert.deepEqual(options.CARDSINCE, { date_format: "DD/MM/YYYY" });
    assert.deepEqual(options.ADDRESS, { default_country: 164 });
    const m = sim.upsertMember(LIST, {
      email: "dates@example.com",
      extra: { merge: { BIRTHDAY: "04/23", CARDSINCE: "2019-06-01" } },
    });
    const read = async () =>
      (await json(sim, `lists/${LIST}/members/${m.id}?fields=merge_fields`)).body.merge_fields;
    assert.deepEqual([(await read()).BIRTHDAY, (await read()).CARDSINCE], ["04/23", "2019-06-01"]);
    sim.setOptions({ mergeDateValues: "display" });
    assert.deepEqual([(await read()).BIRTHDAY, (await read()).CARDSINCE], ["23/04", "01/06/2019"]);
  } finally {
    await sim.close();
  }
});

/** A receiver recording the deliveries it gets. */
function receiver() {
  const got: { body: string; signature: string | null }[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    if (req.method === "POST") {
      got.push({ body: await req.text(), signature: req.headers.get("x-mailchimp-signature") });
    }
    return new Response("ok");
  });
  return { url: `http://127.0.0.1:${server.addr.port}/hook`, got, close: () => server.shutdown() };
}

Deno.test("MailchimpSimulator webhooks: 10-hex ids, SMS and campaign events only where asked, signed once created", async () => {
  const sim = await start();
  const r = receiver();
  try {
    sim.addList(LIST);
    const created = await json(sim, `lists/${LIST}/webhooks`, {
      method: "POST",
      body: JSON.stringify({
        url: r.url,
        events: { subscribe: true, upemail: true, sms_subscribe: true, campaign: false },
        sources: { user: true, admin: true, api: true },
      }),
    });
    const secret = created.body.signing_secret as string;
    assert.match(secret, /^[0-9a-f]{32}$/);
    assert.equal(created.body.signing_enabled, true);
    const listed = await json(sim, `lists/${LIST}/webhooks`);
    assert.equal("signing_secret" in listed.body.webhooks[0], false, "given once, never listed");

    const member = sim.upsertMember(LIST, { email: "new@example.com" });
    sim.changeEmail(LIST, "new@example.com", "moved@example.com");
    sim.sendSmsEvent(LIST, "sms_subscribe", "+15555550100");
    sim.sendSmsEvent(LIST, "sms_unsubscribe", "+15555550100");
    sim.sendCampaign(LIST, "Spring sale");
    await sim.webhooks.settle();
    const forms = r.got.map((d) => new URLSearchParams(d.body));
    assert.deepEqual(forms.map((f) => f.get("type")), ["subscribe", "upemail", "sms_subscribe"]);
    assert.equal(forms[0]!.get("data[id]"), member.unique_email_id);
    assert.match(forms[0]!.get("data[id]")!, /^[0-9a-f]{10}$/);
    assert.equal(forms[1]!.get("data[id]"), null);
    assert.match(forms[1]!.get("data[new_id]")!, /^[0-9a-f]{10}$/);
    assert.equal(forms[2]!.get("data[sms_phone_number]"), "+15555550100");
    for (const d of r.got) {
      const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(d.signature ?? "") ?? [];
      assert.ok(t && v1, d.signature ?? "unsigned");
      assert.equal(createHmac("sha256", secret).update(`${t}.${d.body}`).digest("hex"), v1);
    }
    assert.equal(
      (await json(sim, `lists/${LIST}/webhooks/${created.body.id}`, { method: "DELETE" })).status,
      204,
    );
    assert.deepEqual(sim.webhooks.list(LIST), []);
  } finally {
    await r.close();
    await sim.close();
  }
});

Deno.test("MailchimpSimulator serves only the location keys named with dot notation", async () => {
  // "Reference parameters of sub-objects with dot notation" (the listing's `fields`).
  const sim = await start();
  try {
    sim.addList(LIST, { profile: "retail" });
    const m = sim.upsertMember(LIST, { email: "where@example.com" });
    const narrow = await json(
      sim,
      `lists/${LIST}/members?fields=members.id,members.location.country_code`,
    );
    const served = narrow.body.members.find((x: { id: string }) => x.id === m.id);
    assert.deepEqual(Object.keys(served.location), ["country_code"]);
    const whole = await json(sim, `lists/${LIST}/members?fields=members.id,members.location`);
    assert.deepEqual(
      Object.keys(whole.body.members[0].location).sort(),
      ["country_code", "dstoff", "gmtoff", "latitude", "longitude", "timezone"],
    );
    const one = await json(sim, `lists/${LIST}/members/${m.id}?fields=id,location.country_code`);
    assert.deepEqual(one.body.location, { country_code: served.location.country_code });
  } finally {
    await sim.close();
  }
});
