import assert from "node:assert/strict";
import { InstantClock } from "../_helpers/instant_clock.ts";
import { systemClock } from "../../lib/clock/clock.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { RateLimiter } from "../../lib/http/rate_limiter.ts";
import { RetryError } from "../../lib/http/retry.ts";
import type { LegacyRecord, OmetriaContact } from "../../lib/mapping/contact.ts";
import { ApiError } from "../../lib/http/api_error.ts";
import {
  OmetriaClient,
  type OmetriaClientOptions,
  OmetriaError,
} from "../../lib/ometria/client.ts";
import { OmetriaSimulator, type OmetriaSimulatorOptions } from "../../lib/sim/ometria_sim.ts";

function contact(id: string, fields: Partial<OmetriaContact> = {}): OmetriaContact {
  return {
    "@type": "contact",
    "@collection": "mailchimp-list1",
    id,
    email: `${id}@example.com`,
    firstname: "Ada",
    lastname: "Lovelace",
    marketing_optin: "EXPLICITLY_OPTEDIN",
    ...fields,
  };
}

function legacy(id: string): LegacyRecord {
  return { id, firstname: "Ada", lastname: "", email: `${id}@example.com`, status: "cleaned" };
}

/** A simulator without its rate limit (tests of other things must not hit it by chance). */
function startSim(options: OmetriaSimulatorOptions = {}): Promise<OmetriaSimulator> {
  return OmetriaSimulator.start({ maxRequestsPerSecond: 0, ...options });
}

function client(
  sim: { url: string; apiKey: string },
  options: Partial<OmetriaClientOptions> = {},
): OmetriaClient {
  const clock = options.clock ?? systemClock;
  return new OmetriaClient({
    apiKey: sim.apiKey,
    baseUrl: sim.url,
    endpoint: "push",
    clock,
    rateLimiter: new RateLimiter({ perSecond: 1000, clock }),
    // Real clock, tiny backoff: retries cost a few ms.
    retry: { minDelayMs: 1, maxDelayMs: 2 },
    ...options,
  });
}

/** A fixture server answering every request with `answer`, recording the bodies it got. */
function fixture(answer: () => Response) {
  const bodies: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    bodies.push(await req.text());
    return answer();
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    apiKey: "k",
    bodies,
    close: () => server.shutdown(),
  };
}

