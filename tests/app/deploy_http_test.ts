import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import type { ConnectionConfig } from "../../lib/config/config.ts";
import { deployHandler } from "../../lib/app/deploy_http.ts";
import { statusRows } from "../../lib/freshness/status_report.ts";
import { isDeploy } from "../../lib/app/deploy.ts";
import { buildStatusReport } from "../../lib/freshness/status_report.ts";
import { KvStore } from "../../lib/state/kv_store.ts";
import { newConnectionState } from "../../lib/state/schema.ts";
import { record } from "../../lib/state/transitions.ts";
import { withTempDir } from "../state/_helpers.ts";

const SECRET_MC = "mailchimp-secret-key-us9";
const SECRET_OM = "ometria-secret-key";

function connection(id: string, thresholdSeconds = 3600): ConnectionConfig {
  return {
    id,
    listId: `list-${id}`,
    mailchimp: { apiKey: SECRET_MC, baseUrl: "http://127.0.0.1:1/3.0" },
    ometria: { apiKey: SECRET_OM, baseUrl: "http://127.0.0.1:2", endpoint: "push" },
    thresholdSeconds,
  };
}

const STATUS_TOKEN = "status-token-for-tests";

const config = {
  connections: [connection("a"), connection("b", 60), connection("c")],
  thresholdMinutes: 60,
  statusToken: STATUS_TOKEN,
};

/** Builds the state of a/b/c in `store`: a synced, b failing and behind, c never run. */
async function seed(store: KvStore, clock: FakeClock): Promise<void> {
  const t0 = clock.now();
  const a = { id: "a", listId: "list-a" };
  await record(store, a, { type: "run-started", at: t0, thresholdSeconds: 3600 });
  await record(store, a, {
    type: "run-completed",
    upperMs: t0 - 60_000,
    error: null,
    summary: {
      started_at: new Date(t0).toISOString(),
      finished_at: new Date(t0 + 2_500).toISOString(),
      outcome: "ok",
      read: 120,
      pushed: 118,
      rejected: 0,
      duration_ms: 2_500,
      mailchimp_requests: 2,
      ometria_requests: 2,
    },
  });
  await record(store, a, {
    type: "quarantine",
    at: t0,
    add: [{ id: "m1", reason: "too large" }, { id: "m2", reason: "too large" }],
    release: [],
  });
  const b = { id: "b", listId: "list-b" };
  await record(store, b, { type: "run-started", at: t0, thresholdSeconds: 60 });
  await record(store, b, {
    type: "run-failed",
    at: t0,
    run: null,
    error: "Mailchimp answered 503",
    summary: {
      started_at: new Date(t0).toISOString(),
      finished_at: new Date(t0 + 1_000).toISOString(),
      outcome: "failed",
      read: 0,
      pushed: 0,
      rejected: 0,
      duration_ms: 1_000,
      mailchimp_requests: 1,
      ometria_requests: 0,
    },
  });
  await clock.tick(10 * 60_000);
}

async function call(handler: (r: Request) => Promise<Response>, path: string, method = "GET") {
  const response = await handler(
    new Request(`http://deploy.test${path}`, {
      method,
      headers: { authorization: `Bearer ${STATUS_TOKEN}` },
    }),
  );
  return { status: response.status, headers: response.headers, body: await response.text() };
}

Deno.test("deployHandler() serves the status --json document built from KV", async () => {
  await withTempDir(async (dir) => {
    const clock = new FakeClock();
    const store = await KvStore.open(`${dir}/state.kv`, { clock });
    try {
      await seed(store, clock);
      const handler = deployHandler({ store, clock, config });
      const res = await call(handler, "/status.json");
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("cache-control"), "no-store");
      const expected = buildStatusReport(statusRows(await store.list(), config), clock.now());
      assert.deepEqual(JSON.parse(res.body), expected);
      assert.deepEqual(
        expected.connections.map((c) => [c.id, c.status, c.behind, c.lag_seconds]),
        [["a", "ok", false, 660], ["b", "failed", true, 600], ["c", "never", false, null]],
      );
      assert.ok(!res.body.includes(SECRET_MC) && !res.body.includes(SECRET_OM));
    } finally {
      await store.close();
    }
  });
});

