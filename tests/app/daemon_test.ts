/**
 * The daemon in-process: ticks come from the cron function it is handed, metrics are served
 * when METRICS_PORT is set, and a stop signal ends it cleanly.
 */
import assert from "node:assert/strict";
import { runCommand } from "../../lib/app/cli.ts";
import { loadConfig } from "../../lib/config/config.ts";
import { assertInSync, startWorld, T0 } from "../_helpers/world.ts";
import { until } from "../_helpers/until.ts";
import { captureLogs } from "../freshness/_helpers.ts";

const LIST = "daemon0001";

Deno.test("the daemon ticks now, then on cron, serves metrics and stops on a signal", async () => {
  const world = await startWorld();
  using logs = captureLogs();
  try {
    world.mailchimp.addList(LIST, { members: 40, lastChangedTo: T0 - 60_000 });
    const loaded = await loadConfig({
      env: {
        MAILCHIMP_API_KEY: world.mailchimp.apiKey,
        MAILCHIMP_BASE_URL: world.mailchimp.url,
        OMETRIA_API_KEY: world.ometria.apiKey,
        OMETRIA_BASE_URL: world.ometria.url,
        MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
        POLLING_TIME_IN_SECONDS: "300",
        METRICS_PORT: "0",
      },
      args: [LIST],
    });
    assert.ok(loaded.ok);
    const stop = new AbortController();
    let handler: (() => Promise<void>) | undefined;
    let schedule = "";
    const done = runCommand(loaded.config, {
      clock: world.clock,
      logger: logs.logger,
      fetch,
      store: world.store,
      write: () => {},
      cron: (_name, cronSchedule, options, cronHandler) => {
        schedule = cronSchedule;
        handler = cronHandler;
        return new Promise((resolve) => options.signal?.addEventListener("abort", () => resolve()));
      },
      stop: stop.signal,
      hardStop: new AbortController().signal,
    });
    // The first tick runs at once.
    await until(async () => !!(await world.store.get(LIST))?.fresh_as_of, "the first tick");
    assert.ok((await world.store.get(LIST))?.fresh_as_of, "the first tick synced the list");
    assert.equal(schedule, "*/5 * * * *");
    assertInSync(world, LIST);

    // A cron tick after members changed and the lag approached the threshold.
    world.mailchimp.changeMembers(LIST, 5, 1);
    world.clock.set(world.clock.now() + 119 * 60_000);
    await handler!();
    assertInSync(world, LIST);

    const url = logs.records
      .map((r) => r.properties["url"])
      .find((u): u is string => typeof u === "string" && u.startsWith("http://127.0.0.1"));
    assert.ok(url, "the metrics URL was logged");
    const metrics = await (await fetch(new URL("/metrics", url))).text();
    assert.match(metrics, new RegExp(`sync_connection_behind\\{connection="${LIST}"\\} 0`));
    assert.match(metrics, /sync_mailchimp_requests_total/);
    const health = await fetch(new URL("/healthz", url));
    assert.equal(health.status, 200);
    await health.body?.cancel();

    stop.abort();
    assert.equal(await done, 0);
  } finally {
    await world.close();
  }
});

Deno.test("the daemon alerts once when the state cannot be saved three ticks in a row", async () => {
  const dir = await Deno.makeTempDir({ prefix: "daemon_state_" });
  const { FileStore } = await import("../../lib/state/file_store.ts");
  const { FakeClock } = await import("../_helpers/fake_clock.ts");
  // Every write compacts (writes the whole document anew): with its folder gone, none can.
  const store = await FileStore.open(`${dir}/sync_jobs.json`, {
    clock: new FakeClock(T0),
    compactBytes: 1,
  });
  const world = await startWorld({ store });
  using logs = captureLogs();
  try {
    world.mailchimp.addList(LIST, { members: 10, lastChangedTo: T0 - 60_000 });
    const loaded = await loadConfig({
      env: {
        MAILCHIMP_API_KEY: world.mailchimp.apiKey,
        MAILCHIMP_BASE_URL: world.mailchimp.url,
        OMETRIA_API_KEY: world.ometria.apiKey,
        OMETRIA_BASE_URL: world.ometria.url,
        MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
      },
      args: ["--force", LIST],
    });
    assert.ok(loaded.ok);
    const stop = new AbortController();
    let handler: (() => Promise<void>) | undefined;
    let registered: () => void = () => {};
    const ready = new Promise<void>((resolve) => registered = resolve);
    const done = runCommand(loaded.config, {
      clock: world.clock,
      logger: logs.logger,
      fetch,
      store,
      write: () => {},
      cron: (_name, _schedule, options, cronHandler) => {
        handler = cronHandler;
        registered();
        return new Promise((resolve) => options.signal?.addEventListener("abort", () => resolve()));
      },
      stop: stop.signal,
      hardStop: new AbortController().signal,
    });
    await ready;
    // The first tick (started at once) saves fine; then the folder goes.
    const tickEnded = () => logs.records.some((r) => String(r.rawMessage).startsWith("Tick:"));
    await until(tickEnded, "the first tick to end");
    assert.ok(tickEnded(), "the first tick ended");
    await Deno.remove(dir, { recursive: true });
    const alerted = () =>
      logs.records.filter((r) => String(r.rawMessage).startsWith("state.write_failed")).length;
    for (let tick = 1; tick <= 4; tick++) {
      await handler!();
      assert.equal(
        alerted(),
        tick >= 3 ? 1 : 0,
        `after tick ${tick}: ${logs.records.map((r) => r.message.join("")).slice(-6).join("\n")}`,
      );
    }
    stop.abort();
    assert.equal(await done, 2, "stopped with the state still unsaved: exit 2");
  } finally {
    await world.close().catch(() => {});
  }
});
