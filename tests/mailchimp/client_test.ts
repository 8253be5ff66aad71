import assert from "node:assert/strict";
import { InstantClock } from "../_helpers/instant_clock.ts";
import { systemClock } from "../../lib/clock/clock.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { ConcurrencyLimiter } from "../../lib/http/concurrency_limiter.ts";
import { RetryError } from "../../lib/http/retry.ts";
import {
  mailchimpBaseUrl,
  MailchimpClient,
  type MailchimpClientOptions,
  type MailchimpRequestEvent,
} from "../../lib/mailchimp/client.ts";
import { MailchimpError } from "../../lib/mailchimp/errors.ts";
import { MailchimpSimulator, type MailchimpSimulatorOptions } from "../../lib/sim/mailchimp_sim.ts";

/** What the client put on the wire, seen through the fetch it was handed. */
interface Sent {
  url: string;
  authorization: string | null;
}

/** A fetch that records each request before passing it to the real fetch. */
function recordingFetch(sent: Sent[]): typeof fetch {
  return (input, init) => {
    const request = new Request(input, init);
    sent.push({ url: request.url, authorization: request.headers.get("authorization") });
    return fetch(request);
  };
}

async function startSim(options: MailchimpSimulatorOptions = {}): Promise<MailchimpSimulator> {
  const sim = await MailchimpSimulator.start(options);
  sim.addList("list1", { members: 50, seed: 7 });
  return sim;
}

function client(
  sim: { url: string; apiKey: string },
  options: Partial<MailchimpClientOptions> = {},
): MailchimpClient {
  return new MailchimpClient({
    apiKey: sim.apiKey,
    baseUrl: sim.url,
    clock: systemClock,
    limiter: new ConcurrencyLimiter(10),
    // Real clock, tiny backoff: retries cost a few ms.
    retry: { minDelayMs: 1, maxDelayMs: 2 },
    ...options,
  });
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return await promise.then(() => assert.fail("should have failed"), (e: unknown) => e);
}

