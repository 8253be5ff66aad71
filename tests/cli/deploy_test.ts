/**
 * The Deno Deploy entry as the platform runs it: the entrypoint deno.json names, with
 * `--allow-all` and no other flag (docs.deno.com/deploy/reference/runtime/), the platform's
 * variables (`DENO_DEPLOY`, `DENO_TIMELINE`), its KV database through
 * `DENO_KV_DEFAULT_PATH` (a file here), and its cron side played over the runtime's cron
 * socket (tests/_helpers/cron_platform.ts): the cron must be registered before the HTTP
 * handler serves, and runs when the platform invokes it. The simulators run in this
 * process. These wait on a real subprocess, so they poll briefly instead of using the fake
 * clock.
 */
import assert from "node:assert/strict";
import { DEPLOY_CRON_NAME } from "../../lib/app/deploy.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { compareCopies } from "../../lib/sim/compare.ts";
import { statusReportSchema } from "../../lib/freshness/status_report.ts";
import { ROOT, runCli, simulatorEnv, spawnCli } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";
import { CronPlatform } from "../_helpers/cron_platform.ts";
import { until } from "../_helpers/until.ts";

const LIST = "deploy0001";
const MINUTE = 60_000;
/** What Deploy runs: deno.json's `deploy.runtime.entrypoint`. */
const ENTRYPOINT: string =
  JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).deploy.runtime.entrypoint;
// Deploy runs an app with --allow-all and takes no other flag: the unstable cron and KV
// APIs must come from deno.json's "unstable".
const PERMISSIONS = ["--allow-all"];

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
      DENO_DEPLOY: "1",
      DENO_DEPLOYMENT_ID: "test-deployment",
      DENO_TIMELINE: "production",
      // Where Deno.openKv() finds the app's database on Deploy, with SYNC_STATE left unset.
      DENO_KV_DEFAULT_PATH: kvPath,
      SYNC_LIST_IDS: LIST,
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
function startDeployChild(env: Record<string, string>, entry = ENTRYPOINT) {
  const child = spawnCli([], env, { permissions: PERMISSIONS, entry, cwd: ROOT });
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
    kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
    },
  };
}

