/**
 * `sync`: with `--once` one tick and exit 0/1; otherwise the daemon — a tick now, then ticks
 * from cron until a stop signal, never two ticks at once. Either may serve metrics and the
 * status page (METRICS_PORT); the daemon also receives Mailchimp webhooks (WEBHOOK_PORT).
 *
 * @module
 */
import type { Config } from "../../config/config.ts";
import type { AlertManager } from "../../freshness/alerts.ts";
import { statusRows } from "../../freshness/status_report.ts";
import { errorText } from "../../log/error_text.ts";
import { Metrics, type MetricsServer, serveMetrics } from "../../metrics/metrics.ts";
import type { TickResult } from "../../scheduler/tick.ts";
import { StateError } from "../../state/store.ts";
import { serveWebhooks, type WebhookServer } from "../../webhooks/receiver.ts";
import { ProgressLine } from "../progress.ts";
import type { SyncService } from "../sync_service.ts";
import { type CliDeps, EXIT } from "./cli_deps.ts";
import {
  _alertsFor,
  _drainAlerts,
  _fieldMappingsFit,
  _startWebhooks,
  serviceFor,
  stateFailureAdvice,
} from "./shared.ts";

/** Ticks in a row whose state could not be saved before the daemon alerts. */
const STATE_FAILURE_ALERT_TICKS = 3;

/** What one sync command works with, and the listeners it started (closed at its end). */
interface _Sync {
  service: SyncService;
  alerts: AlertManager;
  metrics: Metrics;
  line: ProgressLine | undefined;
  webhooks?: WebhookServer;
  metricsServer?: MetricsServer;
}

/**
 * Runs `sync` and returns its exit code; whatever it started (listeners, alert deliveries)
 * is closed before it returns, and the state is flushed.
 */
export async function syncCommand(config: Config, deps: CliDeps): Promise<number> {
  const { logger } = deps;
  const alerts = _alertsFor(config, deps);
  const metrics = new Metrics();
  // On a terminal a --once run draws one live line instead of a progress log line every few
  // seconds; a daemon (or output to a file) logs them.
  const line = config.once && deps.terminal
    ? new ProgressLine({ line: deps.terminal, clock: deps.clock })
    : undefined;
  const service = serviceFor(config, deps, {
    alerts,
    metrics,
    signal: deps.stop,
    ...(line
      ? {
        progressEverySeconds: 0,
        onProgress: (id, p) => line.update(id, p),
        onRunFinished: (id) => line.finish(id),
      }
      : {}),
  });
  const sync: _Sync = { service, alerts, metrics, line };
  let code: number = EXIT.ok;
  try {
    code = await _sync(config, deps, sync);
  } finally {
    try {
      await deps.store.flush();
    } catch (error) {
      if (error instanceof StateError) {
        // Already reported by the tick that failed to write, unless this is the first time.
        if (code !== EXIT.usage) logger.fatal(stateFailureAdvice(error));
        code = EXIT.usage;
      } else {
        logger.fatal("Cannot save the state: {error}", { error: errorText(error) });
        code = EXIT.failed;
      }
    }
    // The listener first: every event it took is in an inbox, drained now or at the next start.
    await sync.webhooks?.close();
    await service.close();
    await _drainAlerts(alerts, deps);
    await sync.metricsServer?.close();
  }
  return code;
}

/** The listeners, the field-mapping check, then one tick or the daemon. */
async function _sync(config: Config, deps: CliDeps, sync: _Sync): Promise<number> {
  const problem = _listen(config, deps, sync);
  if (problem !== undefined) {
    deps.logger.fatal(problem);
    return EXIT.usage;
  }
  if (!(await _fieldMappingsFit(sync.service, deps))) return EXIT.usage;
  if (config.repush) {
    const held = await sync.service.requestRepush();
    for (const id of held) {
      deps.logger.error(
        "{connection} cannot be set to --repush: another process holds it (a daemon or another " +
          "--once on the same state); run reset --repush {connection} when it is free",
        { connection: id },
      );
    }
    if (held.length > 0) return EXIT.failed;
  }
  const runTick = () =>
    sync.service.tick({ force: config.force, signal: deps.stop, hardSignal: deps.hardStop });
  if (config.once) return await _once(deps, runTick, sync.line);
  return await _daemon(config, deps, sync, runTick);
}