/** A fixture server answering every request with `answer()`, counting requests. */
function fixture(answer: (req: Request, n: number) => Response | Promise<Response>) {
  let requests = 0;
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    (req) => answer(req, requests++),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/3.0`,
    apiKey: "fixturekey-us1",
    get requests() {
      return requests;
    },
    close: () => server.shutdown(),
  };
}

Deno.test("mailchimpBaseUrl() takes the data center from the key, else the option", () => {
  assert.equal(mailchimpBaseUrl("abc123-us9"), "https://us9.api.mailchimp.com/3.0");
  assert.equal(mailchimpBaseUrl("abc123", "us21"), "https://us21.api.mailchimp.com/3.0");
  assert.throws(() => mailchimpBaseUrl("abc123"), TypeError);
});

Deno.test("MailchimpClient authenticates with Basic auth and reads ping, list and members", async () => {
  const sim = await startSim();
  try {
    const sent: Sent[] = [];
    const mailchimp = client(sim, { fetch: recordingFetch(sent) });
    assert.equal(await mailchimp.ping(), "Everything's Chimpy!");
    const list = await mailchimp.getList("list1");
    assert.equal(list.id, "list1");
    const truth = sim.truth("list1");
    assert.equal(
      list.member_count + list.unsubscribe_count + list.cleaned_count,
      truth.filter((m) => ["subscribed", "unsubscribed", "cleaned"].includes(m.status)).length,
    );
    const page = await mailchimp.getMembers("list1", { count: 20, offset: 10 });
    assert.equal(page.members.length, 20);
    assert.equal(page.totalItems, truth.length);
    const byId = new Map(truth.map((m) => [m.id, m]));
    for (const m of page.members) {
      assert.equal(m.email_address, byId.get(m.id)?.email_address);
      assert.deepEqual(Object.keys(m).sort(), [
        "email_address",
        "id",
        "last_changed",
        "merge_fields",
        "status",
        "timestamp_opt",
      ]);
    }
    const expected = `Basic ${btoa(`anystring:${sim.apiKey}`)}`;
    assert.ok(sent.every((s) => s.authorization === expected));
    assert.ok(sent.every((s) => !s.url.includes(sim.apiKey)), "the key is never in a URL");
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient sends UTC whole-second times, fields and sorting in the query", async () => {
  const sim = await startSim();
  try {
    const sent: Sent[] = [];
    const page = await client(sim, { fetch: recordingFetch(sent) }).getMembers("list1", {
      count: 1000,
      sinceMs: Date.UTC(2025, 11, 31, 23, 59, 59, 999),
      beforeMs: Date.UTC(2026, 0, 1, 10, 20, 30, 456),
      status: "subscribed",
      sortField: "last_changed",
      sortDir: "ASC",
    });
    const url = new URL(sent[0]!.url);
    assert.match(url.search, /since_last_changed=2025-12-31T23%3A59%3A59%2B00%3A00/);
    assert.match(url.search, /before_last_changed=2026-01-01T10%3A20%3A30%2B00%3A00/);
    assert.equal(url.searchParams.get("status"), "subscribed");
    assert.equal(url.searchParams.get("sort_field"), "last_changed");
    assert.equal(url.searchParams.get("sort_dir"), "ASC");
    assert.equal(
      url.searchParams.get("fields"),
      "members.id,members.email_address,members.status,members.merge_fields," +
        "members.last_changed,members.timestamp_opt,total_items",
    );
    assert.ok(page.members.every((m) => m.status === "subscribed"));
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient sends UTC times even when the machine runs in Asia/Kolkata", async () => {
  const seen: string[] = [];
  const sim = await startSim({
    onMembersRequest: (_, query) => {
      seen.push(`${query.get("since_last_changed")} ${query.get("before_last_changed")}`);
    },
  });
  try {
    const code = `
      import { MailchimpClient } from ${
      JSON.stringify(import.meta.resolve("../../lib/mailchimp/client.ts"))
    };
      import { ConcurrencyLimiter } from ${
      JSON.stringify(import.meta.resolve("../../lib/http/concurrency_limiter.ts"))
    };
      import { systemClock } from ${
      JSON.stringify(import.meta.resolve("../../lib/clock/clock.ts"))
    };
      const c = new MailchimpClient({ apiKey: ${JSON.stringify(sim.apiKey)}, baseUrl: ${
      JSON.stringify(sim.url)
    },
        clock: systemClock, limiter: new ConcurrencyLimiter(1) });
      await c.getMembers("list1", { count: 1, sinceMs: ${Date.UTC(2026, 0, 1, 0, 0, 0, 500)},
        beforeMs: ${Date.UTC(2026, 0, 2, 18, 45, 7, 999)} });
      console.log(new Date(0).getTimezoneOffset());
    `;
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", code],
      env: { TZ: "Asia/Kolkata" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    assert.equal(new TextDecoder().decode(output.stdout).trim(), "-330", "the child ran in IST");
    assert.deepEqual(seen, ["2026-01-01T00:00:00+00:00 2026-01-02T18:45:07+00:00"]);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient counts with fields=total_items only", async () => {
  const seen: (string | null)[] = [];
  const sim = await startSim({ onMembersRequest: (_, q) => void seen.push(q.get("fields")) });
  try {
    const result = await client(sim).getMembers("list1", { count: 1, fieldsOnlyTotal: true });
    assert.deepEqual(result.members, []);
    assert.equal(result.totalItems, sim.truth("list1").length);
    assert.deepEqual(seen, ["total_items"]);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient reads Mailchimp's clock from the Date header", async () => {
  const clock = new FakeClock(Date.UTC(2026, 2, 4, 5, 6, 7, 890));
  const sim = await startSim({ clock });
  try {
    const result = await client(sim).getMembers("list1", { count: 5 });
    assert.equal(result.serverTimeMs, Date.UTC(2026, 2, 4, 5, 6, 7));
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient explains a rejected API key (401) without retrying", async () => {
  const sim = await startSim();
  try {
    const error = await failure(client({ url: sim.url, apiKey: "wrongkey-us1" }).ping());
    assert.ok(error instanceof MailchimpError);
    assert.equal(error.status, 401);
    assert.equal(error.title, "API Key Invalid");
    assert.match(error.message, /Mailchimp rejected the API key \(401\)/);
    // Mailchimp's detail ends with a period already: not doubled ("datacenter.. Check").
    assert.doesNotMatch(error.message, /\.\. Check/);
    assert.match(error.message, /datacenter\. Check MAILCHIMP_API_KEY/);
    assert.doesNotMatch(error.message, /wrongkey/);
    assert.equal(sim.stats.requests, 1);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient turns a 404 problem into a MailchimpError with title, detail and request id", async () => {
  const sim = await startSim();
  try {
    const error = await failure(client(sim).getMembers("nope", { count: 10 }));
    assert.ok(error instanceof MailchimpError);
    assert.equal(error.status, 404);
    assert.equal(error.endpoint, "GET /lists/nope/members");
    assert.equal(error.title, "Resource Not Found");
    assert.equal(error.detail, "The requested resource could not be found.");
    assert.match(error.requestId ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(
      error.message,
      `Mailchimp has no list "nope" (GET /lists/nope/members answered 404 Resource Not Found — The requested resource could not be found.): check the list id, and that the API key belongs to the account that owns it (request id ${error.requestId})`,
    );
    assert.equal(sim.stats.requests, 1);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient retries 429, 500 and 503 then succeeds, outside the limiter", async () => {
  const sim = await startSim();
  try {
    sim.faults.queue(429, 500, 503);
    const events: MailchimpRequestEvent[] = [];
    const limiter = new ConcurrencyLimiter(10);
    const inFlightAtRetry: number[] = [];
    const page = await client(sim, {
      limiter,
      onRequest: (e) => events.push(e),
      retry: {
        minDelayMs: 1,
        maxDelayMs: 2,
        onFailedAttempt: () => inFlightAtRetry.push(limiter.inFlight),
      },
    }).getMembers("list1", { count: 10 });
    assert.equal(page.members.length, 10);
    assert.deepEqual(events.map((e) => [e.status, e.attempt]), [[429, 1], [500, 2], [503, 3], [
      200,
      4,
    ]]);
    assert.ok(events.every((e) => e.endpoint === "GET /lists/list1/members"));
    assert.deepEqual(inFlightAtRetry, [0, 0, 0], "no slot held while backing off");
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient honours Retry-After when Mailchimp sends one", async () => {
  const sim = await startSim({ faults: { retryAfterSeconds: 3 } });
  try {
    sim.faults.queue(429);
    const clock = new InstantClock(600_000);
    // No jitter: the wait is the Retry-After alone (jitter comes on top, see retry_test).
    const retry = { random: () => 0 };
    const result = await client(sim, { clock, timeoutMs: 600_000, retry }).ping();
    assert.equal(result, "Everything's Chimpy!");
    assert.deepEqual(clock.sleeps, [3000]);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient tries a bare 403 twice and explains it; a 403 problem once", async () => {
  const sim = await startSim();
  const server = fixture(() =>
    new Response(JSON.stringify({ title: "Forbidden", status: 403, detail: "No access." }), {
      status: 403,
      headers: { "content-type": "application/problem+json" },
    })
  );
  try {
    sim.faults.queue(403);
    assert.equal(await client(sim).ping(), "Everything's Chimpy!");
    assert.equal(sim.stats.requests, 2);

    sim.faults.queue(403, 403, 403, 403);
    const bare = await failure(client(sim).ping());
    assert.ok(bare instanceof MailchimpError, String(bare));
    assert.equal(bare.status, 403);
    assert.equal(sim.stats.requests, 4, "two more attempts, not eight");
    assert.match(bare.message, /^Mailchimp GET \/ping answered 403 without a reason, as its edge/);
    assert.match(
      bare.message,
      /check that this machine may reach Mailchimp and that MAILCHIMP_API_KEY/,
    );

    const error = await failure(client(server).ping());
    assert.ok(error instanceof MailchimpError);
    assert.equal(error.status, 403);
    assert.equal(error.retryable, false);
    assert.match(error.message, /Mailchimp GET \/ping failed: 403 Forbidden — No access\./);
    assert.equal(server.requests, 1);
  } finally {
    await sim.close();
    await server.close();
  }
});

Deno.test("MailchimpClient gives up with RetryError whose cause is the last MailchimpError", async () => {
  const sim = await startSim();
  try {
    sim.faults.queue(503, 503, 502);
    const error = await failure(
      client(sim, { retry: { maxAttempts: 3, minDelayMs: 1, maxDelayMs: 2 } }).ping(),
    );
    assert.ok(error instanceof RetryError);
    assert.equal(error.attempts, 3);
    assert.ok(error.cause instanceof MailchimpError);
    assert.equal(error.cause.status, 502);
    assert.match(error.message, /Mailchimp GET \/ping failed: 502 Bad Gateway/);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient retries an attempt that timed out", async () => {
  // The simulator's slow answer waits on a clock nobody ticks: only the client's timeout ends it.
  const sim = await startSim({ clock: new FakeClock() });
  try {
    sim.faults.queue("slow");
    const events: MailchimpRequestEvent[] = [];
    const result = await client(sim, { timeoutMs: 30, onRequest: (e) => events.push(e) }).ping();
    assert.equal(result, "Everything's Chimpy!");
    assert.deepEqual(events.map((e) => e.status), [undefined, 200]);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient stops retrying when aborted", async () => {
  const sim = await startSim();
  try {
    sim.faults.queue(500, 500, 500);
    const controller = new AbortController();
    const reason = new Error("shutting down");
    const error = await failure(
      client(sim, {
        retry: {
          minDelayMs: 1000,
          maxDelayMs: 1000,
          onFailedAttempt: () => controller.abort(reason),
        },
      }).ping(controller.signal),
    );
    assert.equal(error, reason);
    assert.equal(sim.stats.requests, 1);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient keeps 30 concurrent page reads within one limiter of 10", async () => {
  const sim = await startSim({ latencyMs: 3 });
  try {
    const limiter = new ConcurrencyLimiter(10);
    const pages = await Promise.all(
      Array.from(
        { length: 30 },
        (_, i) => client(sim, { limiter }).getMembers("list1", { count: 1, offset: i }),
      ),
    );
    assert.equal(pages.length, 30);
    assert.equal(sim.stats.status429, 0);
    assert.ok(sim.stats.maxInFlight <= 10, `maxInFlight ${sim.stats.maxInFlight}`);
    assert.equal(limiter.maxInFlight, 10);
    assert.deepEqual(
      pages.map((p) => p.members[0]?.id),
      Array.from({ length: 30 }, (_, i) => sim.truth("list1")[i]?.id),
    );
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpClient reports a malformed answer clearly, retrying only one that is not JSON", async (t) => {
  const member = (status: string) => ({
    id: "a",
    email_address: "a@example.com",
    status,
    merge_fields: {},
    last_changed: "2026-01-01T00:00:00+00:00",
  });
  let body = "";
  const server = fixture(() =>
    new Response(body, { headers: { "content-type": "application/json", "x-request-id": "r1" } })
  );
  try {
    await t.step("wrong shape: at once", async () => {
      body = JSON.stringify({ members: "none", total_items: 5 });
      const before = server.requests;
      const error = await failure(client(server).getMembers("x", { count: 5 }));
      assert.ok(error instanceof MailchimpError);
      assert.equal(error.status, 200);
      assert.equal(error.retryable, false);
      assert.equal(error.requestId, "r1");
      assert.match(error.message, /^Mailchimp GET \/lists\/x\/members returned/);
      assert.match(error.message, /returned a malformed response: members: /);
      assert.equal(server.requests - before, 1);
    });
    for (
      const [name, text, expected] of [
        // A page of members cut off mid-record: the error must not carry its member data.
        [
          "cut short",
          JSON.stringify({ members: [member("subscribed")] }).slice(0, 60),
          /the body is not JSON \(it ends before its JSON does, after 60 characters: cut short\)/,
        ],
        ["an HTML page", "<html>oops</html>", /the body is not JSON but an HTML page/],
        ["empty", "", /returned a malformed response: the body is empty/],
      ] as const
    ) {
      await t.step(`${name}: retried, then given up`, async () => {
        body = text;
        const before = server.requests;
        const error = await failure(client(server).getMembers("x", { count: 5 }));
        assert.ok(error instanceof RetryError, String(error));
        assert.ok(error.cause instanceof MailchimpError);
        assert.equal(error.cause.status, 200);
        assert.equal(error.cause.retryable, true);
        assert.match(error.message, /^Mailchimp GET \/lists\/x\/members returned/);
        assert.match(error.message, expected);
        assert.doesNotMatch(error.message, /a@example\.com|subscribed|oops/);
        assert.equal(server.requests - before, 8);
      });
    }
    await t.step("malformed members are returned apart, the rest of the page kept", async () => {
      const good = { ...member("subscribed"), id: "0".repeat(32) };
      body = JSON.stringify({
        members: [good, member("weird"), { ...good, id: "1".repeat(32), email_address: "" }],
        total_items: 3,
      });
      const page = await client(server).getMembers("x", { count: 5 });
      assert.deepEqual(page.members.map((m) => m.id), ["0".repeat(32)]);
      assert.equal(page.size, 3);
      assert.deepEqual(page.invalid.map((m) => m.id), [
        // No usable id: the hash of the email stands in.
        "b418773a2c51fb9777a1648346fa7394",
        "1".repeat(32),
      ]);
      assert.match(page.invalid[0]!.reason, /status "weird": Invalid option/);
      assert.match(page.invalid[1]!.reason, /email_address "": is not an email address/);
    });
  } finally {
    await server.close();
  }
});

Deno.test("getMemberStamps() asks the members listing for ids and last_changed only", async () => {
  const sim = await startSim();
  try {
    const sent: Sent[] = [];
    const c = client(sim, { fetch: recordingFetch(sent) });
    const query = { count: 20, offset: 10, sortField: "last_changed", sortDir: "ASC" } as const;
    const full = await c.getMembers("list1", query);
    sim.resetStats();
    const stamps = await c.getMemberStamps("list1", query);
    const url = new URL(sent.at(-1)!.url);
    assert.equal(url.searchParams.get("fields"), "members.id,members.last_changed,total_items");
    assert.equal(url.searchParams.get("offset"), "10");
    assert.equal(url.searchParams.get("sort_field"), "last_changed");
    // The same listing, in the same order, with nothing but where each member stands.
    assert.deepEqual(
      stamps.stamps,
      full.members.map((m) => ({ id: m.id, lastChangedMs: Date.parse(m.last_changed) })),
    );
    assert.equal(stamps.size, 20);
    assert.equal(stamps.totalItems, 50);
    assert.ok(stamps.serverTimeMs !== undefined);
    assert.deepEqual([sim.stats.membersServed, sim.stats.idsServed], [0, 20], "served as ids");
  } finally {
    await sim.close();
  }
});
