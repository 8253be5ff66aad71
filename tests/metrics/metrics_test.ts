import assert from "node:assert/strict";
import { Metrics, serveMetrics } from "../../lib/metrics/metrics.ts";

/** Parses exposition text into sample lines `name{labels}` → value, checking each line's shape. */
function parseSamples(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  assert.ok(text.endsWith("\n"), "exposition text ends with a newline");
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
    const match =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})?) (\S+)$/
        .exec(line);
    assert.ok(match, `invalid sample line: ${JSON.stringify(line)}`);
    samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

Deno.test("Metrics.render() writes valid exposition text with HELP, TYPE and escaped labels", () => {
  const metrics = new Metrics();
  metrics.setConnection("shop-eu", { lag_seconds: 125, behind: false });
  metrics.setConnection('odd "id"\\x\ny', { lag_seconds: 7200, behind: true });
  metrics.setConnection("new", { lag_seconds: null, behind: false });
  metrics.recordRun("shop-eu", { pushed: 120, durationMs: 1500, ok: true });
  metrics.recordRun("shop-eu", { pushed: 30, durationMs: 500, ok: false });
  metrics.countRequest("mailchimp", 200);
  metrics.countRequest("mailchimp", 200);
  metrics.countRequest("mailchimp", 429);
  metrics.countRequest("ometria", 202);
  metrics.countRequest("ometria", "error");
  const text = metrics.render();
  const samples = parseSamples(text);

  assert.equal(samples.get('sync_connection_lag_seconds{connection="shop-eu"}'), 125);
  assert.equal(samples.get('sync_connection_behind{connection="odd \\"id\\"\\\\x\\ny"}'), 1);
  assert.equal(samples.has('sync_connection_lag_seconds{connection="new"}'), false);
  assert.equal(samples.get('sync_connection_behind{connection="new"}'), 0);
  assert.equal(samples.get('sync_members_synced_total{connection="shop-eu"}'), 150);
  assert.equal(samples.get('sync_run_duration_seconds_sum{connection="shop-eu"}'), 2);
  assert.equal(samples.get('sync_run_duration_seconds_count{connection="shop-eu"}'), 2);
  assert.equal(samples.get('sync_run_failures_total{connection="shop-eu"}'), 1);
  assert.equal(samples.get('sync_mailchimp_requests_total{status="200"}'), 2);
  assert.equal(samples.get('sync_mailchimp_requests_total{status="429"}'), 1);
  assert.equal(samples.get('sync_ometria_requests_total{status="error"}'), 1);
  assert.equal(samples.get('sync_http_429_total{api="mailchimp"}'), 1);
  assert.equal(samples.get('sync_http_429_total{api="ometria"}'), 0);
  assert.match(
    text,
    /^# HELP sync_connection_lag_seconds .+\n# TYPE sync_connection_lag_seconds gauge\n/,
  );
  assert.match(text, /\n# TYPE sync_run_duration_seconds summary\n/);
  assert.match(text, /\n# TYPE sync_members_synced_total counter\n/);
  // Every family is declared once.
  const types = text.split("\n").filter((l) => l.startsWith("# TYPE ")).map((l) => l.split(" ")[2]);
  assert.equal(new Set(types).size, types.length);
  assert.equal(types.length, 12);
});

Deno.test("Metrics.render() covers every one of 10,000 connections", () => {
  const metrics = new Metrics();
  for (let i = 0; i < 10_000; i++) {
    metrics.setConnection(`connection-${i}`, { lag_seconds: i, behind: i % 10 === 0 });
    metrics.recordRun(`connection-${i}`, { pushed: i, durationMs: 1234, ok: i % 3 !== 0 });
  }
  const text = metrics.render();
  assert.equal(
    parseSamples(text).get('sync_connection_lag_seconds{connection="connection-9999"}'),
    9999,
  );
  assert.equal(text.match(/^sync_connection_behind\{/gm)?.length, 10_000);
});

Deno.test("serveMetrics() serves /metrics and /healthz over HTTP and 404 elsewhere", async () => {
  const metrics = new Metrics();
  metrics.setConnection("shop-eu", { lag_seconds: 42, behind: false });
  let healthy = true;
  const server = serveMetrics({
    metrics,
    port: 0,
    health: () => (healthy ? { ok: true } : { ok: false, detail: { state: "unwritable" } }),
  });
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const m = await fetch(new URL("metrics", server.url));
    assert.equal(m.status, 200);
    assert.equal(m.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    assert.equal(
      parseSamples(await m.text()).get('sync_connection_lag_seconds{connection="shop-eu"}'),
      42,
    );

    const ok = await fetch(new URL("healthz", server.url));
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { ok: true });

    healthy = false;
    const bad = await fetch(new URL("healthz", server.url));
    assert.equal(bad.status, 503);
    assert.deepEqual(await bad.json(), { ok: false, detail: { state: "unwritable" } });

    const missing = await fetch(new URL("nope", server.url));
    assert.equal(missing.status, 404);
    await missing.body?.cancel();

    const post = await fetch(new URL("metrics", server.url), { method: "POST" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
  } finally {
    await server.close();
  }
});

Deno.test("serveMetrics() answers 503 when the health check throws and stops on its signal", async () => {
  const controller = new AbortController();
  const server = serveMetrics({
    metrics: new Metrics(),
    port: 0,
    health: () => {
      throw new Error("store closed");
    },
    signal: controller.signal,
  });
  const res = await fetch(new URL("healthz", server.url));
  assert.equal(res.status, 503);
  assert.deepEqual(await res.json(), { ok: false, detail: "store closed" });
  controller.abort();
  await server.close();
  await assert.rejects(fetch(new URL("healthz", server.url)), TypeError);
});
