/**
 * The Mailchimp client's member writes against the simulator over real HTTP: the PATCH that
 * unsubscribes, `actions/delete-permanent`, and the refusals the research notes quote
 * ("Member In Compliance State", "Forgotten Email Not Subscribed"); and the simulator's
 * webhooks, which tell a change made through the API only to webhooks whose `sources.api` is on.
 */
import assert from "node:assert/strict";
import { systemClock } from "../../lib/clock/clock.ts";
import { ConcurrencyLimiter } from "../../lib/http/concurrency_limiter.ts";
import { MailchimpClient } from "../../lib/mailchimp/client.ts";
import { subscriberHash } from "../../lib/mailchimp/member.ts";
import { MailchimpSimulator } from "../../lib/sim/mailchimp_sim.ts";

const LIST = "writes0001";

async function setUp() {
  const sim = await MailchimpSimulator.start();
  sim.addList(LIST);
  const client = new MailchimpClient({
    apiKey: sim.apiKey,
    baseUrl: sim.url,
    clock: systemClock,
    limiter: new ConcurrencyLimiter(10),
    retry: { minDelayMs: 1, maxDelayMs: 2 },
  });
  return { sim, client };
}

/** A server keeping the bodies of the webhook deliveries it gets. */
function collector() {
  const bodies: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    if (req.method === "POST") bodies.push(await req.text());
    return new Response("ok");
  });
  return { bodies, url: `http://127.0.0.1:${server.addr.port}/`, close: () => server.shutdown() };
}

/** A raw request to the simulator, with its key. */
async function call(sim: MailchimpSimulator, method: string, path: string, body?: unknown) {
  const res = await fetch(`${sim.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${sim.apiKey}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

Deno.test("unsubscribeMember() PATCHes the status and answers the member as it is now", async () => {
  const { sim, client } = await setUp();
  try {
    const member = sim.upsertMember(LIST, { email: "Ada@Example.com", FNAME: "Ada" });
    const answer = await client.unsubscribeMember(LIST, member.id);
    assert.ok("member" in answer);
    assert.equal(answer.member.status, "unsubscribed");
    assert.equal(answer.member.merge_fields.FNAME, "Ada");
    assert.ok(answer.serverTimeMs !== undefined, "Mailchimp's clock comes with it");
    assert.equal(sim.truth(LIST)[0]?.status, "unsubscribed");
    assert.equal(sim.stats.memberWrites, 1);
    // A member Mailchimp does not have is gone, not an error.
    assert.deepEqual(
      "gone" in await client.unsubscribeMember(LIST, subscriberHash("nobody@example.com")),
      true,
    );
  } finally {
    await sim.close();
  }
});

Deno.test("deleteMemberPermanently() deletes for good; a second time is false, and Mailchimp then refuses the address", async () => {
  const { sim, client } = await setUp();
  try {
    const member = sim.upsertMember(LIST, { email: "gone@example.com" });
    assert.equal(await client.deleteMemberPermanently(LIST, member.id), true);
    assert.equal(await client.deleteMemberPermanently(LIST, member.id), false);
    assert.ok("gone" in await client.getMember(LIST, member.id));
    for (
      const [method, path] of [["POST", `/lists/${LIST}/members`], [
        "PUT",
        `/lists/${LIST}/members/${member.id}`,
      ]]
    ) {
      const again = await call(sim, method!, path!, {
        email_address: "gone@example.com",
        status: "subscribed",
        status_if_new: "pending",
      });
      assert.equal(again.status, 400, method);
      assert.equal(again.json.title, "Forgotten Email Not Subscribed");
    }
    // The person may sign up again through a form (the simulator's upsertMember).
    sim.upsertMember(LIST, { email: "gone@example.com", source: "user" });
    assert.equal(sim.truth(LIST).length, 1);
  } finally {
    await sim.close();
  }
});

Deno.test("Mailchimp refuses an API resubscribe of an unsubscribed member: Member In Compliance State", async () => {
  const { sim } = await setUp();
  try {
    const member = sim.upsertMember(LIST, { email: "out@example.com", status: "unsubscribed" });
    const patch = await call(sim, "PATCH", `/lists/${LIST}/members/${member.id}`, {
      status: "subscribed",
    });
    assert.equal(patch.status, 400);
    assert.equal(patch.json.title, "Member In Compliance State");
    assert.equal(sim.truth(LIST)[0]?.status, "unsubscribed");
  } finally {
    await sim.close();
  }
});

Deno.test("the simulator tells an API change only to webhooks whose sources.api is on", async () => {
  const { sim, client } = await setUp();
  const withApi = collector();
  const withoutApi = collector();
  try {
    sim.webhooks.sendTo(LIST, withApi.url);
    sim.webhooks.sendTo(LIST, withoutApi.url, { sources: { user: true, admin: true, api: false } });
    const member = sim.upsertMember(LIST, { email: "w@example.com", source: "user" });
    await client.unsubscribeMember(LIST, member.id);
    await sim.webhooks.settle();
    assert.deepEqual(withApi.bodies.map((b) => new URLSearchParams(b).get("type")), [
      "subscribe",
      "unsubscribe",
    ]);
    assert.deepEqual(withoutApi.bodies.map((b) => new URLSearchParams(b).get("type")), [
      "subscribe",
    ]);
  } finally {
    await sim.close();
    await withApi.close();
    await withoutApi.close();
  }
});