Deno.test("OmetriaClient pushes contacts that the simulator stores", async () => {
  const sim = await startSim();
  try {
    const records = Array.from({ length: 100 }, (_, i) => contact(`m${i}`));
    const result = await client(sim).push(records, { label: "list1 page 1" });
    assert.equal(result.accepted, 100);
    assert.equal(result.rejected, 0);
    assert.deepEqual(result.tooLarge, []);
    assert.equal(result.errors, undefined);
    assert.equal(typeof result.requestId, "string");
    assert.equal(typeof result.queueRemaining, "number");
    const stored = sim.contacts("mailchimp-list1");
    assert.equal(stored.size, 100);
    assert.equal(stored.get("m7")?.email, "m7@example.com");
    assert.equal(sim.stats.maxBatch, 100);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient refuses more than maxBatchSize records with RangeError", async () => {
  const sim = await startSim();
  try {
    const records = Array.from({ length: 101 }, (_, i) => contact(`m${i}`));
    await assert.rejects(client(sim).push(records), RangeError);
    await assert.rejects(client(sim, { maxBatchSize: 10 }).push(records.slice(0, 11)), RangeError);
    assert.equal(sim.stats.requests, 0);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient writes the legacy /record format with a raw Authorization key", async () => {
  const sim = await startSim();
  try {
    const result = await client(sim, { endpoint: "record" }).push([legacy("a"), legacy("b")]);
    assert.equal(result.accepted, 2);
    assert.equal(result.rejected, 0);
    assert.equal(sim.stats.recordRequests, 1);
    assert.deepEqual(sim.legacyRecords().get("b"), legacy("b"));
    assert.equal(sim.contacts().size, 0);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient reports rejected records with messages from _errors, in either shape", async (t) => {
  const reasons = {
    // The documented shape ties an error to no record: it is quoted as such.
    documented: "rejected by Ometria; its latest push errors, not tied to a record: " +
      "email is not valid",
    rich: "rejected by Ometria: email is not valid",
  };
  for (const [errorsShape, reason] of Object.entries(reasons)) {
    await t.step(errorsShape, async () => {
      const sim = await startSim({
        errorsShape: errorsShape as "documented" | "rich",
        reject: (record) =>
          String(record.email).startsWith("bad") ? "email is not valid" : undefined,
      });
      try {
        const result = await client(sim).push([
          contact("ok1"),
          contact("bad1", { email: "bad1" }),
          contact("ok2"),
        ], { label: "list1 page 2" });
        assert.equal(result.accepted, 2);
        assert.equal(result.rejected, 1);
        assert.deepEqual(result.rejectedRecords, [{ id: "bad1", reason }]);
        assert.deepEqual(result.errors, [`bad1: ${reason}`]);
        assert.equal(sim.contacts().has("bad1"), false);
      } finally {
        await sim.close();
      }
    });
  }
});

Deno.test("OmetriaClient does not send a record over maxRecordBytes", async () => {
  const sim = await startSim();
  try {
    const huge = contact("huge", { firstname: "x".repeat(70_000) });
    const result = await client(sim).push([contact("a"), huge, contact("b")]);
    assert.deepEqual(result.tooLarge, ["huge"]);
    assert.equal(result.accepted, 2);
    assert.equal(result.rejected, 1);
    assert.equal(sim.stats.recordsReceived, 2, "the large record never left");
    assert.deepEqual([...sim.contacts().keys()].sort(), ["a", "b"]);

    const only = await client(sim).push([huge]);
    assert.deepEqual(only, {
      accepted: 0,
      skipped: 0,
      rejected: 1,
      tooLarge: ["huge"],
      rejectedRecords: [{
        id: "huge",
        reason: "record is 70166 bytes, over Ometria's 60 KB limit",
      }],
      extraRequests: 0,
    });
    assert.equal(sim.stats.pushRequests, 1, "nothing to send, no request");
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient retries a 429 after its Retry-After and pauses the limiter", async () => {
  const sim = await startSim({ faults: { retryAfterSeconds: 2 } });
  try {
    sim.faults.queue(429, 503);
    const clock = new InstantClock(600_000);
    const rateLimiter = new RateLimiter({ perSecond: 1000, clock });
    const delays: number[] = [];
    const result = await client(sim, {
      clock,
      rateLimiter,
      timeoutMs: 600_000,
      // No jitter: a 429's wait is its Retry-After alone (jitter comes on top, retry_test).
      retry: { random: () => 0, onFailedAttempt: ({ delayMs }) => delays.push(delayMs) },
    }).push([contact("a")]);
    assert.equal(result.accepted, 1);
    assert.deepEqual(delays, [2000, 2000]);
    assert.equal(sim.stats.requests, 3);
    assert.equal(sim.contacts().size, 1);
    // The 429 (at the clock's start) paused every user of the limiter for 2 s.
    assert.equal(rateLimiter.pausedUntil, Date.UTC(2026, 0, 1) + 2000);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient feeds a rate-limit 429 back into the pace without stalling others", async () => {
  const clock = new FakeClock();
  const sim = await startSim({ clock, faults: { retryAfterSeconds: 1 } });
  try {
    sim.faults.queue(429);
    const rateLimiter = new RateLimiter({ perSecond: 8, clock });
    const ometria = client(sim, { clock, rateLimiter });
    const first = ometria.push([contact("a")]);
    // The 429 comes back at once; its own retry waits the Retry-After on the fake clock.
    while (rateLimiter.throttles === 0) await new Promise((r) => setTimeout(r, 1));
    assert.equal(rateLimiter.pausedUntil, Number.NEGATIVE_INFINITY, "nobody else is stalled");
    assert.ok(rateLimiter.windowMs > 1010, "but the pace is slower for a while");
    // Another batch goes out two slots later, long before the first one's retry.
    const second = ometria.push([contact("b")]);
    while (sim.stats.requests < 2) {
      await clock.tick(10);
      await new Promise((r) => setTimeout(r, 1));
    }
    assert.ok(clock.now() - Date.UTC(2026, 0, 1) < 1000);
    assert.equal((await second).accepted, 1);
    while (sim.stats.requests < 3) {
      await clock.tick(100);
      await new Promise((r) => setTimeout(r, 1));
    }
    assert.equal((await first).accepted, 1);
    assert.equal(sim.stats.status429, 1);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient retries 5xx and gives up with RetryError after maxAttempts", async () => {
  const sim = await startSim();
  try {
    sim.faults.queue(500, 502, 504, 500);
    const error = await client(sim, { retry: { maxAttempts: 3, minDelayMs: 1, maxDelayMs: 2 } })
      .push([contact("a")], { label: "list1 page 9" })
      .then(() => assert.fail("should have given up"), (e: unknown) => e);
    assert.ok(error instanceof RetryError);
    assert.equal(error.attempts, 3);
    assert.ok(error.cause instanceof OmetriaError);
    assert.equal(error.cause.status, 504);
    assert.match(error.message, /Ometria POST \/v2\/push for batch "list1 page 9" failed: 504/);
    assert.equal(sim.stats.requests, 3);
    assert.equal(sim.contacts().size, 0);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient retries a dropped response and the data is stored once", async () => {
  const sim = await startSim();
  try {
    sim.faults.queue("drop");
    const records = [contact("a"), contact("b"), contact("c")];
    const result = await client(sim).push(records);
    assert.equal(result.accepted, 3);
    assert.equal(sim.stats.pushRequests, 2, "the first answer was lost, the push resent");
    assert.equal(sim.stats.recordsReceived, 6);
    assert.equal(sim.contacts().size, 3, "an upsert: resending stores each record once");
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient explains a wrong API key, 403 as documented or 401, without retrying", async (t) => {
  for (const badKeyStatus of [403, 401] as const) {
    await t.step(String(badKeyStatus), async () => {
      const sim = await startSim({ badKeyStatus });
      try {
        const error = await client({ url: sim.url, apiKey: "wrong" }).push([contact("a")]).then(
          () => assert.fail("should have thrown"),
          (e: unknown) => e,
        );
        assert.ok(error instanceof OmetriaError);
        assert.equal(error.status, badKeyStatus);
        assert.equal(error.retryable, false);
        assert.equal(error.endpoint, "POST /v2/push");
        assert.match(
          error.message,
          new RegExp(`Ometria rejected the API key \\(${badKeyStatus}\\): check OMETRIA_API_KEY`),
        );
        assert.doesNotMatch(error.message, /wrong/, "the key never appears");
        assert.equal(sim.stats.requests, 1);
      } finally {
        await sim.close();
      }
    });
  }
});

Deno.test("OmetriaClient keeps every clock second within the rate limit with 50 concurrent batches", async () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 0, 0, 0, 400));
  const sim = await OmetriaSimulator.start({ clock, maxRequestsPerSecond: 8 });
  let inFlight = 0;
  const counting: typeof fetch = (input, init) => {
    inFlight++;
    return fetch(input, init).finally(() => inFlight--);
  };
  try {
    const ometria = client(sim, {
      clock,
      rateLimiter: new RateLimiter({ perSecond: 8, clock }),
      fetch: counting,
    });
    const records = Array.from({ length: 500 }, (_, i) => contact(`m${i}`));
    let done = 0;
    const all = Array.from(
      { length: 50 },
      (_, i) => ometria.push(records.slice(i * 10, i * 10 + 10)).finally(() => done++),
    );
    // Time only moves when no request is on the wire, and in small steps (the limiter's own
    // margin), so the simulator sees each request in the clock second the limiter let it
    // start: a whole second at once would let a request started at its end arrive in the next.
    while (done < all.length) {
      for (let quiet = 0; quiet < 3;) {
        await new Promise((r) => setTimeout(r, 1));
        quiet = inFlight > 0 ? 0 : quiet + 1;
      }
      if (done < all.length) await clock.tick(10);
    }
    const results = await Promise.all(all);
    assert.equal(results.reduce((n, r) => n + r.accepted, 0), 500);
    assert.equal(sim.stats.status429, 0);
    assert.equal(sim.stats.pushRequests, 50);
    assert.equal(sim.stats.maxRequestsInOneSecond, 8);
    assert.equal(sim.contacts().size, 500);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient pauses the rate limiter when the ingest queue runs low", async () => {
  const clock = new FakeClock();
  const sim = await startSim({ clock, queueLimit: 100, ingestPerSecond: 0 });
  try {
    const rateLimiter = new RateLimiter({ perSecond: 100, clock });
    const result = await client(sim, { clock, rateLimiter }).push(
      Array.from({ length: 95 }, (_, i) => contact(`m${i}`)),
    );
    assert.equal(result.queueRemaining, 5);
    // 5 left of a 10-record threshold: half way, so a 3 s pause.
    assert.equal(rateLimiter.pausedUntil, clock.now() + 3000);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient respects X-QueueSize-Remaining without X-QueueSize-Limit", async () => {
  const clock = new FakeClock();
  // Ometria's documented 50k queue is the scale: 1,000 left is 20% of the 10% threshold.
  const server = fixture(() =>
    Response.json({ status: "OK", accepted: 1, rejected: 0 }, {
      headers: { "X-QueueSize-Remaining": "1000" },
    })
  );
  try {
    const rateLimiter = new RateLimiter({ perSecond: 100, clock });
    const result = await client(server, { clock, rateLimiter }).push([contact("a")]);
    assert.equal(result.queueRemaining, 1000);
    assert.equal(rateLimiter.pausedUntil, clock.now() + 4200);
  } finally {
    await server.close();
  }
});

Deno.test("OmetriaClient turns a malformed answer into a clear error, retrying one not JSON", async (t) => {
  let requests = 0;
  let body = "";
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    requests++;
    await req.body?.cancel();
    return new Response(body, { status: 202, headers: { "X-Request-Id": "req-9" } });
  });
  try {
    const fixture = { url: `http://127.0.0.1:${server.addr.port}`, apiKey: "k" };
    for (
      const [name, text, expected, attempts] of [
        // A push is an idempotent upsert: sending it again after a garbled answer is safe.
        ["not JSON", "<html>Bad gateway</html>", /the body is not JSON but an HTML page/, 8],
        ["wrong shape", '{"status":"OK","accepted":"1"}', /accepted: Invalid input/, 1],
      ] as const
    ) {
      await t.step(name, async () => {
        body = text;
        requests = 0;
        const thrown = await client(fixture).push([contact("a")], { label: "p1" }).then(
          () => assert.fail("should have thrown"),
          (e: unknown) => e,
        );
        const error = attempts > 1 && thrown instanceof RetryError ? thrown.cause : thrown;
        assert.ok(error instanceof OmetriaError, String(thrown));
        assert.equal(error.retryable, attempts > 1);
        assert.equal(error.status, 202);
        assert.equal(error.requestId, "req-9");
        assert.match(
          error.message,
          /Ometria POST \/v2\/push for batch "p1" returned a malformed response \(202\)/,
        );
        assert.match(error.message, expected);
        assert.doesNotMatch(error.message, /Bad gateway/);
        assert.equal(requests, attempts);
      });
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("OmetriaClient does not count a push whose accepted + rejected misses records", async () => {
  const server = fixture(() =>
    Response.json({ status: "OK", request_id: "req-3", accepted: 0, rejected: 0 }, {
      status: 202,
    })
  );
  try {
    const error = await client(server).push([contact("a"), contact("b")], { label: "p7" }).then(
      () => assert.fail("should have thrown"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof OmetriaError);
    assert.ok(error instanceof ApiError);
    assert.equal(error.name, "OmetriaError");
    assert.equal(error.retryable, false);
    assert.equal(error.status, 202);
    assert.equal(error.requestId, "req-3");
    assert.match(
      error.message,
      /^Ometria POST \/v2\/push for batch "p7" acknowledged 0 of 2 records \(accepted 0, rejected 0\)/,
    );
    assert.equal(server.bodies.length, 1, "not retried");
  } finally {
    await server.close();
  }
});

Deno.test("OmetriaClient sends the batch as one JSON array of the records", async () => {
  const server = fixture(() => Response.json({ status: "OK", accepted: 3, rejected: 0 }));
  try {
    const records = [contact("a"), contact("é", { firstname: "Zoë 🦜" }), contact("c")];
    const result = await client(server).push(records);
    assert.equal(result.accepted, 3);
    assert.deepEqual(server.bodies, [JSON.stringify(records)]);
  } finally {
    await server.close();
  }
});

Deno.test("OmetriaClient sends each batch's JSON in UTF-8 whatever characters its records hold", async () => {
  // Records are encoded one by one into the body: plain ASCII, Latin-1 (one byte a character
  // in the string, two in UTF-8), astral characters, escapes, alone or mixed in one batch.
  const names = ["Ada", "José Weiß", "李 🚀", 'a "b" \\ c\n', "\ud800", "", "é".repeat(300)];
  const batches = [
    [contact("a")],
    names.map((firstname, i) => contact(`m${i}`, { firstname })),
    names.map((lastname, i) => contact(`n${i}`, { lastname, email: `${lastname}@x` })).reverse(),
  ];
  for (const records of batches) {
    const server = fixture(() =>
      Response.json({ status: "OK", accepted: records.length, rejected: 0 })
    );
    try {
      await client(server).push(records);
      assert.deepEqual(server.bodies, [JSON.stringify(records)]);
    } finally {
      await server.close();
    }
  }
});

Deno.test("OmetriaClient measures maxRecordBytes in UTF-8 bytes, not characters", async () => {
  const server = fixture(() => Response.json({ status: "OK", accepted: 1, rejected: 0 }));
  try {
    const base = JSON.stringify(contact("a", { firstname: "" })).length;
    // 100 two-byte characters: 100 more characters but 200 more bytes.
    const record = contact("a", { firstname: "é".repeat(100) });
    const bytes = base + 200;
    const fits = await client(server, { maxRecordBytes: bytes }).push([record]);
    assert.deepEqual(fits.tooLarge, []);
    const over = await client(server, { maxRecordBytes: bytes - 1 }).push([record]);
    assert.deepEqual(over.tooLarge, ["a"]);
    assert.equal(server.bodies.length, 1, "the too-large record was not sent");
  } finally {
    await server.close();
  }
});

Deno.test("OmetriaClient isolates exactly the records Ometria rejected, with their reasons", async () => {
  const bad = new Set(["m7", "m42", "m43"]);
  const sim = await startSim({
    errorsShape: "rich",
    reject: (record) => bad.has(String(record.id)) ? "email is not valid" : undefined,
  });
  try {
    const records = Array.from({ length: 100 }, (_, i) => contact(`m${i}`));
    const result = await client(sim).push(records, { label: "list1 page 4" });
    assert.equal(result.accepted, 97);
    assert.equal(result.rejected, 3);
    assert.equal(result.accepted + result.rejected, records.length);
    assert.deepEqual(
      result.rejectedRecords.map((r) => r.id).sort(),
      [...bad].sort(),
    );
    for (const r of result.rejectedRecords) {
      assert.equal(r.reason, "rejected by Ometria: email is not valid");
    }
    assert.deepEqual(result.tooLarge, []);
    // Bounded: each bisection level costs at most two re-pushes per rejected record, plus
    // one _errors read per isolated group.
    assert.equal(result.extraRequests, sim.stats.requests - 1);
    assert.ok(result.extraRequests <= 3 * 2 * 7 + 3, `${result.extraRequests} extra requests`);
    assert.equal(sim.contacts().size, 97);
    assert.equal(sim.contacts().has("m42"), false);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient does not bisect a request whose records were all rejected", async () => {
  const sim = await startSim({ errorsShape: "rich", reject: () => "email is not valid" });
  try {
    const result = await client(sim).push([contact("a"), contact("b", { email: 7 as never })]);
    assert.equal(result.accepted, 0);
    assert.equal(result.rejected, 2);
    assert.deepEqual(result.rejectedRecords, [
      { id: "a", reason: "rejected by Ometria: email is not valid" },
      { id: "b", reason: "rejected by Ometria: email: not a valid value" },
    ]);
    assert.equal(result.extraRequests, 1, "one _errors read, no re-push");
    assert.equal(sim.stats.pushRequests, 1);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient gives a generic reason when _errors cannot be read", async () => {
  let sim: OmetriaSimulator | undefined = undefined;
  sim = await startSim({
    reject: () => {
      sim!.faults.queue(500); // the next request, the _errors read, fails
      return "email is not valid";
    },
  });
  try {
    const result = await client(sim).push([contact("a")]);
    assert.deepEqual(result, {
      accepted: 0,
      skipped: 0,
      rejected: 1,
      tooLarge: [],
      rejectedRecords: [{ id: "a", reason: "rejected by Ometria (no reason given)" }],
      extraRequests: 1,
      errors: ["a: rejected by Ometria (no reason given)"],
      requestId: result.requestId,
      queueRemaining: result.queueRemaining,
    });
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient halves a batch answered 413 and keeps the smaller size", async () => {
  const sim = await startSim({ maxBatchRecords: 30 });
  try {
    const ometria = client(sim);
    assert.equal(ometria.maxBatchSize, 100);
    const records = Array.from({ length: 100 }, (_, i) => contact(`m${i}`));
    const first = await ometria.push(records);
    assert.equal(first.accepted, 100);
    assert.equal(first.rejected, 0);
    assert.equal(ometria.maxBatchSize, 25, "100 → 50 → 25, the first size taken");
    // 100 (413), 50 (413), 25, 25, then the second half cut at the size learned: 25, 25.
    assert.equal(sim.stats.pushRequests, 6);
    assert.equal(sim.stats.status413, 2);
    assert.equal(first.extraRequests, 5);
    assert.equal(sim.contacts().size, 100);

    sim.resetStats();
    const second = await ometria.push(records.slice(0, 60));
    assert.equal(second.accepted, 60);
    assert.equal(second.extraRequests, 0);
    assert.equal(sim.stats.pushRequests, 3, "25 + 25 + 10, no 413 any more");
    assert.equal(sim.stats.maxBatch, 25);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient learns a 413 once when pushes run concurrently", async () => {
  const sim = await startSim({ maxBatchRecords: 30 });
  try {
    const ometria = client(sim);
    const batches = Array.from(
      { length: 8 },
      (_, b) => Array.from({ length: 100 }, (_, i) => contact(`b${b}m${i}`)),
    );
    const results = await Promise.all(batches.map((batch) => ometria.push(batch)));
    assert.deepEqual(results.map((r) => r.accepted), Array(8).fill(100));
    // The 8 sent before any answer meet it; after it, one request at a time finds 25.
    assert.equal(sim.stats.status413, 9, "8 at 100, then 50 once, not once per push");
    assert.equal(sim.contacts().size, 800);
    assert.equal(ometria.maxBatchSize, 25);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient rejects a single record answered 413 instead of throwing", async () => {
  const sim = await startSim({ maxBatchRecords: 0 });
  try {
    const ometria = client(sim);
    const result = await ometria.push([contact("a"), contact("b"), contact("c")]);
    assert.equal(result.accepted, 0);
    assert.equal(result.rejected, 3);
    assert.deepEqual(result.rejectedRecords.map((r) => r.id), ["a", "b", "c"]);
    assert.match(result.rejectedRecords[0]!.reason, /413/);
    assert.equal(ometria.maxBatchSize, 1, "never below 1");
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient halves legacy /record batches answered 413 too", async () => {
  const sim = await startSim({ maxBatchRecords: 10 });
  try {
    const ometria = client(sim, { endpoint: "record" });
    const records = Array.from({ length: 40 }, (_, i) => legacy(`r${i}`));
    const result = await ometria.push(records);
    assert.equal(result.accepted, 40);
    assert.equal(ometria.maxBatchSize, 10);
    assert.equal(sim.legacyRecords().size, 40);
  } finally {
    await sim.close();
  }
});

Deno.test("OmetriaClient takes a configured maxBatchSize from 1 to 100", async () => {
  const sim = await startSim();
  try {
    for (const bad of [0, 101, 2.5, Number.NaN]) {
      assert.throws(() => client(sim, { maxBatchSize: bad }), RangeError, `maxBatchSize ${bad}`);
    }
    const ometria = client(sim, { maxBatchSize: 20 });
    assert.equal(ometria.maxBatchSize, 20);
    const result = await ometria.push(Array.from({ length: 20 }, (_, i) => contact(`m${i}`)));
    assert.equal(result.accepted, 20);
    assert.equal(sim.stats.maxBatch, 20);
  } finally {
    await sim.close();
  }
});
