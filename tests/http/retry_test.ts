import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { isRetryableStatus } from "../../lib/http/request_json.ts";
import {
  DeadlineError,
  MAX_RETRY_AFTER_MS,
  parseRetryAfter,
  retry,
  RetryError,
} from "../../lib/http/retry.ts";

/** An error answer as a client would throw it. */
class StatusError extends Error {
  constructor(readonly status: number, readonly retryAfter: string | null = null) {
    super(`HTTP ${status}`);
  }
}

const isRetryable = (e: unknown) => e instanceof StatusError && isRetryableStatus(e.status);

/**
 * A fixture server that answers each request with the next scripted status (then 200), with
 * `Retry-After` taken from the script, and counts requests.
 */
function fixture(script: { status: number; retryAfter?: string }[]) {
  let requests = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, () => {
    const step = script[requests++];
    if (!step) return new Response("ok");
    const headers = new Headers();
    if (step.retryAfter !== undefined) headers.set("Retry-After", step.retryAfter);
    return new Response("no", { status: step.status, headers });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    get requests() {
      return requests;
    },
    close: () => server.shutdown(),
  };
}

/** Fetches `url`, throwing a StatusError for an error status (the body is always read). */
async function get(url: string, signal: AbortSignal): Promise<string> {
  const response = await fetch(url, { signal });
  const text = await response.text();
  if (!response.ok) throw new StatusError(response.status, response.headers.get("retry-after"));
  return text;
}

Deno.test("retry() returns the first success and numbers attempts from 1", async () => {
  const clock = new FakeClock(undefined, { autoAdvance: true });
  const seen: number[] = [];
  const result = await retry((attempt) => {
    seen.push(attempt);
    if (attempt < 3) return Promise.reject(new StatusError(503));
    return Promise.resolve("done");
  }, { clock, shouldRetry: isRetryable, random: () => 1 });
  assert.equal(result, "done");
  assert.deepEqual(seen, [1, 2, 3]);
  // Full jitter with random() = 1 gives the ceilings: 500, then 1000.
  assert.equal(clock.now(), Date.UTC(2026, 0, 1) + 1500);
});

Deno.test("retry() backs off exponentially up to maxDelayMs and reports each retry", async () => {
  const clock = new FakeClock(undefined, { autoAdvance: true });
  const delays: number[] = [];
  await assert.rejects(
    retry(() => Promise.reject(new StatusError(500)), {
      clock,
      maxAttempts: 7,
      maxElapsedMs: 1_000_000,
      random: () => 1,
      onFailedAttempt: ({ delayMs }) => delays.push(delayMs),
    }),
    RetryError,
  );
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 15000]);
});

