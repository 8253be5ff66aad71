/**
 * startDeploy() as Deno Deploy needs it: the cron registered and the server started in the
 * same synchronous call, the cron first (the platform reads a revision's crons before
 * `Deno.serve` starts), and whatever the environment says, since registering inside a
 * condition would hide the cron from the platform.
 */
import assert from "node:assert/strict";
import { DEPLOY_CRON_NAME, type DeployDeps, startDeploy } from "../../lib/app/deploy.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";

/** Deps whose cron and serve record what was called, in order. */
function recordingDeps(env: Record<string, string>, calls: string[], stop: AbortController) {
  const deps: DeployDeps = {
    env: { SYNC_STATE: "memory:", SYNC_LIST_IDS: "list1", LOGGING_LEVEL: "ERROR", ...env },
    clock: new FakeClock(Date.UTC(2026, 7, 1)),
    fetch: () => Promise.reject(new Error("no network in this test")),
    readTextFile: () => Promise.reject(new Error("no files in this test")),
    cron: (name, schedule, options) => {
      calls.push(`cron ${name} ${schedule}`);
      return new Promise((resolve) => options.signal?.addEventListener("abort", () => resolve()));
    },
    serve: () => {
      calls.push("serve");
      return { shutdown: () => Promise.resolve() };
    },
    stop: stop.signal,
    hardStop: new AbortController().signal,
    writeError: () => {},
  };
  return deps;
}

Deno.test("startDeploy() registers the cron, then serves, before it returns, whatever the timeline", async (t) => {
  for (
    const env of [
      { DENO_TIMELINE: "production" },
      { DENO_TIMELINE: "git-branch/feature-x" },
      { DENO_TIMELINE: "preview/abc123" },
      {},
      // A configuration that does not load (no keys) still registers: ticks then do nothing.
      { DENO_TIMELINE: "production", SYNC_LIST_IDS: "" },
    ] as Record<string, string>[]
  ) {
    await t.step(JSON.stringify(env), async () => {
      const calls: string[] = [];
      const stop = new AbortController();
      const app = startDeploy(recordingDeps(env, calls, stop));
      assert.deepEqual(calls, [`cron ${DEPLOY_CRON_NAME} * * * * *`, "serve"]);
      stop.abort();
      await app.finished;
    });
  }
});
