import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import type { StatusRow } from "../../lib/freshness/status_report.ts";
import { Metrics, serveMetrics } from "../../lib/metrics/metrics.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import { type ConnectionState, newConnectionState } from "../../lib/state/schema.ts";
import { nextState, record } from "../../lib/state/transitions.ts";
import { renderStatusPage, statusPageResponse } from "../../lib/status_page/status_page.ts";
import {
  buildStatusPageView,
  parseStatusPageQuery,
  STATUS_PAGE_SIZE,
} from "../../lib/status_page/status_page_view.ts";
import { failedRun } from "../_helpers/run_events.ts";
import { statusPageSample } from "./_sample.ts";

const NOW = Date.UTC(2026, 0, 1, 12);
const MIN = 60_000;
const ALL = { page: 1, q: "", behind: false, failed: false };

/** A state whose last completed run made it fresh `minutesAgo` minutes before NOW. */
function freshState(id: string, minutesAgo: number): ConnectionState {
  const started = newConnectionState(id, `list-${id}`);
  return nextState(started, {
    type: "run-completed",
    upperMs: NOW - minutesAgo * MIN,
    error: null,
    summary: {
      started_at: new Date(NOW - minutesAgo * MIN).toISOString(),
      finished_at: new Date(NOW - minutesAgo * MIN + 1000).toISOString(),
      outcome: "ok",
      read: 10,
      pushed: 10,
      rejected: 0,
      duration_ms: 1000,
      mailchimp_requests: 1,
      ometria_requests: 1,
    },
  });
}

function row(id: string, minutesAgo: number | null, thresholdMinutes = 60): StatusRow {
  return {
    id,
    list_id: `list-${id}`,
    threshold_seconds: thresholdMinutes * 60,
    state: minutesAgo === null ? undefined : freshState(id, minutesAgo),
  };
}

