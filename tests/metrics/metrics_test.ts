import assert from "node:assert/strict";
import { Metrics, PROCESS_FAMILIES, serveMetrics } from "../../lib/metrics/metrics.ts";
import { statusPageSample } from "../status_page/_sample.ts";
import { bothExpositions } from "./_exposition.ts";

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

Deno.test("Metrics.render() writes the process's counters with HELP, TYPE and escaped labels", () => {
  const metrics = new Metrics();
  metrics.recordRun("shop-eu", { pushed: 120, durationMs: 1500, ok: true });
  metrics.recordRun("shop-eu", { pushed: 30, unchanged: 970, durationMs: 500, ok: false });
  metrics.recordRun('odd "id"\\x\ny', { pushed: 1, durationMs: 1, ok: true });
  metrics.countRequest("mailchimp", 200);
  metrics.countRequest("mailchimp", 200);
  metrics.countRequest("mailchimp", 429);
  metrics.countRequest("ometria", 202);
  metrics.countRequest("ometria", "error");
  const text = metrics.render();
  const samples = parseSamples(text);

  assert.equal(samples.get('sync_members_synced_total{connection="shop-eu"}'), 150);
  assert.equal(samples.get('sync_members_synced_total{connection="odd \\"id\\"\\\\x\\ny"}'), 1);
  assert.equal(samples.get('sync_members_unchanged_total{connection="shop-eu"}'), 970);
  assert.equal(samples.get('sync_run_duration_seconds_sum{connection="shop-eu"}'), 2);
  assert.equal(samples.get('sync_run_duration_seconds_count{connection="shop-eu"}'), 2);
  assert.equal(samples.get('sync_run_failures_total{connection="shop-eu"}'), 1);
  assert.equal(samples.get('sync_mailchimp_requests_total{status="200"}'), 2);
  assert.equal(samples.get('sync_mailchimp_requests_total{status="429"}'), 1);
  assert.equal(samples.get('sync_ometria_requests_total{status="error"}'), 1);
  assert.equal(samples.get('sync_http_429_total{api="mailchimp"}'), 1);
  assert.equal(samples.get('sync_http_429_total{api="ometria"}'), 0);
  assert.match(text, /\n# TYPE sync_run_duration_seconds summary\n/);
  assert.match(
    text,
    /^# HELP sync_members_synced_total .+\n# TYPE sync_members_synced_total counter\n/,
  );
  // Every family is declared once, and only the process's own (the state's are not here).
  const types = text.split("\n").filter((l) => l.startsWith("# TYPE ")).map((l) => l.split(" ")[2]);
  assert.equal(new Set(types).size, types.length);
  // Families with nothing counted yet are left out.
  const empty = ["sync_webhook_events_total", "sync_fields_dropped_total"];
  assert.deepEqual(types, PROCESS_FAMILIES.filter((f) => !empty.includes(f)));
});

Deno.test("Metrics.render() covers every one of 10,000 connections", () => {
  const metrics = new Metrics();
  for (let i = 0; i < 10_000; i++) {
    metrics.recordRun(`connection-${i}`, { pushed: i, durationMs: 1234, ok: i % 3 !== 0 });
  }
  const text = metrics.render();
  assert.equal(
    parseSamples(text).get('sync_members_synced_total{connection="connection-9999"}'),
    9999,
  );
  assert.equal(text.match(/^sync_run_failures_total\{/gm)?.length, 10_000);
});

Deno.test("serveMetrics() serves the status routes over HTTP: the state's gauges and the process's counters", async () => {
  const sample = await statusPageSample();
  const metrics = new Metrics();
  metrics.recordRun("shop-uk", { pushed: 7, durationMs: 10, ok: true });
  let healthy = true;
  const server = serveMetrics({
    metrics,
    port: 0,
    health: () => (healthy ? { ok: true } : { ok: false, detail: { state: "unwritable" } }),
    status: { rows: () => sample.rows(), clock: sample.clock },
  });
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const m = await fetch(new URL("metrics", server.url));
    assert.equal(m.status, 200);
    assert.equal(m.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const samples = parseSamples(await m.text());
    assert.equal(samples.get('sync_connection_behind{connection="shop-eu"}'), 1);
    assert.equal(samples.get('sync_connection_threshold_seconds{connection="outlet"}'), 3600);
    assert.equal(samples.get('sync_connection_quarantined_members{connection="outlet"}'), 3);
    assert.equal(samples.get('sync_members_synced_total{connection="shop-uk"}'), 7);

    // The daemon serves /status.json too, as Deploy does.
    const json = await fetch(new URL("status.json", server.url));
    assert.equal(json.status, 200);
    const report = await json.json();
    assert.deepEqual(report.connections.map((c: { id: string }) => c.id), [
      "shop-uk",
      "shop-eu",
      "outlet",
      "newsletter",
      "vip-club",
      "shop-de",
    ]);

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

/** The families an exposition text declares (`# TYPE` lines), in order. */
function families(text: string): string[] {
  return text.split("\n").filter((l) => l.startsWith("# TYPE ")).map((l) => l.split(" ")[2]!);
}

Deno.test("the daemon's /metrics and Deploy's carry the same names for the same facts", async () => {
  const { daemon, deploy } = await bothExpositions();
  {
    // Deploy's families are exactly the daemon's but for the process's counters…
    assert.deepEqual(
      families(deploy),
      families(daemon).filter((f) => !PROCESS_FAMILIES.includes(f)),
    );
    assert.ok(families(daemon).some((f) => PROCESS_FAMILIES.includes(f)));
    // …and every sample of Deploy's is the daemon's, name, labels and value.
    const daemonSamples = parseSamples(daemon);
    for (const [name, value] of parseSamples(deploy)) {
      assert.equal(daemonSamples.get(name), value, name);
    }
    for (
      const family of [
        "sync_connection_quarantined_members",
        "sync_connection_threshold_seconds",
        "sync_connection_status",
        "sync_last_run_success",
        "sync_webhook_last_received_timestamp_seconds",
      ]
    ) {
      assert.ok(families(daemon).includes(family), family);
    }
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
