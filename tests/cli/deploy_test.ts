/**
 * The Deploy branch of main.ts, run as a process with `DENO_DEPLOYMENT_ID` set, its state in
 * a Deno KV file and the simulators in this process. A cron fires only on its schedule, so
 * the tick is started with `SYNC_TICK_AT_START=1`; these wait on a real subprocess, so they
 * poll briefly instead of using the fake clock.
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { compareCopies } from "../../lib/sim/compare.ts";
import { statusReportSchema } from "../../lib/freshness/status_report.ts";
import { runCli, simulatorEnv, spawnCli } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";
import { until } from "../_helpers/until.ts";

const LIST = "deploy0001";
const MINUTE = 60_000;
// Deno.serve's default interface is 0.0.0.0, as on Deploy; the test reaches it on loopback.
const PERMISSIONS = [
  "--allow-net=127.0.0.1,0.0.0.0",
  "--allow-env",
  "--allow-read",
  "--allow-write",
];

async function world(members: number, ometriaLatencyMs = 0) {
  const w = await startCliWorld({
    prefix: "deploy_test_",
    mailchimp: { latencyMs: 2 },
    ometria: { latencyMs: ometriaLatencyMs },
  });
  w.mailchimp.addList(LIST, { members, seed: 4, lastChangedTo: Date.now() - 10 * MINUTE });
  const kvPath = `${w.dir}/state.kv`;
  return {
    ...w,
    kvPath,
    env: {
      ...w.env,
      DENO_DEPLOYMENT_ID: "test-deployment",
      SYNC_LIST_IDS: LIST,
      SYNC_STATE: `kv:${kvPath}`,
      SYNC_TICK_AT_START: "1",
      STATUS_TOKEN,
      PORT: "0",
      // Would start a listener per tick before; on Deploy it must be left alone.
      METRICS_PORT: "1",
      BULK_MEMBER_COUNT: "100",
      MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
      OMETRIA_MAX_REQUESTS_PER_SECOND: "1000",
    },
  };
}

/** The Deploy entry as a child process, with its stderr collected as it arrives. */
function startDeployChild(env: Record<string, string>) {
  const child = spawnCli([], env, { permissions: PERMISSIONS });
  let stderr = "";
  const reading = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) stderr += text;
  })();
  return {
    child,
    get stderr() {
      return stderr;
    },
    async url(): Promise<string> {
      await until(() => /on [^\s:]+:\d+/.test(stderr), "the HTTP handler to listen");
      return `http://127.0.0.1:${/on [^\s:]+:(\d+)/.exec(stderr)![1]}`;
    },
    async exited() {
      const status = await child.status;
      await reading;
      await child.stdout.cancel();
      return status;
    },
  };
}

const STATUS_TOKEN = "deploy-status-token-0123";

