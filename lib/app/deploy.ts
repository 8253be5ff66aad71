/**
 * Deno Deploy mode: one `Deno.cron` whose every invocation is one `--once` tick configured
 * from the environment, and one HTTP handler (`/healthz`, `/status.json`, `/metrics`) that
 * answers from the shared Deno KV state. The entrypoint, `deploy.ts`, calls
 * {@linkcode startDeploy} (through `main.ts`) at its top level, unconditionally: Deploy
 * extracts a revision's crons by evaluating the module's top-level code, and only sees
 * those registered before `Deno.serve` starts (docs.deno.com/deploy/reference/cron/). The
 * asynchronous set-up (config, logging, KV) runs behind them and each tick or request waits
 * for it. Since registering cannot depend on where it runs, the check that keeps branch and
 * preview deployments from syncing is made by each tick (`config/deploy_timeline.ts`).
 *
 * Shutdown: Deploy sends SIGINT and kills the instance 5 s later. `main.ts` turns the signal
 * into `stop` (no new runs; batches in flight finish) and, {@linkcode DEPLOY_GRACE_MS} later,
 * `hardStop` (requests in flight are abandoned), so a run ends, saves its checkpoint and
 * gives its KV lease back before the kill; a lease the kill still catches lapses after 15 s.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { type Config, loadConfig } from "../config/config.ts";
import { deployArgs } from "../config/deploy_args.ts";
import { timelineRefusal } from "../config/deploy_timeline.ts";
import { scheduleFromEnv } from "../config/schedule.ts";
import { setupLogging, shutdownLogging } from "../log/logging.ts";
import { openStore } from "../state/open_store.ts";
import type { StateStore } from "../state/store.ts";
import { runCommand } from "./cli.ts";
import { type CronFn, EXIT } from "./commands/cli_deps.ts";
import { webhooksFor } from "./commands/shared.ts";
import { deployHandler } from "./deploy_http.ts";
import { errorText } from "../log/error_text.ts";

/**
 * Time between the stop signal and abandoning requests in flight on Deploy: under the
 * platform's 5 s between SIGINT and the kill, leaving 2 s to save checkpoints, release
 * leases and close the database.
 */
export const DEPLOY_GRACE_MS = 3_000;

/** The name of the Deploy cron (the platform's dashboard shows it). */
export const DEPLOY_CRON_NAME = "mailchimp-ometria-sync";

/**
 * True when running on Deno Deploy: `DENO_DEPLOYMENT_ID` (Deploy Classic and Deploy) or
 * `DENO_DEPLOY` (Deploy) is set to something. Either is enough, so a platform that drops one
 * of them still runs the Deploy entry rather than a daemon waiting for arguments.
 */
export function isDeploy(env: Record<string, string | undefined>): boolean {
  return (env.DENO_DEPLOYMENT_ID ?? "") !== "" || (env.DENO_DEPLOY ?? "") !== "";
}

/** A started HTTP server, as `Deno.serve` returns it. */
export interface DeployServer {
  /** Stops accepting requests and resolves when those in flight are answered. */
  shutdown(): Promise<void>;
}

/** What {@linkcode startDeploy} needs from the process (`main.ts` provides it). */
export interface DeployDeps {
  /**
   * The environment. Read for the configuration (as `deployArgs` describes), for
   * `DENO_TIMELINE` (only `production` ticks, unless SYNC_ON_BRANCHES), and for
   * `SYNC_TICK_AT_START`: when `1`, one tick also runs as soon as an instance starts (a smoke
   * test of a deployment, since a cron fires only on schedule).
   */
  env: Record<string, string | undefined>;
  clock: Clock;
  fetch: typeof globalThis.fetch;
  /** Reads a file shipped with the deployment (`SYNC_CONNECTIONS_FILE`). */
  readTextFile: (path: string) => Promise<string>;
  /** Registers the cron (`Deno.cron`); must register before it returns. */
  cron: CronFn;
  /** Serves the handler (`Deno.serve`); must register before it returns. */
  serve: (handler: (request: Request) => Promise<Response>) => DeployServer;
  /** Aborted on the first SIGINT/SIGTERM: no new runs, then everything shuts down. */
  stop: AbortSignal;
  /** Aborted when the grace period is over: abandon requests in flight. */
  hardStop: AbortSignal;
  /** Writes a line to the platform's console (problems found before logging is set up). */
  writeError: (line: string) => void;
}