/** Rendered rows' connection ids, in order, and which are marked behind. */
function shownRows(html: string): { id: string; behind: boolean }[] {
  return [...html.matchAll(/<tr( class="[^"]*")? data-id="([^"]*)"( data-behind="1")?>/g)]
    .map((m) => ({ id: m[2]!, behind: m[3] !== undefined }));
}

Deno.test("parseStatusPageQuery() reads page, q, behind and failed, and falls back on nonsense", () => {
  const parse = (qs: string) => parseStatusPageQuery(new URLSearchParams(qs));
  assert.deepEqual(parse(""), ALL);
  assert.deepEqual(parse("page=3&q=%20shop%20&behind=1"), {
    page: 3,
    q: "shop",
    behind: true,
    failed: false,
  });
  assert.deepEqual(parse("failed=1"), { ...ALL, failed: true });
  assert.deepEqual(parse("page=-2&behind=no"), ALL);
  assert.deepEqual(parse("page=2.5"), ALL);
  assert.deepEqual(parse("page=abc"), ALL);
  assert.equal(parse(`q=${"x".repeat(5000)}`).q.length, 200);
});

Deno.test("buildStatusPageView() puts behind connections first, worst first, the rest in configuration order", () => {
  const rows = [
    row("a", 10),
    row("late-a-bit", 70),
    row("b", null),
    row("late-a-lot", 300),
    row("c", 5),
  ];
  const view = buildStatusPageView(rows, NOW, ALL);
  assert.deepEqual(view.rows.map((r) => [r.id, r.behind]), [
    ["late-a-lot", true],
    ["late-a-bit", true],
    ["a", false],
    ["b", false],
    ["c", false],
  ]);
  assert.deepEqual([view.total, view.behind, view.matched, view.page, view.pages], [5, 2, 5, 1, 1]);

  const onlyBehind = buildStatusPageView(rows, NOW, { ...ALL, behind: true });
  assert.deepEqual(onlyBehind.rows.map((r) => r.id), ["late-a-lot", "late-a-bit"]);
  assert.equal(onlyBehind.behind, 2, "totals count every connection, not only the shown");
  const filtered = buildStatusPageView(rows, NOW, { ...ALL, q: "LATE-A-B" });
  assert.deepEqual(filtered.rows.map((r) => r.id), ["late-a-bit"]);
  assert.deepEqual(buildStatusPageView(rows, NOW, { ...ALL, q: "list-c" }).rows.map((r) => r.id), [
    "c",
  ]);
});

Deno.test("buildStatusPageView() carries quarantine, orphans and the last webhook with its delivery lag", async () => {
  const sample = await statusPageSample(NOW);
  const view = buildStatusPageView(await sample.rows(), NOW, ALL);
  const byId = new Map(view.rows.map((r) => [r.id, r]));
  assert.equal(view.rows[0]!.id, "shop-eu");
  assert.equal(byId.get("outlet")!.quarantined, 3);
  assert.equal(byId.get("outlet")!.orphans, 12);
  assert.equal(byId.get("shop-uk")!.orphans, null);
  assert.deepEqual(byId.get("shop-uk")!.webhook, {
    received_at: new Date(NOW - 20_000).toISOString(),
    delivery_lag_seconds: 0.8,
    type: "profile",
    count: 1,
  });
  assert.equal(byId.get("newsletter")!.webhook, null);
  assert.equal(byId.get("newsletter")!.status, "never");
  assert.equal(byId.get("shop-uk")!.list_name, null, "the state carries no list name yet");
  assert.deepEqual([view.total, view.behind, view.failed, view.quarantined], [6, 1, 2, 3]);
});

Deno.test("renderStatusPage() escapes ids, errors, webhook types and the filter", () => {
  const evil = `<script>alert("x")</script>`;
  const failed = nextState(newConnectionState(evil, `"'><img src=x onerror=alert(1)>`), {
    type: "run-failed",
    at: NOW - MIN,
    run: null,
    error: `<iframe src="javascript:alert(2)">&amp;`,
    summary: {
      started_at: new Date(NOW - 2 * MIN).toISOString(),
      finished_at: new Date(NOW - MIN).toISOString(),
      outcome: "failed",
      read: 0,
      pushed: 0,
      rejected: 0,
      duration_ms: 60_000,
      mailchimp_requests: 1,
      ometria_requests: 0,
    },
  });
  const hooked = nextState(failed, {
    type: "webhook",
    at: NOW,
    firedAt: null,
    eventType: "<b>profile</b>",
  });
  const rows: StatusRow[] = [{
    id: evil,
    list_id: hooked.list_id,
    threshold_seconds: 60,
    state: hooked,
  }];
  const q = `"><script>alert(3)</script>`;
  const html = renderStatusPage(buildStatusPageView(rows, NOW, { ...ALL, q: "" }), {
    nonce: "n0nce",
  });
  const filteredHtml = renderStatusPage(buildStatusPageView(rows, NOW, { ...ALL, q }), {
    nonce: "n0nce",
  });
  for (const page of [html, filteredHtml]) {
    assert.equal(page.match(/<script/g)?.length, 1, "only the page's own script");
    assert.ok(!page.includes("<img"), "no injected image");
    assert.ok(!page.includes("<iframe"), "no injected frame");
    assert.ok(!page.includes("<b>profile"), "no injected markup");
  }
  assert.ok(html.includes("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
  assert.ok(html.includes("&lt;iframe src=&quot;javascript:alert(2)&quot;&gt;&amp;amp;"));
  assert.ok(html.includes("&quot;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;"));
  assert.ok(filteredHtml.includes(`value="&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;"`));
  assert.match(filteredHtml, /No connection matches this filter/);
});

Deno.test("renderStatusPage() marks a behind row in words and class, and shows the lag against the threshold", () => {
  const html = renderStatusPage(
    buildStatusPageView([row("fine", 10), row("late", 130)], NOW, ALL),
    { nonce: "n" },
  );
  assert.deepEqual(shownRows(html), [{ id: "late", behind: true }, { id: "fine", behind: false }]);
  assert.match(html, /<tr class="behind" data-id="late" data-behind="1">.*BEHIND/);
  assert.match(html, /<title>1 behind · Sync status<\/title>/);
  // 130 min of 60: past twice the threshold, so a full red bar; 10 of 60 is 1/12 of the track.
  assert.match(html, /data-id="late".*<i class="w20 bad">.*2h 10m of 1h/);
  assert.match(html, /data-id="fine".*<i class="w2 good">.*10m of 1h/);
  assert.match(html, /setInterval\(.*location\.reload\(\)\},5000\)/);
});

Deno.test("renderStatusPage() with 10,000 connections shows 100 small rows a page, behind ones first", () => {
  const rows: StatusRow[] = [];
  for (let i = 0; i < 10_000; i++) {
    // Every 271st connection is behind, scattered through the configuration.
    rows.push(row(`connection-${i}`, i % 271 === 0 ? 120 + (i % 7) : i % 50));
  }
  const behind = rows.filter((_, i) => i % 271 === 0).length;
  const first = renderStatusPage(buildStatusPageView(rows, NOW, ALL), { nonce: "n" });
  const shown = shownRows(first);
  assert.equal(shown.length, STATUS_PAGE_SIZE);
  assert.equal(shown.filter((r) => r.behind).length, behind);
  assert.ok(shown.slice(0, behind).every((r) => r.behind), "behind ones lead page 1");
  assert.ok(first.length < 80_000, `page 1 is ${first.length} bytes`);
  assert.match(first, /Page 1 of 100 \(10000\)/);
  assert.match(first, /href="\?page=2">next ›<\/a> <a href="\?page=100">last »<\/a>/);

  const last = renderStatusPage(buildStatusPageView(rows, NOW, { ...ALL, page: 100 }), {
    nonce: "n",
  });
  assert.equal(shownRows(last).at(-1)!.id, "connection-9999");
  assert.equal(shownRows(last).length, 100);
  const past = buildStatusPageView(rows, NOW, { ...ALL, page: 5000 });
  assert.equal(past.page, 100, "a page past the end shows the last");

  const search = buildStatusPageView(rows, NOW, { ...ALL, q: "connection-999" });
  assert.deepEqual(
    search.rows.map((r) => r.id),
    ["connection-999", ...Array.from({ length: 10 }, (_, i) => `connection-999${i}`)],
  );
  const behindOnly = renderStatusPage(
    buildStatusPageView(rows, NOW, { ...ALL, behind: true, q: "connection-2" }),
    { nonce: "n" },
  );
  assert.ok(shownRows(behindOnly).every((r) => r.behind && r.id.startsWith("connection-2")));
  assert.match(behindOnly, /matching of 10000/);
});

Deno.test("statusPageResponse() sends HTML with a nonce-only Content-Security-Policy", async () => {
  const response = statusPageResponse([row("a", 5)], NOW, new Request("http://x/?q=a"));
  assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(response.headers.get("cache-control"), "no-store");
  const csp = response.headers.get("content-security-policy")!;
  const nonce = /script-src 'nonce-([0-9a-f]+)'/.exec(csp)?.[1];
  assert.ok(nonce, csp);
  assert.match(csp, /default-src 'none'/);
  const html = await response.text();
  assert.ok(html.includes(`<script nonce="${nonce}">`));
  assert.ok(html.includes(`<style nonce="${nonce}">`));
  const again = statusPageResponse([row("a", 5)], NOW, new Request("http://x/"));
  await again.body?.cancel();
  assert.notEqual(again.headers.get("content-security-policy"), csp, "a nonce per response");
});

Deno.test("serveMetrics() serves the status page at / from the store over HTTP", async () => {
  const store = new MemoryStore();
  const clock = new FakeClock(NOW);
  const a = { id: "shop-a", listId: "list-a" };
  await record(store, a, { type: "run-started", at: NOW - 200 * MIN, thresholdSeconds: 3600 });
  const server = serveMetrics({
    metrics: new Metrics(),
    port: 0,
    health: () => ({ ok: true }),
    status: {
      rows: async () =>
        (await store.list()).map((s) => ({
          id: s.id,
          list_id: s.list_id,
          threshold_seconds: s.threshold_seconds ?? 3600,
          state: s,
        })),
      clock,
    },
  });
  try {
    const page = await fetch(server.url);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    const html = await page.text();
    assert.deepEqual(shownRows(html), [{ id: "shop-a", behind: true }]);

    // The page reads the store on every request: a later change shows at the next reload.
    await record(store, a, { type: "webhook", at: NOW, firedAt: NOW - 1500, eventType: "cleaned" });
    const later = await (await fetch(`${server.url}?q=shop`)).text();
    assert.match(later, /cleaned<div class="sub">delivered in 1\.5 s · 1 event/);

    const head = await fetch(server.url, { method: "HEAD" });
    await head.body?.cancel();
    assert.equal(head.status, 200);
    const post = await fetch(server.url, { method: "POST" });
    await post.body?.cancel();
    assert.equal(post.status, 405);
    const metrics = await fetch(`${server.url}metrics`);
    await metrics.body?.cancel();
    assert.equal(metrics.status, 200);
  } finally {
    await server.close();
  }
});

Deno.test("serveMetrics() answers 404 at / without a status page and 503 when the store fails", async () => {
  const plain = serveMetrics({ metrics: new Metrics(), port: 0, health: () => ({ ok: true }) });
  const broken = serveMetrics({
    metrics: new Metrics(),
    port: 0,
    health: () => ({ ok: true }),
    status: {
      rows: () => Promise.reject(new Error("state.json is damaged at connection a")),
      clock: new FakeClock(NOW),
    },
  });
  try {
    const missing = await fetch(plain.url);
    await missing.body?.cancel();
    assert.equal(missing.status, 404);
    const failing = await fetch(broken.url);
    assert.equal(failing.status, 503);
    assert.match(await failing.text(), /Cannot read the state: .*damaged at connection a/);
  } finally {
    await plain.close();
    await broken.close();
  }
});

/** A state whose only run failed a minute before NOW: it never completed. */
function failingState(id: string, fresh: ConnectionState | undefined): ConnectionState {
  return nextState(
    fresh ?? newConnectionState(id, `list-${id}`),
    failedRun(NOW - 2 * MIN, NOW - MIN, "Mailchimp rejected the API key (401)"),
  );
}

Deno.test("buildStatusPageView() puts failed connections right after the behind ones, on page 1", () => {
  const rows: StatusRow[] = Array.from({ length: 300 }, (_, i) => row(`c${i}`, 5));
  // Failing, configured far down the list: page 3 in configuration order.
  rows[250] = { ...rows[250]!, state: failingState("c250", rows[250]!.state) };
  rows[280] = row("c280", 90);
  const view = buildStatusPageView(rows, NOW, ALL);
  assert.deepEqual(view.rows.slice(0, 3).map((r) => [r.id, r.behind, r.status]), [
    ["c280", true, "ok"],
    ["c250", false, "failed"],
    ["c0", false, "ok"],
  ]);
  const failed = buildStatusPageView(rows, NOW, { ...ALL, failed: true });
  assert.deepEqual(failed.rows.map((r) => r.id), ["c250"]);
  const either = buildStatusPageView(rows, NOW, { ...ALL, failed: true, behind: true });
  assert.deepEqual(either.rows.map((r) => r.id), ["c280", "c250"]);
  const html = renderStatusPage(failed, { nonce: "n" });
  assert.match(html, /<input type="checkbox" name="failed" value="1" checked> failed/);
  assert.match(html, /<a class="n warn" href="\?failed=1">1 failed<\/a>/);
});

Deno.test("renderStatusPage() draws honest bars: never green for a list with nothing in Ometria", () => {
  const never = newConnectionState("first", "list-first");
  const running = nextState(never, {
    type: "run-started",
    at: NOW - 3 * MIN,
    thresholdSeconds: 3600,
  });
  const rows: StatusRow[] = [
    // Its only runs fail: nothing of it is in Ometria, however short its lag.
    {
      id: "failing",
      list_id: "l1",
      threshold_seconds: 3600,
      state: failingState("failing", undefined),
    },
    // Its first run is under way: not done, not failing either.
    { id: "first", list_id: "l2", threshold_seconds: 3600, state: running },
    // Fresh, but its last run failed.
    {
      id: "flaky",
      list_id: "l3",
      threshold_seconds: 3600,
      state: failingState("flaky", freshState("flaky", 5)),
    },
    // A minute and a second of a minute: behind, and it must read so.
    { ...row("short", 61 / 60, 1) },
  ];
  const html = renderStatusPage(buildStatusPageView(rows, NOW, ALL), { nonce: "n" });
  const cell = (id: string) =>
    new RegExp(`data-id="${id}".*?<i class="w\\d+ (\\w+)">`).exec(html)?.[1];
  assert.equal(cell("failing"), "bad");
  assert.match(html, /data-id="failing".*never complete · its runs fail/);
  assert.equal(cell("first"), "muted");
  assert.equal(cell("flaky"), "warn");
  assert.equal(cell("short"), "bad");
  assert.match(
    html,
    /data-id="short".*1m 1s of 1m<\/span><div class="sub"><span class="bad">1s over<\/span>/,
  );
});