async function get(url: string): Promise<{ status: number; type: string; body: string }> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${STATUS_TOKEN}` } });
  return {
    status: response.status,
    type: response.headers.get("content-type") ?? "",
    body: await response.text(),
  };
}

Deno.test("main.ts on Deploy: a tick syncs into KV, one handler serves health, status and metrics from it, SIGINT stops it", async () => {
  const w = await world(300);
  const app = startDeployChild(w.env);
  try {
    const base = await app.url();
    const health = await get(`${base}/healthz`);
    assert.equal(health.status, 200, app.stderr);
    assert.deepEqual(JSON.parse(health.body), { ok: true });

    await until(async () => {
      const report = statusReportSchema.parse(JSON.parse((await get(`${base}/status.json`)).body));
      return report.connections[0]?.status === "ok";
    }, "the tick to finish");
    const c = compareCopies(w.mailchimp.truth(LIST), w.ometria.contacts(collectionFor(LIST)), LIST);
    assert.deepEqual([c.missing.length, c.stale.length], [0, 0]);

    const status = await get(`${base}/status.json`);
    assert.match(status.type, /application\/json/);
    const served = statusReportSchema.parse(JSON.parse(status.body));
    assert.equal(served.connections[0]?.last_run?.pushed, 300);
    assert.equal(served.connections[0]?.behind, false);

    const metrics = await get(`${base}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.type, /^text\/plain; version=0\.0\.4/);
    assert.match(metrics.body, new RegExp(`sync_connection_behind\\{connection="${LIST}"\\} 0\\n`));
    assert.match(metrics.body, new RegExp(`sync_last_run_success\\{connection="${LIST}"\\} 1\\n`));
    assert.match(
      metrics.body,
      new RegExp(`sync_last_run_members\\{connection="${LIST}",kind="pushed"\\} 300\\n`),
    );
    assert.match(metrics.body, /sync_connection_quarantined_members\{connection="deploy0001"\} 0/);

    const page = await get(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.type, /^text\/html/);
    assert.match(page.body, new RegExp(`data-id="${LIST}"`));
    const anonymous = await fetch(`${base}/status.json`);
    await anonymous.body?.cancel();
    assert.equal(anonymous.status, 401);

    for (const body of [health.body, status.body, metrics.body, page.body, app.stderr]) {
      assert.ok(!body.includes(w.mailchimp.apiKey), "no Mailchimp key");
      assert.ok(!body.includes(w.ometria.apiKey), "no Ometria key");
      assert.ok(!body.includes(STATUS_TOKEN), "no status token");
    }
    assert.equal((await get(`${base}/nope`)).status, 404);
    const post = await fetch(`${base}/healthz`, { method: "POST" });
    await post.body?.cancel();
    assert.equal(post.status, 405);

    const stopAsked = Date.now();
    app.child.kill("SIGINT");
    const exit = await app.exited();
    assert.equal(exit.code, 0, app.stderr);
    assert.ok(Date.now() - stopAsked < 5_000, "stopped before Deploy's 5 s kill");
    assert.match(app.stderr, /METRICS_PORT is not used on Deno Deploy/);

    // The same document `status --json` prints from the same KV (lags may have ticked on).
    const cli = await runCli(
      ["status", "--json", "--state", `kv:${w.kvPath}`, LIST],
      simulatorEnv(w.mailchimp, w.ometria),
    );
    assert.equal(cli.code, 0, cli.stderr);
    const printed = statusReportSchema.parse(JSON.parse(cli.stdout));
    const withoutLag = (r: typeof printed) =>
      r.connections.map((entry) => ({ ...entry, lag_seconds: null }));
    assert.deepEqual(withoutLag(printed), withoutLag(served));
  } finally {
    try {
      app.child.kill("SIGKILL");
    } catch { /* already exited */ }
    await app.exited();
    await w.close();
  }
});

Deno.test("main.ts on Deploy: SIGINT in the middle of a run exits within 5 s and releases the lease", async () => {
  // Ometria answers slowly, so batches are in flight when the signal arrives.
  const w = await world(30_000, 2_000);
  const app = startDeployChild(w.env);
  try {
    await app.url();
    await until(() => w.ometria.stats.requests >= 2, "the tick to push");
    const stopAsked = Date.now();
    app.child.kill("SIGINT");
    const exit = await app.exited();
    const took = Date.now() - stopAsked;
    assert.equal(exit.code, 0, app.stderr);
    assert.ok(took < 5_000, `stopped before Deploy's 5 s kill (${took} ms)`);
    assert.ok(w.ometria.stats.recordsReceived < 30_000, "it stopped in the middle of the run");

    const kv = await Deno.openKv(w.kvPath);
    try {
      assert.equal((await kv.get(["leases", LIST])).value, null, "the lease was given back");
      const state = (await kv.get<{ run: { cursor: string | null } | null }>(
        ["connections", LIST],
      )).value;
      assert.ok(state?.run, "the checkpoint of the interrupted run was saved");
    } finally {
      kv.close();
    }
  } finally {
    try {
      app.child.kill("SIGKILL");
    } catch { /* already exited */ }
    await app.exited();
    await w.close();
  }
});

Deno.test("main.ts on Deploy with a bad configuration answers /healthz 503 naming the problem, not the keys", async () => {
  const w = await world(1);
  const env: Record<string, string> = { ...w.env, SYNC_TICK_AT_START: "1" };
  delete env.OMETRIA_API_KEY;
  const app = startDeployChild(env);
  try {
    const base = await app.url();
    const health = await get(`${base}/healthz`);
    assert.equal(health.status, 503);
    const body = JSON.parse(health.body) as { ok: boolean; detail: string[] };
    assert.equal(body.ok, false);
    assert.match(body.detail.join("\n"), /OMETRIA_API_KEY/);
    assert.ok(!health.body.includes(w.mailchimp.apiKey));
    await until(() => /Tick skipped/.test(app.stderr), "the tick to be skipped");
    app.child.kill("SIGINT");
    assert.equal((await app.exited()).code, 0, app.stderr);
  } finally {
    try {
      app.child.kill("SIGKILL");
    } catch { /* already exited */ }
    await app.exited();
    await w.close();
  }
});
