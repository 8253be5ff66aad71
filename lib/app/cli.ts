/**
 * The commands behind `main.ts`, dispatched by name: sync (once, as a daemon, or a dry run),
 * status, reset, reconcile, verify, webhooks, erase and explain, one module each under `commands/`, as deployctl keeps one
 * module per subcommand. Everything the process provides — fetch, clock, logger, output,
 * cron, signals as AbortSignals — is handed in ({@linkcode CliDeps}), and every command
 * returns its exit code instead of exiting.
 *
 * @module
 */
import type { Config } from "../config/config.ts";
import type { CliDeps } from "./commands/cli_deps.ts";
import { dryRunCommand } from "./commands/dry_run.ts";
import { eraseCommand } from "./commands/erase.ts";
import { explainCommand } from "./commands/explain.ts";
import { reconcileCommand } from "./commands/reconcile.ts";
import { resetCommand } from "./commands/reset.ts";
import { statusCommand } from "./commands/status.ts";
import { syncCommand } from "./commands/sync.ts";
import { runWebhooksCommand } from "./commands/webhooks.ts";
import { verifyCommand } from "./commands/verify.ts";

/**
 * Runs the command the config names and returns its exit code (`EXIT`, commands/cli_deps.ts).
 * demo, simulate, bench and healthcheck are not here: `main.ts` loads their modules with
 * `import()` when chosen, so they stay out of the production import graph.
 */
export async function runCommand(config: Config, deps: CliDeps): Promise<number> {
  switch (config.command) {
    case "status":
      return await statusCommand(config, deps);
    case "reset":
      return await resetCommand(config, deps);
    case "sync":
      return config.dryRun ? await dryRunCommand(config, deps) : await syncCommand(config, deps);
    case "reconcile":
      return await reconcileCommand(config, deps);
    case "webhooks":
      return await runWebhooksCommand(config, { ...deps, signal: deps.stop });
    case "erase":
      return await eraseCommand(config, deps);
    case "explain":
      return await explainCommand(config, deps);
    case "verify":
      return await verifyCommand(config, deps);
    default:
      throw new RangeError(`Cannot run '${config.command}' here: main.ts dispatches it`);
  }
}