/** A started Deploy entry. */
export interface DeployApp {
  /**
   * Runs one tick now (what each cron invocation does) and resolves with its exit code; while
   * a tick runs, a second call returns that tick's result instead of starting another.
   */
  tick(): Promise<number>;
  /**
   * Resolves after `stop`, once the tick in flight has ended, the server has shut down and
   * the store (with its leases) is closed. The cron's registration may still be open then
   * (see the comment inside): the process should exit.
   */
  finished: Promise<void>;
}

type _Ready =
  | {
    ok: true;
    config: Config;
    logger: Logger;
    store: StateStore;
    handler: (request: Request) => Promise<Response>;
    /** Closed before the store: it drains webhook inboxes. */
    close: () => Promise<void>;
    /** Why this deployment does not tick (not production), or undefined when it does. */
    refusal: string | undefined;
  }
  | { ok: false; errors: string[] };

/**
 * Registers the cron and the HTTP handler at once, then loads the configuration from
 * `deps.env`, sets up logging and opens the store in the background. `METRICS_PORT` is not
 * used here: a listener per tick would not work on Deploy, and the handler already serves
 * `/metrics` and `/healthz`. A configuration that does not load makes every tick do nothing
 * and `/healthz` answer 503 with the problems (which name variables, never their values).
 */
export function startDeploy(deps: DeployDeps): DeployApp {
  const cronAbort = new AbortController();
  const ready = _prepare(deps);
  let running: Promise<number> | undefined;
  const tick = (): Promise<number> => {
    running ??= _tick(ready, deps).finally(() => running = undefined);
    return running;
  };

  const schedule = scheduleFromEnv(deps.env);
  let cronDone: Promise<void>;
  try {
    cronDone = deps.cron(DEPLOY_CRON_NAME, schedule, { signal: cronAbort.signal }, async () => {
      if (deps.stop.aborted) return;
      await tick();
    });
  } catch (error) {
    cronDone = Promise.reject(error);
  }
  cronDone = cronDone.catch((error) => {
    deps.writeError(
      `Cannot schedule ticks on '${schedule}' (SYNC_SCHEDULE or POLLING_TIME_IN_SECONDS): ${
        errorText(error)
      }`,
    );
  });

  const server = deps.serve(async (request) => {
    const r = await ready;
    if (r.ok) return await r.handler(request);
    return Response.json({ ok: false, detail: r.errors }, {
      status: 503,
      headers: { "cache-control": "no-store" },
    });
  });

  if (deps.env.SYNC_TICK_AT_START === "1") void tick();

  const finished = (async () => {
    await new Promise<void>((resolve) => {
      if (deps.stop.aborted) resolve();
      deps.stop.addEventListener("abort", () => resolve(), { once: true });
    });
    // The cron is not waited for: on Deploy the runtime hands crons to the platform over a
    // socket (DENO_UNSTABLE_CRON_SOCK), and there an aborted cron's promise settles only
    // when the platform next invokes it or closes the socket, so waiting would hold the
    // shutdown, and the leases, until the kill. No new tick starts after `stop` anyway.
    cronAbort.abort();
    await running;
    await server.shutdown();
    const r = await ready;
    if (r.ok) {
      await r.close();
      // Closing the store gives back any lease still held (see KvStore.close).
      await r.store.close().catch((error) => {
        r.logger.error("Cannot close {location}: {error}", {
          location: r.store.location,
          error: errorText(error),
        });
      });
      r.logger.info("Stopped");
      await shutdownLogging();
    }
  })();
  return { tick, finished };
}

