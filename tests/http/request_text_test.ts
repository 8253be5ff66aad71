/**
 * One exchange and its two ways to stop: the caller's signal and the timeout, which covers a
 * body that stalls after its headers.
 */
import assert from "node:assert/strict";
import { systemClock } from "../../lib/clock/clock.ts";
import { HttpTimeoutError, requestText } from "../../lib/http/request_json.ts";

/** A server whose `/stall` sends headers and a first chunk, then nothing until it is closed. */
function stallingServer() {
  const started = Promise.withResolvers<void>();
  const stalls: ReadableStreamDefaultController<Uint8Array>[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
    if (!req.url.endsWith("/stall")) return new Response("done");
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"members":['));
        stalls.push(controller);
        started.resolve();
      },
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    started: started.promise,
    close: async () => {
      for (const s of stalls) {
        try {
          s.close();
        } catch {
          // Cancelled already by the client going away.
        }
      }
      await server.shutdown();
    },
  };
}

Deno.test("requestText() rejects with the caller's reason when aborted while the body is read", async () => {
  const server = stallingServer();
  try {
    const controller = new AbortController();
    const reason = new Error("shutting down");
    const pending = requestText(`${server.url}/stall`, {
      fetch: globalThis.fetch,
      clock: systemClock,
      timeoutMs: 60_000,
      signal: controller.signal,
    });
    await server.started;
    controller.abort(reason);
    await assert.rejects(pending, (error) => error === reason);
  } finally {
    await server.close();
  }
});

Deno.test("requestText() times out a body that stalls after its headers", async () => {
  const server = stallingServer();
  try {
    const controller = new AbortController();
    await assert.rejects(
      requestText(`${server.url}/stall`, {
        fetch: globalThis.fetch,
        clock: systemClock,
        timeoutMs: 30,
        signal: controller.signal,
      }),
      (error) => error instanceof HttpTimeoutError && error.timeoutMs === 30,
    );
    assert.equal(controller.signal.aborted, false, "the caller's signal is left alone");
  } finally {
    await server.close();
  }
});

Deno.test("requestText() answers with a caller's signal and refuses to start once it is aborted", async () => {
  const server = stallingServer();
  try {
    const controller = new AbortController();
    for (let i = 0; i < 3; i++) {
      const exchange = await requestText(`${server.url}/done`, {
        fetch: globalThis.fetch,
        clock: systemClock,
        timeoutMs: 60_000,
        signal: controller.signal,
      });
      assert.equal(exchange.text, "done");
    }
    controller.abort(new Error("later"));
    const already = requestText(`${server.url}/done`, {
      fetch: globalThis.fetch,
      clock: systemClock,
      timeoutMs: 60_000,
      signal: controller.signal,
    });
    await assert.rejects(already, /later/);
  } finally {
    await server.close();
  }
});
