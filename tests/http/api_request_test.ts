import assert from "node:assert/strict";
import { z } from "zod";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { ApiError, type ApiErrorInit } from "../../lib/http/api_error.ts";
import {
  apiRequest,
  type ApiRequestEvent,
  type ApiRequestOptions,
} from "../../lib/http/api_request.ts";
import { isRetryableStatus } from "../../lib/http/request_json.ts";
import { RetryError } from "../../lib/http/retry.ts";
import { ThrottleLog } from "../../lib/http/throttle_log.ts";
import { quietLogger } from "../../lib/log/logging.ts";

/** A subclass as each API client has one. */
class TestApiError extends ApiError {
  constructor(init: ApiErrorInit) {
    super(init);
    this.name = "TestApiError";
  }
}

const okSchema = z.object({ ok: z.literal(true) });

/** A server answering the n-th request (from 0) with `answers[n]`, the last one after that. */
function fixture(answers: (() => Response)[]) {
  let requests = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    await req.body?.cancel();
    const answer = answers[Math.min(requests++, answers.length - 1)]!;
    return answer();
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    get requests() {
      return requests;
    },
    close: () => server.shutdown(),
  };
}

function options(baseUrl: string, more: Partial<ApiRequestOptions> = {}): ApiRequestOptions {
  return {
    api: "Test",
    baseUrl,
    fetch: globalThis.fetch,
    clock: new FakeClock(Date.UTC(2026, 0, 1), { autoAdvance: true }),
    logger: quietLogger(),
    timeoutMs: 5_000,
    newError: (init) => new TestApiError(init),
    statusError: ({ exchange, endpoint, context, requestId, retryAfterMs }) =>
      new TestApiError({
        message: `Test ${endpoint}${context} failed: ${exchange.status}`,
        endpoint,
        status: exchange.status,
        requestId,
        retryable: isRetryableStatus(exchange.status),
        retryAfterMs,
      }),
    ...more,
  };
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return await promise.then(() => assert.fail("should have failed"), (e: unknown) => e);
}

Deno.test("apiRequest() retries a retryable status, reports every attempt and validates", async () => {
  const server = fixture([
    () => new Response("busy", { status: 503, headers: { "retry-after": "2" } }),
    () => Response.json({ ok: true }, { headers: { "x-request-id": "r2" } }),
  ]);
  try {
    const events: ApiRequestEvent[] = [];
    const delays: number[] = [];
    let gated = 0;
    const answer = await apiRequest(
      "/thing",
      okSchema,
      options(server.url, {
        query: new URLSearchParams({ a: "1" }),
        onRequest: (e) => events.push(e),
        gate: (attempt) => (gated++, attempt()),
        retry: { onFailedAttempt: ({ delayMs }) => delays.push(delayMs) },
      }),
    );
    assert.deepEqual(answer.value, { ok: true });
    assert.equal(answer.exchange.headers.get("x-request-id"), "r2");
    assert.deepEqual(events.map((e) => [e.endpoint, e.status, e.attempt]), [
      ["GET /thing", 503, 1],
      ["GET /thing", 200, 2],
    ]);
    assert.deepEqual(delays, [2000], "Retry-After honoured");
    assert.equal(gated, 2, "every attempt goes through the gate");
  } finally {
    await server.close();
  }
});

Deno.test("apiRequest() throws a non-retryable status error at once", async () => {
  const server = fixture([() => new Response("nope", { status: 404 })]);
  try {
    const error = await failure(apiRequest("/x", okSchema, options(server.url)));
    assert.ok(error instanceof TestApiError);
    assert.equal(error.status, 404);
    assert.equal(error.message, "Test GET /x failed: 404");
    assert.equal(server.requests, 1);
  } finally {
    await server.close();
  }
});