async function _prepare(deps: DeployDeps): Promise<_Ready> {
  try {
    const result = await loadConfig({
      // Deploy has no files to log to; its console is the log.
      env: { LOG_FILE: "", ...deps.env },
      args: deployArgs(deps.env),
      readTextFile: deps.readTextFile,
    });
    if (!result.ok) {
      deps.writeError(
        `Cannot start on Deno Deploy:\n${result.errors.map((e) => `  - ${e}`).join("\n")}`,
      );
      return { ok: false, errors: result.errors };
    }
    const config: Config = { ...result.config, metricsPort: undefined };
    const logger = await setupLogging({
      level: config.logLevel,
      file: undefined,
      format: config.logFormat,
    });
    for (const warning of config.warnings) logger.warn(warning);
    if (config.statusToken === undefined) {
      // The deployment's URL is public, so without a token nothing but /healthz is served.
      logger.warn(
        "STATUS_TOKEN is not set: the status page (/), /status.json and /metrics answer 403 " +
          "until it is.",
      );
    }
    if (result.config.metricsPort !== undefined) {
      logger.info(
        "METRICS_PORT is not used on Deno Deploy: the deployment's own URL serves /metrics, " +
          "/status.json and /healthz.",
      );
    }
    let store: StateStore;
    try {
      store = await openStore(config.state, {
        clock: deps.clock,
        logger,
        canUseFiles: false,
        leaseMs: config.stateLeaseSeconds * 1000,
      });
    } catch (error) {
      const message = errorText(error);
      logger.fatal(message);
      return { ok: false, errors: [message] };
    }
    // Webhooks are received when a secret is configured; on Deploy the state is Deno KV, so
    // events are in its inbox before the 200, and this isolate claims the connection and acts
    // on them (or the isolate running it sees them).
    const webhooks = config.connections.some((c) => c.webhookSecret !== undefined)
      ? webhooksFor(config, {
        clock: deps.clock,
        logger,
        fetch: deps.fetch,
        store,
        stop: deps.stop,
      })
      : undefined;
    const refusal = timelineRefusal(deps.env.DENO_TIMELINE, config.syncOnBranches);
    if (refusal !== undefined) logger.warn(refusal);
    const handler = deployHandler({
      store,
      clock: deps.clock,
      config,
      ...(webhooks ? { webhooks: webhooks.handler } : {}),
      // Alive either way; a deployment that does not tick says why.
      health: () =>
        deps.stop.aborted
          ? { ok: false, detail: "stopping" }
          : refusal === undefined
          ? { ok: true }
          : { ok: true, detail: refusal },
    });
    return {
      ok: true,
      config,
      logger,
      store,
      handler,
      refusal,
      close: () => webhooks?.service.close() ?? Promise.resolve(),
    };
  } catch (error) {
    const message = `Cannot start on Deno Deploy: ${errorText(error)}`;
    deps.writeError(message);
    return { ok: false, errors: [message] };
  }
}

async function _tick(ready: Promise<_Ready>, deps: DeployDeps): Promise<number> {
  const r = await ready;
  if (!r.ok) {
    deps.writeError("Tick skipped: the deployment is not configured (see /healthz).");
    return EXIT.usage;
  }
  if (deps.stop.aborted) return EXIT.ok;
  if (r.refusal !== undefined) {
    // Said at start (and by /healthz); once a minute would drown the log.
    r.logger.debug("Tick skipped: {why}", { why: r.refusal });
    return EXIT.ok;
  }
  try {
    const code = await runCommand(r.config, {
      clock: deps.clock,
      logger: r.logger,
      fetch: deps.fetch,
      store: r.store,
      // A --once sync prints nothing; its summary is in the log.
      write: () => {},
      cron: () => Promise.reject(new Error("A Deploy tick is --once and schedules nothing")),
      stop: deps.stop,
      hardStop: deps.hardStop,
    });
    if (code !== EXIT.ok) r.logger.warn("The tick ended with exit code {code}", { code });
    return code;
  } catch (error) {
    // Not one list's failure (those are in the state): e.g. the store refused a write. The
    // next cron invocation tries again.
    r.logger.error("The tick stopped: {error}", { error: errorText(error) });
    return EXIT.failed;
  }
}
