/**
 * Contract tests of the Ometria client against Ometria's documented answers
 * (tests/fixtures/ometria_answers.ts), served as they are by a fixture server: `_errors` in
 * the documented shape and in the richer one, a `skipped` count, a 403 for a bad key, and
 * the Data API paced apart from pushes.
 */
import assert from "node:assert/strict";
import { systemClock } from "../../lib/clock/clock.ts";
import { RateLimiter } from "../../lib/http/rate_limiter.ts";
import type { OmetriaContact } from "../../lib/mapping/contact.ts";
import { OmetriaClient, OmetriaError } from "../../lib/ometria/client.ts";
import { OmetriaSimulator } from "../../lib/sim/ometria_sim.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { until } from "../_helpers/until.ts";
import * as answers from "../fixtures/ometria_answers.ts";
import { ometriaClientFor } from "../_helpers/ometria_client.ts";

const ID = "b0149f75fe84c92d0dec9a0b13e6960b";

function contact(id: string): OmetriaContact {
  return {
    "@type": "contact",
    "@collection": "mailchimp-list1",
    id,
    email: "ada@example.com",
    firstname: "Ada",
    lastname: "",
    marketing_optin: "EXPLICITLY_OPTEDIN",
  };
}

/** A server answering `POST /v2/push` with `push` and `GET /v2/push/_errors` with `errors`. */
function fixture(push: { status?: number; body: string }, errors = "[]") {
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    await req.body?.cancel();
    const path = new URL(req.url).pathname;
    const [status, body] = path === "/v2/push/_errors"
      ? [200, errors]
      : [push.status ?? 200, push.body];
    return new Response(body, { status, headers: { "content-type": "application/json" } });
  });
  const client = new OmetriaClient({
    apiKey: "key",
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    endpoint: "push",
    clock: systemClock,
    rateLimiter: new RateLimiter({ perSecond: 1000, clock: systemClock }),
    retry: { minDelayMs: 1, maxDelayMs: 2 },
  });
  return { client, close: () => server.shutdown() };
}

Deno.test("recentErrors() reads the documented and the richer _errors shapes into one type", async (t) => {
  const cases: [string, string, unknown][] = [
    ["documented", answers.ERRORS_DOCUMENTED, [{
      message: "not a valid value",
      path: "root > lastname",
      field: "lastname",
    }]],
    ["rich", answers.ERRORS_RICH, [{
      message: "not a valid value",
      path: "root > phone_number",
      field: "phone_number",
      recordId: ID,
      requestId: "e8d96762-4f3b-4a9c-9d6b-0f1e2d3c4b5a",
      recordType: "contact",
      timestamp: "2026-05-01T12:00:01+00:00",
    }]],
    ["flattened", answers.ERRORS_FLATTENED, [{
      message: "not a valid value",
      path: "root > properties > birthday",
      field: "properties.birthday",
      recordId: ID,
      requestId: "e8d96762-4f3b-4a9c-9d6b-0f1e2d3c4b5a",
      recordType: "contact",
      timestamp: "2026-05-01T12:00:01+00:00",
    }]],
  ];
  for (const [name, body, expected] of cases) {
    await t.step(name, async () => {
      const f = fixture({ body: answers.PUSH_WITH_SKIPPED }, body);
      try {
        assert.deepEqual(await f.client.recentErrors(), expected);
      } finally {
        await f.close();
      }
    });
  }
});

Deno.test("a record rejected whole gets its reason from _errors, tied to it or said not to be", async (t) => {
  const cases: [string, string, string][] = [
    [
      "documented shape: the field and message, not tied to the record",
      answers.ERRORS_DOCUMENTED,
      "rejected by Ometria; its latest push errors, not tied to a record: " +
      "lastname: not a valid value",
    ],
    [
      "rich shape: the record's own error",
      answers.ERRORS_RICH,
      "rejected by Ometria: phone_number: not a valid value",
    ],
  ];
  for (const [name, errors, reason] of cases) {
    await t.step(name, async () => {
      const f = fixture({ body: answers.PUSH_REJECTED_ONE }, errors);
      try {
        const result = await f.client.push([contact(ID)]);
        assert.deepEqual(result.rejectedRecords, [{ id: ID, reason }]);
      } finally {
        await f.close();
      }
    });
  }
});

Deno.test("a skipped count beside accepted and rejected acknowledges the batch", async () => {
  const f = fixture({ body: answers.PUSH_WITH_SKIPPED });
  try {
    const result = await f.client.push([contact("a"), contact("b")]);
    assert.deepEqual([result.accepted, result.skipped, result.rejected], [1, 1, 0]);
  } finally {
    await f.close();
  }
});

Deno.test("Ometria's documented 403 for a bad key is a key error, not retried", async () => {
  const f = fixture({ status: 403, body: answers.FORBIDDEN });
  try {
    const error = await f.client.push([contact("a")]).catch((e: unknown) => e);
    assert.ok(error instanceof OmetriaError);
    assert.equal(error.retryable, false);
    assert.match(error.message, /Ometria rejected the API key \(403\): check OMETRIA_API_KEY/);
  } finally {
    await f.close();
  }
});

Deno.test("_errors reads are paced by the Data API's limiter, apart from pushes", async () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const sim = await OmetriaSimulator.start({ clock, maxDataApiRequestsPerSecond: 4 });
  try {
    const client = ometriaClientFor(sim, clock, {
      dataApiRateLimiter: new RateLimiter({ perSecond: 4, clock }),
    });
    // Reads are spread at 4 a second: the first goes, the others wait their slots…
    let done = 0;
    const reads = Array.from({ length: 5 }, () => client.recentErrors().then(() => done++));
    await until(() => done === 1 && clock.pendingTimers === 1, "one read and the next waiting");
    // …and a push, paced by its own limiter, does not queue behind them.
    await client.push([contact("a")]);
    assert.equal(done, 1);
    for (let i = 0; i < 12 && done < 5; i++) await clock.tick(100);
    await Promise.all(reads);
    assert.equal(sim.stats.status429, 0);
    assert.equal(sim.stats.maxDataApiRequestsInOneSecond, 4);
  } finally {
    await sim.close();
  }
});