Deno.test("retry() throws RetryError with last error as cause after maxAttempts", async () => {
  const clock = new FakeClock(undefined, { autoAdvance: true });
  let calls = 0;
  const error = await retry(() => {
    calls++;
    return Promise.reject(new StatusError(calls === 4 ? 502 : 500));
  }, { clock, maxAttempts: 4, shouldRetry: isRetryable }).then(
    () => assert.fail("should have given up"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RetryError);
  assert.equal(error.name, "RetryError");
  assert.equal(error.attempts, 4);
  assert.equal(calls, 4);
  assert.ok(error.cause instanceof StatusError);
  assert.equal(error.cause.status, 502);
  // The cause first: a status line cut short must still show why.
  assert.equal(error.message, "HTTP 502 (gave up after 4 attempts: no attempts left)");
});

Deno.test("retry() gives up within maxElapsedMs", async () => {
  const start = Date.UTC(2026, 0, 1);
  const clock = new FakeClock(start, { autoAdvance: true });
  let lastAttemptAt = 0;
  const error = await retry(() => {
    lastAttemptAt = clock.now();
    return Promise.reject(new StatusError(503));
  }, { clock, maxAttempts: 100, random: () => 1 }).then(
    () => assert.fail("should have given up"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RetryError);
  assert.match(error.message, /time budget of 60000 ms spent/);
  assert.ok(lastAttemptAt - start <= 60_000, `last attempt at +${lastAttemptAt - start} ms`);
  assert.ok(error.attempts > 5);
});

Deno.test("retry() honours Retry-After in seconds and as an HTTP-date", async (t) => {
  for (
    const { name, header, expected } of [
      { name: "seconds", header: () => "7", expected: 7000 },
      {
        name: "HTTP-date",
        header: (now: number) => new Date(now + 12_000).toUTCString(),
        expected: 12_000,
      },
    ]
  ) {
    await t.step(name, async () => {
      const clock = new FakeClock(undefined, { autoAdvance: true });
      const server = fixture([{ status: 429, retryAfter: header(clock.now()) }]);
      try {
        const delays: number[] = [];
        const body = await retry((_, signal) => get(server.url, signal), {
          clock,
          shouldRetry: isRetryable,
          retryAfterMs: (e) =>
            e instanceof StatusError ? parseRetryAfter(e.retryAfter, clock.now()) : undefined,
          onFailedAttempt: ({ delayMs }) => delays.push(delayMs),
        });
        assert.equal(body, "ok");
        assert.deepEqual(delays, [expected]);
        assert.equal(server.requests, 2);
      } finally {
        await server.close();
      }
    });
  }
});

Deno.test("retry() gives up at once when Retry-After reaches past the time budget", async () => {
  const clock = new FakeClock(undefined, { autoAdvance: true });
  const server = fixture([{ status: 503, retryAfter: "120" }]);
  try {
    const error = await retry((_, signal) => get(server.url, signal), {
      clock,
      shouldRetry: isRetryable,
      retryAfterMs: (e) =>
        e instanceof StatusError ? parseRetryAfter(e.retryAfter, clock.now()) : undefined,
    }).then(() => assert.fail("should have given up"), (e: unknown) => e);
    assert.ok(error instanceof RetryError);
    assert.equal(error.attempts, 1);
    assert.match(error.message, /asked to wait 120000 ms/);
    assert.equal(server.requests, 1);
    assert.equal(clock.now(), Date.UTC(2026, 0, 1));
  } finally {
    await server.close();
  }
});

Deno.test("retry() does not retry 400, 401 or 404", async (t) => {
  for (const status of [400, 401, 404]) {
    await t.step(String(status), async () => {
      const clock = new FakeClock(undefined, { autoAdvance: true });
      const server = fixture([{ status }]);
      try {
        const error = await retry((_, signal) => get(server.url, signal), {
          clock,
          shouldRetry: isRetryable,
        }).then(() => assert.fail("should have thrown"), (e: unknown) => e);
        assert.ok(error instanceof StatusError, "the error itself, not a RetryError");
        assert.equal(error.status, status);
        assert.equal(server.requests, 1);
      } finally {
        await server.close();
      }
    });
  }
});

Deno.test("retry() stops at once when aborted in the middle of a backoff sleep", async () => {
  const clock = new FakeClock();
  const controller = new AbortController();
  let calls = 0;
  const promise = retry(() => {
    calls++;
    return Promise.reject(new StatusError(500));
  }, { clock, signal: controller.signal, random: () => 1 });
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(clock.pendingTimers, 1, "sleeping before attempt 2");
  const reason = new Error("shutting down");
  controller.abort(reason);
  await assert.rejects(promise, (e) => e === reason);
  assert.equal(calls, 1);
  assert.equal(clock.pendingTimers, 0);
});

Deno.test("retry() does not call fn when the signal is already aborted", async () => {
  const clock = new FakeClock();
  let calls = 0;
  await assert.rejects(
    retry(() => {
      calls++;
      return Promise.resolve(1);
    }, { clock, signal: AbortSignal.abort(new Error("stop")) }),
    /stop/,
  );
  assert.equal(calls, 0);
});

Deno.test("retry() rejects bad options with RangeError", async () => {
  const clock = new FakeClock();
  await assert.rejects(retry(() => Promise.resolve(1), { clock, maxAttempts: 0 }), RangeError);
  await assert.rejects(
    retry(() => Promise.resolve(1), { clock, minDelayMs: 10, maxDelayMs: 5 }),
    RangeError,
  );
});

Deno.test("parseRetryAfter() reads seconds and HTTP-dates", () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  assert.equal(parseRetryAfter("3", now), 3000);
  assert.equal(parseRetryAfter("0", now), 0);
  assert.equal(parseRetryAfter("Thu, 01 Jan 2026 12:00:30 GMT", now), 30_000);
  assert.equal(parseRetryAfter("Thu, 01 Jan 2026 11:00:00 GMT", now), 0, "a past date is now");
  assert.equal(parseRetryAfter(null, now), undefined);
  assert.equal(parseRetryAfter("soon", now), undefined);
});

/** A 429 as a client would throw it, with its Retry-After in milliseconds. */
class Throttle extends Error {
  constructor(readonly retryAfterMs: number | undefined) {
    super("HTTP 429 Too Many Requests");
  }
}

const throttleOptions = {
  isThrottle: (e: unknown) => e instanceof Throttle,
  retryAfterMs: (e: unknown) => e instanceof Throttle ? e.retryAfterMs : undefined,
};

Deno.test("retry() rides out a storm of 429s past maxAttempts, each wait growing with jitter", async () => {
  const start = Date.UTC(2026, 0, 1);
  const clock = new FakeClock(start, { autoAdvance: true });
  const delays: number[] = [];
  let calls = 0;
  const result = await retry(() => {
    // 40 answers 429 with Retry-After: 1, then the storm is over.
    if (++calls <= 40) return Promise.reject(new Throttle(1000));
    return Promise.resolve("ok");
  }, {
    clock,
    ...throttleOptions,
    random: () => 0.5,
    deadline: start + 30 * 60_000,
    onFailedAttempt: ({ delayMs, throttled }) => {
      assert.ok(throttled);
      delays.push(delayMs);
    },
  });
  assert.equal(result, "ok");
  assert.equal(calls, 41, "not given up after 8 attempts: a 429 is the server's pace");
  // Retry-After is a floor; on top, half of a ceiling that doubles up to 15 s.
  assert.deepEqual(delays.slice(0, 7), [1250, 1500, 2000, 3000, 5000, 8500, 8500]);
  assert.ok(delays.every((d) => d >= 1000));
});

Deno.test("retry() gives up on a throttle with a DeadlineError, cause first, when its wait passes the deadline", async (t) => {
  for (
    const [name, retryAfterMs] of [["Retry-After 1 h", 3_600_000], ["a day", 86_400_000]] as const
  ) {
    await t.step(name, async () => {
      const start = Date.UTC(2026, 0, 1);
      const clock = new FakeClock(start, { autoAdvance: true });
      let calls = 0;
      const error = await retry(() => {
        calls++;
        return Promise.reject(new Throttle(retryAfterMs));
      }, { clock, ...throttleOptions, random: () => 0, deadline: start + 10 * 60_000 }).then(
        () => assert.fail("should have given up"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof DeadlineError, String(error));
      assert.ok(error.cause instanceof Throttle);
      assert.equal(calls, 1);
      assert.equal(clock.now(), start, "no wait was started");
      assert.match(
        error.message,
        /^HTTP 429 Too Many Requests: waiting [\d.]+ (min|h) for the rate limit would end past the run's deadline \(10 min left\)/,
      );
    });
  }
});

Deno.test("retry() without a deadline bounds a storm by its time budget", async () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1), { autoAdvance: true });
  const error = await retry(() => Promise.reject(new Throttle(1000)), {
    clock,
    ...throttleOptions,
    random: () => 1,
  }).then(() => assert.fail("should have given up"), (e: unknown) => e);
  assert.ok(error instanceof RetryError);
  assert.match(
    error.message,
    /^HTTP 429 Too Many Requests \(gave up after \d+ attempts: rate limited/,
  );
  assert.ok(clock.now() - Date.UTC(2026, 0, 1) <= 60_000);
});

Deno.test("parseRetryAfter() reads a wait beyond a day as a day", () => {
  const now = Date.UTC(2026, 0, 1);
  // Above 2^31 ms a timer fires at once: 2,200,000 s is about 25.5 days.
  assert.equal(parseRetryAfter("2200000", now), MAX_RETRY_AFTER_MS);
  assert.equal(parseRetryAfter("Fri, 01 Jan 2100 00:00:00 GMT", now), MAX_RETRY_AFTER_MS);
  assert.equal(MAX_RETRY_AFTER_MS, 86_400_000);
});
