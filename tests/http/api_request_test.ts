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

Deno.test("apiRequest() explains a malformed answer without retrying", async (t) => {
  for (
    const [name, status, text, expected] of [
      [
        "not JSON",
        200,
        "<html>",
        /^Test POST \/p returned a malformed response: the body is not JSON/,
      ],
      ["wrong shape", 200, '{"ok":1}', /^Test POST \/p returned a malformed response: ok: Invalid/],
      [
        "other 2xx",
        202,
        "",
        /^Test POST \/p returned a malformed response \(202\): the body is empty/,
      ],
    ] as const
  ) {
    await t.step(name, async () => {
      const server = fixture([
        () => new Response(text, { status, headers: { "x-request-id": "q" } }),
      ]);
      try {
        const error = await failure(
          apiRequest("/p", okSchema, options(server.url, { method: "POST", body: "[]" })),
        );
        assert.ok(error instanceof TestApiError);
        assert.equal(error.retryable, false);
        assert.equal(error.status, status);
        assert.equal(error.requestId, "q");
        assert.match(error.message, expected);
        assert.match(error.message, /\(request id q\)$/);
        assert.equal(server.requests, 1);
      } finally {
        await server.close();
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