/**
 * Starts the webhook receiver (daemon only) and the metrics listener when configured,
 * recording each in `sync` as it starts; returns what to tell the user when one cannot.
 */
function _listen(config: Config, deps: CliDeps, sync: _Sync): string | undefined {
  if (config.webhookPort !== undefined && !config.once) {
    const listening = _listenForWebhooks(config, sync.metrics, deps);
    if (typeof listening === "string") return listening;
    sync.webhooks = listening;
    deps.logger.info(
      "Receiving Mailchimp webhooks at {url}/webhooks/mailchimp/… (inbox in {store})",
      { url: listening.url, store: deps.store.location },
    );
  }
  if (config.metricsPort !== undefined) {
    const listening = _listenForMetrics(config, sync.metrics, deps);
    if (typeof listening === "string") return listening;
    sync.metricsServer = listening;
    deps.logger.info("Metrics at {url}", { url: listening.url });
  }
  return undefined;
}

/**
 * `--once`: one tick; 0, 1 when a list failed or was not run because of trouble (backoff,
 * held by another process), 2 for the state, 3 when stopped.
 */
async function _once(
  deps: CliDeps,
  runTick: () => Promise<TickResult>,
  line: ProgressLine | undefined,
): Promise<number> {
  let code: number;
  try {
    const result = await runTick().finally(() => line?.end());
    const skipped = _notRunForTrouble(result, deps);
    code = deps.stop.aborted ? EXIT.interrupted : result.failed || skipped ? EXIT.failed : EXIT.ok;
  } catch (error) {
    if (!(error instanceof StateError)) throw error;
    deps.logger.fatal(stateFailureAdvice(error));
    code = EXIT.usage;
  }
  if (code === EXIT.interrupted) {
    deps.logger.warn("Stopped before the run finished: exit {code}; the next run resumes.", {
      code,
    });
  }
  return code;
}

/**
 * Logs each connection a `--once` tick did not run for a reason that is not "nothing to do"
 * — its last run failed and it waits out its backoff, or another process holds it — and says
 * whether there was one: then nothing was synced for it, and exit 0 would read as synced.
 */
function _notRunForTrouble(result: TickResult, deps: CliDeps): boolean {
  let any = false;
  for (const e of result.entries) {
    if (e.ran || (e.reason !== "backoff" && e.reason !== "held-elsewhere")) continue;
    any = true;
    deps.logger.error(
      e.reason === "backoff"
        ? "{connection} was not run: its last run failed and it waits out its backoff (see " +
          "status, or pass --force to run it now)"
        : "{connection} was not run: another process holds it (a daemon or another --once " +
          "on the same state)",
      { connection: e.id, reason: e.reason },
    );
  }
  return any;
}

/**
 * The daemon: a tick now, then one per cron invocation, never two at once, until `stop`;
 * then it waits for the tick in flight and returns 0.
 */