Deno.test("deployHandler() computes /metrics from KV state, not from process counters", async () => {
  await withTempDir(async (dir) => {
    const clock = new FakeClock();
    const path = `${dir}/state.kv`;
    const writer = await KvStore.open(path, { clock });
    await seed(writer, clock);
    await writer.close();
    // Another isolate: a store opened afresh, which ran nothing itself.
    const store = await KvStore.open(path, { clock });
    try {
      const res = await call(deployHandler({ store, clock, config }), "/metrics");
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
      const samples = res.body.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
      for (
        const line of [
          'sync_connection_lag_seconds{connection="a"} 660',
          'sync_connection_lag_seconds{connection="b"} 600',
          'sync_connection_behind{connection="a"} 0',
          'sync_connection_behind{connection="b"} 1',
          'sync_connection_behind{connection="c"} 0',
          'sync_connection_threshold_seconds{connection="b"} 60',
          'sync_connection_status{connection="b",status="failed"} 1',
          'sync_connection_status{connection="b",status="ok"} 0',
          'sync_connection_status{connection="c",status="never"} 1',
          'sync_connection_consecutive_failures{connection="b"} 1',
          'sync_connection_quarantined_members{connection="a"} 2',
          'sync_connection_quarantined_members{connection="c"} 0',
          'sync_last_run_success{connection="a"} 1',
          'sync_last_run_success{connection="b"} 0',
          'sync_last_run_duration_seconds{connection="a"} 2.5',
          'sync_last_run_members{connection="a",kind="pushed"} 118',
          `sync_connection_fresh_as_of_timestamp_seconds{connection="a"} ${
            Date.UTC(2026, 0, 1) / 1000 - 60
          }`,
          "sync_connections_behind 1",
        ]
      ) assert.ok(samples.includes(line), `missing: ${line}\n${res.body}`);
      assert.ok(
        !samples.some((l) => l.startsWith('sync_connection_lag_seconds{connection="c"}')),
        "no lag for a connection never run",
      );
      assert.ok(!res.body.includes("503"), "error texts stay out of the labels");
      assert.ok(!res.body.includes(SECRET_MC) && !res.body.includes(SECRET_OM));
    } finally {
      await store.close();
    }
  });
});

Deno.test("deployHandler() answers /healthz, 404, 405, and 503 for unreadable state", async () => {
  await withTempDir(async (dir) => {
    const clock = new FakeClock();
    const path = `${dir}/state.kv`;
    const kv = await Deno.openKv(path);
    await kv.set(["connections", "a"], { id: "a", watermark: 5 });
    kv.close();
    const store = await KvStore.open(path, { clock });
    try {
      let ok = true;
      const handler = deployHandler({
        store,
        clock,
        config,
        health: () => ok ? { ok } : { ok, detail: "stopping" },
      });
      assert.deepEqual(await call(handler, "/healthz").then((r) => [r.status, r.body]), [
        200,
        '{"ok":true}',
      ]);
      ok = false;
      assert.deepEqual(await call(handler, "/healthz").then((r) => [r.status, r.body]), [
        503,
        '{"ok":false,"detail":"stopping"}',
      ]);
      assert.equal((await call(handler, "/nope")).status, 404);
      const post = await call(handler, "/metrics", "POST");
      assert.equal(post.status, 405);
      assert.equal(post.headers.get("allow"), "GET, HEAD");
      for (const path of ["/status.json", "/metrics"]) {
        const res = await call(handler, path);
        assert.equal(res.status, 503);
        assert.match(JSON.parse(res.body).error, /Cannot read the state: .*connection a .*damaged/);
      }
    } finally {
      await store.close();
    }
  });
});

Deno.test("statusRows() prefers the stored threshold and lists stored states when none is configured", () => {
  const state = buildStateLike("a", 120);
  assert.deepEqual(
    statusRows([state], { connections: [connection("a", 3600)], thresholdMinutes: 60 })
      .map((r) => r.threshold_seconds),
    [120],
  );
  assert.deepEqual(
    statusRows([state, buildStateLike("z", null)], { connections: [], thresholdMinutes: 5 })
      .map((r) => [r.id, r.threshold_seconds]),
    [["a", 120], ["z", 300]],
  );
});

function buildStateLike(id: string, threshold: number | null) {
  return { ...newConnectionState(id, `list-${id}`), threshold_seconds: threshold };
}

Deno.test("isDeploy() is true when DENO_DEPLOYMENT_ID or DENO_DEPLOY is set", async (t) => {
  for (
    const [env, expected] of [
      [{}, false],
      [{ DENO_DEPLOYMENT_ID: "abc123" }, true],
      [{ DENO_DEPLOY: "1" }, true],
      [{ DENO_DEPLOYMENT_ID: "", DENO_DEPLOY: "" }, false],
    ] as const
  ) {
    await t.step(JSON.stringify(env), () => assert.equal(isDeploy(env), expected));
  }
});
