/**
 * The Ometria client's consent and erasure calls against the simulator over real HTTP:
 * `GET /v2/unsubscribes` (its documented shape, the range kept on our side, opt-outs pushed
 * through the API never listed) and `/v2/data-deletion-requests` (either answer shape, 6
 * requests a minute, completion after a delay).
 */
import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { RateLimiter } from "../../lib/http/rate_limiter.ts";
import { OmetriaError } from "../../lib/ometria/client.ts";
import { ometriaClientFor } from "../_helpers/ometria_client.ts";
import { OmetriaSimulator, type OmetriaSimulatorOptions } from "../../lib/sim/ometria_sim.ts";

const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);

async function setUp(options: OmetriaSimulatorOptions = {}) {
  const clock = new FakeClock(T0, { autoAdvance: true });
  const sim = await OmetriaSimulator.start({ clock, maxRequestsPerSecond: 0, ...options });
  const client = ometriaClientFor(sim, clock, { retry: { minDelayMs: 1, maxDelayMs: 2 } });
  return { clock, sim, client };
}

Deno.test("unsubscribes() reads one type's events of a range; pushed opt-outs are not listed", async () => {
  const { clock, sim, client } = await setUp();
  try {
    sim.privacy.unsubscribe("Ada@Example.com", { atMs: T0 - 60_000 });
    sim.privacy.unsubscribe("bob@example.com", { type: "link_unsubscribe", atMs: T0 - 30_000 });
    sim.privacy.unsubscribe("old@example.com", { atMs: T0 - 7_200_000 });
    // An opt-out made through the API is not an event of the listing.
    await client.push([{
      "@type": "contact",
      "@collection": "mailchimp-x",
      id: "c1",
      email: "carol@example.com",
      firstname: "",
      lastname: "",
      marketing_optin: "EXPLICITLY_OPTEDOUT",
    }]);
    const range = { sinceMs: T0 - 3_600_000, beforeMs: clock.now() };
    const centre = await client.unsubscribes({ ...range, type: "preferences_centre" });
    assert.deepEqual(centre.map((u) => [u.email, u.type, u.atMs]), [
      ["ada@example.com", "preferences_centre", T0 - 60_000],
    ]);
    assert.ok(centre[0]?.profileId);
    const links = await client.unsubscribes({ ...range, type: "link_unsubscribe" });
    assert.deepEqual(links.map((u) => u.email), ["bob@example.com"]);
    assert.equal(sim.privacy.stats.unsubscribesRequests, 2);
    // Ometria's own rule: the address opted out in Ometria stays out.
    assert.equal(sim.privacy.subscription("ada@example.com"), "EXPLICITLY_OPTEDOUT");
  } finally {
    await sim.close();
  }
});

Deno.test("unsubscribes() reads Ometria's times, keeps the range on our side, and a listing's contact when named", async () => {
  const seen: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
    seen.push(new URL(req.url).search);
    return Response.json({
      unsubscribes: [
        {
          email_address: "a@x.com",
          profile_id: "p",
          reason: null,
          timestamp: "2026-11-01 11:59:00+00",
          type: "app",
        },
        { email_address: "b@x.com", timestamp: "2026-11-01T12:30:00Z", type: "app" },
        {
          email_address: "c@x.com",
          timestamp: "someday",
          type: "app",
          collection: "mailchimp-l",
          contact_id: "h",
        },
      ],
    });
  });
  try {
    const clock = new FakeClock(T0);
    const client = ometriaClientFor(
      { url: `http://127.0.0.1:${server.addr.port}`, apiKey: "k" },
      clock,
    );
    const got = await client.unsubscribes({ sinceMs: T0 - 600_000, beforeMs: T0, type: "app" });
    assert.deepEqual(got.map((u) => [u.email, u.atMs, u.collection, u.contactId]), [
      ["a@x.com", T0 - 60_000, undefined, undefined],
      // Unreadable: kept, since it was served for this range.
      ["c@x.com", undefined, "mailchimp-l", "h"],
    ]);
    assert.equal(seen[0], "?since=2026-11-01T11%3A50%3A00&before=2026-11-01T12%3A00%3A00&type=app");
  } finally {
    await server.shutdown();
  }
});

Deno.test("fileDataDeletionRequest() files one request, finds its id in either answer shape, and dataDeletionRequests() sees it complete", async (t) => {
  for (const deletionAnswer of ["object", "status"] as const) {
    await t.step(deletionAnswer, async () => {
      const { clock, sim, client } = await setUp({
        privacy: { deletionAnswer, deletionDelayMs: 3_600_000 },
      });
      try {
        await client.push([{
          "@type": "contact",
          "@collection": "mailchimp-x",
          id: "c1",
          email: "Erase.Me@example.com",
          firstname: "Erin",
          lastname: "Case",
          marketing_optin: "EXPLICITLY_OPTEDIN",
        }]);
        const filed = await client.fileDataDeletionRequest("erase.me@example.com", {
          comment: "test",
        });
        const [request] = sim.privacy.deletionRequests();
        assert.equal(filed.id, request?.id);
        assert.equal(sim.privacy.deletionRequests().length, 1, "filed once");
        let listed = await client.dataDeletionRequests();
        assert.equal(listed[0]?.completedAtMs, undefined, "open");
        assert.match(listed[0]?.hashedEmails[0] ?? "", /^[0-9a-f]{32}@anonymous\.ometria$/);
        await clock.tick(3_600_000);
        listed = await client.dataDeletionRequests();
        assert.equal(listed[0]?.completedAtMs, Math.floor(clock.now() / 1000) * 1000);
        const contact = sim.contacts("mailchimp-x").get("c1");
        assert.match(String(contact?.email), /@anonymous\.ometria$/);
        assert.equal(contact?.firstname, "");
      } finally {
        await sim.close();
      }
    });
  }
});

Deno.test("the GDPR API is paced at 6 requests a minute, and a refused filing is not sent again", async () => {
  const { clock, sim, client } = await setUp();
  try {
    const started = clock.now();
    for (let i = 0; i < 8; i++) await client.dataDeletionRequests();
    assert.equal(sim.privacy.stats.deletion429, 0, "never over Ometria's limit");
    assert.ok(clock.now() - started >= 60_000, "the seventh waited for the next minute");
    sim.faults.queue(500);
    const error = await client.fileDataDeletionRequest("x@example.com").catch((e) => e);
    assert.ok(error instanceof OmetriaError);
    assert.equal(error.status, 500);
    assert.equal(sim.privacy.deletionRequests().length, 0);
    assert.equal(sim.privacy.stats.deletionRequests, 8, "the 500 was not retried");
  } finally {
    await sim.close();
  }
});

Deno.test("RateLimiter counts over a window longer than a second", async () => {
  const clock = new FakeClock(T0, { autoAdvance: true });
  const limiter = new RateLimiter({ perSecond: 6, windowMs: 60_000, clock });
  const starts: number[] = [];
  for (let i = 0; i < 13; i++) {
    await limiter.acquire();
    starts.push(clock.now() - T0);
  }
  for (let i = 6; i < starts.length; i++) {
    assert.ok(starts[i]! - starts[i - 6]! >= 60_000, `start ${i} within a minute of ${i - 6}`);
  }
  assert.throws(() => new RateLimiter({ perSecond: 6, windowMs: 10, clock }), RangeError);
});