async function _daemon(
  config: Config,
  deps: CliDeps,
  sync: _Sync,
  runTick: () => Promise<TickResult>,
): Promise<number> {
  const { logger } = deps;
  const { service, alerts } = sync;
  // A tick never throws for one connection; anything else (the store failing) is logged
  // and the daemon carries on with the next tick, which retries the write.
  // A state that cannot be saved is retried every tick; when it persists for
  // STATE_FAILURE_ALERT_TICKS ticks in a row, an alert goes out (once, until a save works).
  let stateFailures = 0;
  const guardedTick = () =>
    runTick().then(() => {
      stateFailures = 0;
    }, (error) => {
      if (error instanceof StateError) {
        logger.error(stateFailureAdvice(error));
        if (++stateFailures === STATE_FAILURE_ALERT_TICKS) {
          alerts.stateFailing(deps.store.location, stateFailureAdvice(error), stateFailures);
        }
      } else logger.error("A tick failed: {error}", { error: errorText(error) });
    });
  let running: Promise<unknown> | undefined;
  const cronAbort = new AbortController();
  deps.stop.addEventListener("abort", () => cronAbort.abort(), { once: true });
  try {
    // Registered before the first tick, so a schedule cron refuses stops the program
    // before it has started anything.
    const cronDone = deps.cron(
      "mailchimp-ometria-sync tick",
      config.schedule,
      { signal: cronAbort.signal },
      async () => {
        if (deps.stop.aborted) return;
        if (running) {
          // A long run must not hide a connection falling behind: alerts and metrics are
          // still evaluated on schedule.
          logger.debug("Skipping a tick: the previous one is still running");
          await service.evaluateFreshness().catch((error) => {
            logger.error("Evaluating freshness failed: {error}", { error: errorText(error) });
          });
          return;
        }
        running = guardedTick().finally(() => running = undefined);
        await running;
      },
    );
    logger.info("Daemon started for {count} connection(s); ticks on cron '{schedule}'", {
      count: config.connections.length,
      schedule: config.schedule,
    });
    running = guardedTick().finally(() => running = undefined);
    await new Promise<void>((resolve) => {
      if (deps.stop.aborted) resolve();
      deps.stop.addEventListener("abort", () => resolve(), { once: true });
    });
    logger.info("Stopping: no new runs start; waiting for batches in flight");
    cronAbort.abort();
    await cronDone.catch(() => {});
    return EXIT.ok;
  } finally {
    cronAbort.abort();
    await running;
  }
}

/**
 * Starts the webhook receiver on WEBHOOK_HOST:WEBHOOK_PORT; the daemon's own service drains
 * the inboxes it appends to (so events share its Mailchimp cap, Ometria rate and writers).
 * Says which setting to change when it cannot listen.
 */
function _listenForWebhooks(
  config: Config,
  metrics: Metrics,
  deps: CliDeps,
): WebhookServer | string {
  const handler = _startWebhooks(config, deps, metrics);
  try {
    return serveWebhooks({ handler, hostname: config.webhookHost, port: config.webhookPort! });
  } catch (error) {
    const why = errorText(error).replace(/\s*\(os error \d+\)$/, "");
    if (error instanceof Deno.errors.AddrInUse) {
      return `WEBHOOK_PORT=${config.webhookPort} cannot be used: the port is already in use on ${config.webhookHost} (${why}). Choose a free port or unset WEBHOOK_PORT.`;
    }
    return `WEBHOOK_HOST=${config.webhookHost} cannot be listened on (${why}): set WEBHOOK_HOST to an address of this machine (e.g. 127.0.0.1 behind a reverse proxy), or check WEBHOOK_PORT=${config.webhookPort}.`;
  }
}

/**
 * Starts the metrics listener, or says which setting to change when it cannot listen (the
 * port taken, an address that is not this machine's). Both are configuration errors.
 */
function _listenForMetrics(
  config: Config,
  metrics: Metrics,
  deps: CliDeps,
): MetricsServer | string {
  try {
    return serveMetrics({
      metrics,
      hostname: config.metricsHost,
      port: config.metricsPort!,
      health: () => ({ ok: !deps.stop.aborted }),
      // The routes read the store as `status` does, so they show what is saved, not a cache,
      // and the same as Deploy's handler shows.
      status: {
        rows: async () => statusRows(await deps.store.list(), config),
        clock: deps.clock,
      },
      secrets: deps.secrets ?? [],
    });
  } catch (error) {
    const why = errorText(error).replace(/\s*\(os error \d+\)$/, "");
    if (error instanceof Deno.errors.AddrInUse) {
      return `METRICS_PORT=${config.metricsPort} cannot be used: the port is already in use on ${config.metricsHost} (${why}). Choose a free port or unset METRICS_PORT.`;
    }
    return `METRICS_HOST=${config.metricsHost} cannot be listened on (${why}): set METRICS_HOST to an address of this machine (e.g. 127.0.0.1, or 0.0.0.0 for every interface), or check METRICS_PORT=${config.metricsPort}.`;
  }
}
