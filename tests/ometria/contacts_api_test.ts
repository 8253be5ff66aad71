/**
 * The Ometria simulator's Contact API and the client's contact reads, over real HTTP: the
 * listing of one collection under each paging and shape the docs leave open, one contact by
 * id (404 when absent), contacts changed behind the product's back, and the Data API's own
 * 4 requests/s (429 beyond it) paced by the client's Data-API limiter, never the push one.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { RateLimiter } from "../../lib/http/rate_limiter.ts";
import { ometriaClientFor } from "../_helpers/ometria_client.ts";
import { OmetriaSimulator } from "../../lib/sim/ometria_sim.ts";

const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);
const COLLECTION = "mailchimp-list1";

function contact(i: number, collection = COLLECTION) {
  return {
    "@type": "contact" as const,
    "@collection": collection,
    "@merge": true,
    id: `id${String(i).padStart(4, "0")}`,
    email: `m${i}@example.com`,
    firstname: `F${i}`,
    lastname: `L${i}`,
    marketing_optin: "EXPLICITLY_OPTEDIN" as const,
  };
}

async function setUp(count: number, other = 0) {
  const clock = new FakeClock(T0, { autoAdvance: true });
  const sim = await OmetriaSimulator.start({ clock, maxRequestsPerSecond: 0 });
  const client = ometriaClientFor(sim, clock, { retry: { minDelayMs: 1, maxDelayMs: 2 } });
  const records = [
    ...Array.from({ length: count }, (_, i) => contact(i)),
    ...Array.from({ length: other }, (_, i) => contact(i, "mailchimp-other")),
  ];
  for (let i = 0; i < records.length; i += 100) await client.push(records.slice(i, i + 100));
  return { clock, sim, client };
}

Deno.test("contactsOf() reads every contact of one collection whatever the paging and shape", async (t) => {
  const { sim, client } = await setUp(250, 30);
  try {
    const cases = [
      { name: "bare array, pages of 100", options: {} },
      { name: "wrapped {data, total}", options: { listShape: "wrapped" as const } },
      { name: "a silent cap of 40 below the limit asked", options: { maxPageSize: 40 } },
      { name: "ordered by id", options: { order: "id" as const } },
      { name: "only Fivetran's columns", options: { fields: "fivetran" as const } },
    ];
    for (const c of cases) {
      await t.step(c.name, async () => {
        sim.contactApi.setOptions({
          listShape: "array",
          maxPageSize: 100,
          order: "stored",
          fields: "stored",
          ...c.options,
        });
        const ids = new Set<string>();
        for await (const page of client.contactsOf(COLLECTION)) {
          for (const x of page) ids.add(x.id);
        }
        assert.equal(ids.size, 250);
        assert.ok([...ids].every((id) => sim.contacts(COLLECTION).has(id)));
      });
    }
    // 250 contacts in pages of 100: 100, 100, 50 (shorter than the longest: the end).
    sim.contactApi.setOptions({ maxPageSize: 100, fields: "stored" });
    const before = sim.contactApi.requests;
    let pages = 0;
    for await (const _ of client.contactsOf(COLLECTION)) pages++;
    assert.equal(pages, 3);
    assert.equal(sim.contactApi.requests - before, 3);
  } finally {
    await sim.close();
  }
});

Deno.test("contact() reads one contact as stored, without directives; 404 is undefined", async () => {
  const { sim, client } = await setUp(3);
  try {
    const one = await client.contact(COLLECTION, "id0001");
    assert.equal(one?.email, "m1@example.com");
    assert.equal(one?.firstname, "F1");
    assert.equal(one?.collection, COLLECTION);
    assert.equal("@merge" in (one ?? {}), false);
    assert.equal(await client.contact(COLLECTION, "nobody"), undefined);
    assert.equal(await client.contact("mailchimp-other", "id0001"), undefined);
    sim.contactApi.setOptions({ fields: "fivetran" });
    const sparse = await client.contact(COLLECTION, "id0001");
    assert.equal(sparse?.email, "m1@example.com");
    assert.equal(sparse?.firstname, undefined);
  } finally {
    await sim.close();
  }
});

Deno.test("tamper() and plant() change what Ometria holds behind the product's back", async () => {
  const { sim, client } = await setUp(3);
  try {
    assert.equal(sim.contactApi.tamper(COLLECTION, "id0000", { firstname: "Changed" }), true);
    assert.equal(sim.contactApi.tamper(COLLECTION, "id0001", { lastname: null }), true);
    assert.equal(sim.contactApi.tamper(COLLECTION, "id0002", undefined), true);
    assert.equal(sim.contactApi.tamper(COLLECTION, "nobody", { firstname: "x" }), false);
    sim.contactApi.plant(COLLECTION, { id: "extra1", email: "x@example.com" });
    assert.equal((await client.contact(COLLECTION, "id0000"))?.firstname, "Changed");
    assert.equal("lastname" in ((await client.contact(COLLECTION, "id0001")) ?? {}), false);
    assert.equal(await client.contact(COLLECTION, "id0002"), undefined);
    const ids = [];
    for await (const page of client.contactsOf(COLLECTION)) ids.push(...page.map((c) => c.id));
    assert.deepEqual(ids.sort(), ["extra1", "id0000", "id0001"]);
  } finally {
    await sim.close();
  }
});

Deno.test("the Contact API answers 429 past 4 requests in a second, and asks for the key", async () => {
  const clock = new FakeClock(T0);
  const sim = await OmetriaSimulator.start({ clock });
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await fetch(`${sim.url}/v2/contacts?collection=${COLLECTION}`, {
        headers: { "X-Ometria-Auth": sim.apiKey },
      });
      await r.body?.cancel();
      statuses.push(r.status);
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429]);
    // Pushes have a limit of their own: the Data API's second does not spend it.
    const push = await fetch(`${sim.url}/v2/push`, {
      method: "POST",
      headers: { "X-Ometria-Auth": sim.apiKey, "Content-Type": "application/json" },
      body: JSON.stringify([contact(1)]),
    });
    await push.body?.cancel();
    assert.equal(push.status, 202);
    const denied = await fetch(`${sim.url}/v2/contacts/${COLLECTION}/id0001`, {
      headers: { "X-Ometria-Auth": "wrong" },
    });
    await denied.body?.cancel();
    assert.equal(denied.status, 403);
  } finally {
    await sim.close();
  }
});

Deno.test("contact reads go through the Data-API limiter (4/s) and never take the push limiter's turns", async () => {
  const clock = new FakeClock(T0, { autoAdvance: true });
  const sim = await OmetriaSimulator.start({ clock });
  const push = new RateLimiter({ perSecond: 8, clock });
  const data = new RateLimiter({ perSecond: 4, clock });
  const client = ometriaClientFor(sim, clock, { rateLimiter: push, dataApiRateLimiter: data });
  try {
    await client.push([contact(1)]);
    sim.resetStats();
    const started = clock.now();
    for (let i = 0; i < 12; i++) await client.contact(COLLECTION, "id0001");
    assert.equal(sim.stats.status429, 0);
    assert.ok(sim.stats.maxDataApiRequestsInOneSecond <= 4);
    // 12 reads at 4 a second: at least two seconds of waiting.
    assert.ok(clock.now() - started >= 2_000, `took ${clock.now() - started} ms`);
    // The push limiter was not spent: 8 pushes go out in the same second.
    const before = clock.now();
    for (let i = 0; i < 8; i++) await client.push([contact(i)]);
    assert.ok(clock.now() - before < 1_000);
  } finally {
    await sim.close();
  }
});

Deno.test("a 429 of the Contact API is retried and paces the Data-API limiter only", async () => {
  const clock = new FakeClock(T0, { autoAdvance: true });
  const sim = await OmetriaSimulator.start({ clock });
  const push = new RateLimiter({ perSecond: 8, clock });
  const data = new RateLimiter({ perSecond: 4, clock });
  const client = ometriaClientFor(sim, clock, {
    rateLimiter: push,
    dataApiRateLimiter: data,
    retry: { minDelayMs: 1, maxDelayMs: 2 },
  });
  try {
    await client.push([contact(1)]);
    sim.faults.queue(429, 503);
    const one = await client.contact(COLLECTION, "id0001");
    assert.equal(one?.id, "id0001");
    assert.equal(data.throttles, 1);
    assert.equal(push.throttles, 0);
  } finally {
    await sim.close();
  }
});