Deno.test("apiRequest() turns no answer into a retryable error of the API's class", async () => {
  const closed = fixture([() => new Response("")]);
  const url = closed.url;
  await closed.close();
  const events: ApiRequestEvent[] = [];
  const error = await failure(
    apiRequest(
      "/gone",
      okSchema,
      options(url, { retry: { maxAttempts: 2 }, onRequest: (e) => events.push(e) }),
    ),
  );
  assert.ok(error instanceof RetryError);
  assert.ok(error.cause instanceof TestApiError);
  assert.equal(error.cause.retryable, true);
  assert.equal(error.cause.status, undefined);
  assert.ok(error.cause.cause !== undefined, "the network error is kept as cause");
  assert.match(error.cause.message, /^Test GET \/gone failed: no answer \(/);
  assert.deepEqual(events.map((e) => e.status), [undefined, undefined]);
});

Deno.test("apiRequest() with retry: false makes one attempt and throws its error as it is", async () => {
  const server = fixture([() => new Response("down", { status: 500 })]);
  try {
    const error = await failure(
      apiRequest("/once", okSchema, options(server.url, { retry: false, context: " (ctx)" })),
    );
    assert.ok(error instanceof TestApiError);
    assert.equal(error.retryable, true);
    assert.equal(error.message, "Test GET /once (ctx) failed: 500");
    assert.equal(server.requests, 1);
  } finally {
    await server.close();
  }
});

Deno.test("apiRequest() explains JSON of the wrong shape without retrying", async () => {
  const server = fixture([
    () => new Response('{"ok":1}', { status: 200, headers: { "x-request-id": "q" } }),
  ]);
  try {
    const error = await failure(
      apiRequest("/p", okSchema, options(server.url, { method: "POST", body: "[]" })),
    );
    assert.ok(error instanceof TestApiError);
    assert.equal(error.retryable, false);
    assert.equal(error.status, 200);
    assert.equal(error.requestId, "q");
    assert.match(error.message, /^Test POST \/p returned a malformed response: ok: Invalid/);
    assert.match(error.message, /\(request id q\)$/);
    assert.equal(server.requests, 1);
  } finally {
    await server.close();
  }
});

Deno.test("apiRequest() retries a 2xx body that is not JSON, never quoting it", async (t) => {
  const member = '{"members":[{"id":"0f1e","email_address":"jane.doe@example.com","merge_fields":';
  for (
    const [name, status, text, expected] of [
      ["cut short", 200, member, /the body is not JSON \(it ends before its JSON does, after 79 /],
      ["an HTML page", 200, "<!doctype html><h1>Bad gateway</h1>", /not JSON but an HTML page/],
      ["empty, with another 2xx", 202, "", /malformed response \(202\): the body is empty/],
    ] as const
  ) {
    await t.step(name, async () => {
      const server = fixture([
        () => new Response(text, { status, headers: { "x-request-id": "q" } }),
        () => Response.json({ ok: true }),
      ]);
      try {
        const answer = await apiRequest("/p", okSchema, options(server.url));
        assert.deepEqual(answer.value, { ok: true });
        assert.equal(server.requests, 2, "tried again");
      } finally {
        await server.close();
      }
      const always = fixture([() => new Response(text, { status })]);
      try {
        const error = await failure(
          apiRequest("/p", okSchema, options(always.url, { retry: { maxAttempts: 3 } })),
        );
        assert.ok(error instanceof RetryError, String(error));
        assert.ok(error.cause instanceof TestApiError);
        assert.equal(error.cause.retryable, true);
        assert.match(error.message, /^Test GET \/p returned a malformed response/);
        assert.match(error.message, expected);
        assert.doesNotMatch(error.message, /jane\.doe|example\.com|Bad gateway/, "no body quoted");
        assert.equal(always.requests, 3);
      } finally {
        await always.close();
      }
    });
  }
});

Deno.test("apiRequest() survives an onRequest hook that throws", async () => {
  const server = fixture([() => Response.json({ ok: true })]);
  try {
    const answer = await apiRequest(
      "/ok",
      okSchema,
      options(server.url, {
        onRequest: () => {
          throw new Error("metrics broke");
        },
      }),
    );
    assert.deepEqual(answer.value, { ok: true });
  } finally {
    await server.close();
  }
});

Deno.test("ApiError keeps its fields, name and cause", () => {
  const cause = new TypeError("boom");
  const error = new ApiError({ message: "m", endpoint: "GET /x", cause });
  assert.equal(error.name, "ApiError");
  assert.equal(error.cause, cause);
  assert.equal(error.retryable, false);
  assert.equal(error.status, undefined);
  assert.ok(new TestApiError({ message: "m", endpoint: "GET /x" }) instanceof ApiError);
});

Deno.test("apiRequest() tells a storm of 429s once, with its counts, not a warning per retry", async () => {
  const { captureLogs } = await import("../freshness/_helpers.ts");
  using logs = captureLogs();
  // Ten requests in flight meet 60 answers 429 (Retry-After: 1), then the storm is over.
  let answered = 0;
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    () =>
      ++answered <= 60
        ? new Response("slow down", { status: 429, headers: { "retry-after": "1" } })
        : Response.json({ ok: true }),
  );
  const clock = new FakeClock(Date.UTC(2026, 0, 1), { autoAdvance: true });
  const throttles = new ThrottleLog({ api: "Test", logger: logs.logger, clock });
  const base = options(`http://127.0.0.1:${server.addr.port}`, {
    clock,
    logger: logs.logger,
    throttles,
    deadline: () => Date.UTC(2026, 0, 1) + 30 * 60_000,
  });
  try {
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => apiRequest(`/page/${i}`, okSchema, base)),
    );
    assert.equal(answers.length, 10, "every request got through: none failed after 8 attempts");
    const warnings = logs.records.filter((r) => r.level === "warning");
    assert.equal(logs.events("throttle.started").length, 1, logs.text());
    assert.match(
      logs.events("throttle.started")[0]!.message.join(""),
      /^Test is rate limiting requests \(429 to GET \/page\/\d\)/,
    );
    // Beyond the first line, a reminder with the counts at most once a minute (this fake
    // clock adds up the ten requests' waits, so the storm lasts minutes on it).
    const minutes = (clock.now() - Date.UTC(2026, 0, 1)) / 60_000;
    const reminders = logs.events("throttle.continues").length;
    assert.ok(reminders <= minutes, `${reminders} reminders in ${minutes} min`);
    assert.equal(warnings.length, 1 + reminders, logs.text());
    // The first answer after a quiet spell ends the storm, with its totals.
    clock.set(clock.now() + 15_000);
    await apiRequest("/after", okSchema, base);
    const ended = logs.events("throttle.ended");
    assert.equal(ended.length, 1, logs.text());
    assert.match(
      ended[0]!.message.join(""),
      /^Test rate limiting is over: 60 answers 429 in \d+ s$/,
    );
  } finally {
    await server.shutdown();
  }
});