/** Runs `body` with the Deploy entry started on `env`, and kills whatever is left after it. */
async function withApp(
  env: Record<string, string>,
  body: (app: ReturnType<typeof startDeployChild>) => Promise<void>,
  entry = ENTRYPOINT,
): Promise<void> {
  const app = startDeployChild(env, entry);
  try {
    await body(app);
  } finally {
    app.kill();
    await app.exited();
  }
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

/** Runs the cron as the platform does and waits for the run's result. */
async function invokeCron(platform: CronPlatform): Promise<boolean | undefined> {
  const before = platform.results(DEPLOY_CRON_NAME).length;
  await platform.invoke(DEPLOY_CRON_NAME);
  await until(() => platform.results(DEPLOY_CRON_NAME).length > before, "the cron's result");
  return platform.results(DEPLOY_CRON_NAME)[before];
}

Deno.test("the Deploy entry registers its cron at the top level; an invocation syncs into KV; one handler serves health, status and metrics from it; SIGINT stops it", async () => {
  const w = await world(300);
  const platform = CronPlatform.start();
  await withApp({ ...w.env, ...platform.env }, async (app) => {
    const base = await app.url();
    await until(() => platform.registered.length > 0, "the cron's registration");
    // Deploy has read the revision's crons once the server is up: none may come later.
    await platform.rejectNewCrons("the revision's crons have been read");
    assert.deepEqual(platform.registered, [{ name: DEPLOY_CRON_NAME, schedule: "* * * * *" }]);
    const health = await get(`${base}/healthz`);
    assert.equal(health.status, 200, app.stderr);
    assert.deepEqual(JSON.parse(health.body), { ok: true });

    assert.equal(await invokeCron(platform), true, app.stderr);
    const c = compareCopies(w.mailchimp.truth(LIST), w.ometria.contacts(collectionFor(LIST)), LIST);
    assert.deepEqual([c.missing.length, c.stale.length], [0, 0]);

    const status = await get(`${base}/status.json`);
    assert.match(status.type, /application\/json/);
    const served = statusReportSchema.parse(JSON.parse(status.body));
    assert.equal(served.connections[0]?.status, "ok");
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
  }).finally(async () => {
    await platform.close();
    await w.close();
  });
});

Deno.test("a branch deployment's cron syncs nothing unless SYNC_ON_BRANCHES says so, and /healthz says why", async () => {
  const w = await world(50);
  for (const optIn of [false, true]) {
    const platform = CronPlatform.start();
    const env = {
      ...w.env,
      ...platform.env,
      DENO_TIMELINE: "git-branch/feature-x",
      ...(optIn ? { SYNC_ON_BRANCHES: "1" } : {}),
    };
    await withApp(env, async (app) => {
      const base = await app.url();
      await until(() => platform.registered.length > 0, "the cron's registration");
      assert.equal(await invokeCron(platform), true, app.stderr);
      const health = JSON.parse((await get(`${base}/healthz`)).body);
      if (optIn) {
        assert.deepEqual(health, { ok: true });
        assert.equal(w.ometria.stats.recordsReceived, 50, app.stderr);
      } else {
        assert.equal(health.ok, true);
        assert.match(health.detail, /branch feature-x \(DENO_TIMELINE=git-branch\/feature-x\)/);
        assert.match(health.detail, /SYNC_ON_BRANCHES=1/);
        assert.match(app.stderr, /Not syncing: this is the deployment of branch feature-x/);
        assert.equal(w.mailchimp.stats.requests, 0, "nothing read");
        assert.equal(w.ometria.stats.requests, 0, "nothing pushed");
      }
      app.child.kill("SIGINT");
      assert.equal((await app.exited()).code, 0, app.stderr);
    }).finally(() => platform.close());
  }
  await w.close();
});

Deno.test("the Deploy entry: SIGINT in the middle of a run exits within 5 s and releases the lease", async () => {
  // Ometria answers slowly, so batches are in flight when the signal arrives.
  const w = await world(30_000, 2_000);
  try {
    await withApp({ ...w.env, SYNC_TICK_AT_START: "1" }, async (app) => {
      await app.url();
      await until(() => w.ometria.stats.requests >= 2, "the tick to push");
      const stopAsked = Date.now();
      app.child.kill("SIGINT");
      const exit = await app.exited();
      const took = Date.now() - stopAsked;
      assert.equal(exit.code, 0, app.stderr);
      assert.ok(took < 5_000, `stopped before Deploy's 5 s kill (${took} ms)`);
      assert.ok(w.ometria.stats.recordsReceived < 30_000, "it stopped in the middle of the run");
    });
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
    await w.close();
  }
});

Deno.test("the Deploy entry answers /healthz 503 naming what is wrong, never a key", async (t) => {
  const w = await world(1);
  try {
    await t.step(
      "a key missing (main.ts as the entrypoint still works, and says to use deploy.ts)",
      async () => {
        const env: Record<string, string> = { ...w.env, SYNC_TICK_AT_START: "1" };
        delete env.OMETRIA_API_KEY;
        await withApp(env, async (app) => {
          const health = await get(`${await app.url()}/healthz`);
          assert.equal(health.status, 503);
          const body = JSON.parse(health.body) as { ok: boolean; detail: string[] };
          assert.equal(body.ok, false);
          assert.match(body.detail.join("\n"), /OMETRIA_API_KEY/);
          assert.ok(!health.body.includes(w.mailchimp.apiKey));
          await until(() => /Tick skipped/.test(app.stderr), "the tick to be skipped");
          assert.match(app.stderr, /on Deno Deploy make deploy\.ts the entrypoint/);
          app.child.kill("SIGINT");
          assert.equal((await app.exited()).code, 0, app.stderr);
        }, "main.ts");
      },
    );
    await t.step("no KV database attached to the app", async () => {
      // What Deploy sets for an app without a database (denoland/deno ext/kv/dynamic.rs).
      const env: Record<string, string> = {
        ...w.env,
        DENO_KV_REQUIRES_DISTRIBUTED_DATABASE: "error",
      };
      delete env.DENO_KV_DEFAULT_PATH;
      await withApp(env, async (app) => {
        const health = await get(`${await app.url()}/healthz`);
        assert.equal(health.status, 503, health.body);
        assert.match(health.body, /no KV database is attached to this app/);
      });
    });
  } finally {
    await w.close();
  }
});

Deno.test("the Deploy cron polls Ometria's unsubscribes with OPTOUT_BACK: one made in Ometria reaches Mailchimp in the next invocation", async () => {
  const w = await world(20);
  const platform = CronPlatform.start();
  try {
    await withApp({ ...w.env, ...platform.env, OPTOUT_BACK: "1" }, async (app) => {
      await app.url();
      await until(() => platform.registered.length > 0, "the cron's registration");
      assert.equal(await invokeCron(platform), true, app.stderr);
      const member = w.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;
      // Made a moment ago: a tick reads Ometria's listing up to its own second.
      w.ometria.privacy.unsubscribe(member.email_address, { atMs: Date.now() - 2_000 });
      assert.equal(await invokeCron(platform), true, app.stderr);
      assert.equal(w.mailchimp.truth(LIST).find((m) => m.id === member.id)?.status, "unsubscribed");
      assert.equal(w.mailchimp.stats.memberWrites, 1);
      const contact = w.ometria.contacts(collectionFor(LIST)).get(member.id);
      assert.equal(contact?.marketing_optin, "EXPLICITLY_OPTEDOUT");
      assert.ok(!app.stderr.includes(member.email_address), "no address in the log");
      app.child.kill("SIGINT");
      assert.equal((await app.exited()).code, 0, app.stderr);
    });
  } finally {
    await platform.close();
    await w.close();
  }
});
