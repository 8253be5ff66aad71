/**
 * The CLI run in this process against a test world: its config loaded from the simulators'
 * variables (plus `env`) and `args`, its clock, store and `fetch` the world's.
 */
import assert from "node:assert/strict";
import type { Logger } from "@logtape/logtape";
import { runCommand } from "../../lib/app/cli.ts";
import { loadConfig } from "../../lib/config/config.ts";
import { simulatorEnv } from "./cli.ts";
import type { World } from "./world.ts";

/** Runs `args` (a `--once` run, say) to its end; its exit code. */
export async function runInProcess(
  world: World,
  args: string[],
  env: Record<string, string>,
  logger: Logger,
): Promise<number> {
  const loaded = await loadConfig({
    env: { ...simulatorEnv(world.mailchimp, world.ometria), ...env },
    args,
  });
  assert.ok(loaded.ok, loaded.ok ? "" : loaded.errors.join("\n"));
  return await runCommand(loaded.config, {
    clock: world.clock,
    logger,
    fetch,
    store: world.store,
    write: () => {},
    cron: () => Promise.reject(new Error("this run schedules nothing")),
    stop: new AbortController().signal,
    hardStop: new AbortController().signal,
  });
}
