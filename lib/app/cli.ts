/**
 * The commands behind `main.ts`: sync (once or as a daemon), status and reset. Everything
 * the process provides — fetch, clock, logger, output, cron, signals as AbortSignals — is
 * handed in, and every command returns its exit code instead of exiting.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { type Config, configSecrets } from "../config/config.ts";
import { AlertManager } from "../freshness/alerts.ts";
import { errorText } from "../log/error_text.ts";
import { Metrics, type MetricsServer, serveMetrics } from "../metrics/metrics.ts";
import { buildStatusReport, formatStatusTable, statusRows } from "../freshness/status_report.ts";
import { StateError, type StateStore } from "../state/store.ts";
import { record } from "../state/transitions.ts";
import { ProgressLine, type TerminalLine } from "./progress.ts";
import { serviceOptionsFromConfig, SyncService, type SyncServiceOptions } from "./sync_service.ts";

import { runWebhooksCommand } from "./webhooks_command.ts";
import { serveWebhooks, type WebhookServer } from "../webhooks/receiver.ts";
import { type StartedWebhooks, startWebhooks } from "../webhooks/setup.ts";
import type { WebhookQueue } from "../webhooks/queue.ts";

/** Ticks in a row whose state could not be saved before the daemon alerts. */
const STATE_FAILURE_ALERT_TICKS = 3;

/** How long queued alerts may still be delivered when the program ends. */
const ALERT_DRAIN_MS = 5_000;

/**
 * Exit codes: 0 all good, 1 a list failed (or is behind, for `status --check`), 2 usage,
 * configuration or state error, 3 a `--once` run stopped by SIGINT/SIGTERM before it
 * finished (its checkpoint is kept; the next run resumes), so a stopped run never reads as
 * "everything synced".
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 3 } as const;

/** A cron registration function with `Deno.cron`'s shape. */
export type CronFn = (
  name: string,
  schedule: string,
  options: { signal?: AbortSignal },
  handler: () => Promise<void>,
) => Promise<void>;

/** What the commands need from the process. */
export interface CliDeps {
  clock: Clock;
  logger: Logger;
  fetch: typeof globalThis.fetch;
  store: StateStore;
  /** Writes to standard output (status output, summaries). */
  write: (text: string) => void;
  /** Schedules ticks (Deno.cron). */
  cron: CronFn;
  /** Aborted on the first SIGINT/SIGTERM: start nothing new, finish what is in flight. */
  stop: AbortSignal;
  /** Aborted when the grace period is over: abandon requests in flight. */
  hardStop: AbortSignal;
  /**
   * The live line, when standard output and standard error are one terminal: `--once` then
   * draws its progress there (log lines are written around it).
   */
  terminal?: TerminalLine | undefined;
}

/** Runs the command the config names and returns the exit code. */
export async function runCommand(config: Config, deps: CliDeps): Promise<number> {
  switch (config.command) {
    case "status":
      return await statusCommand(config, deps);
    case "reset":
      return await resetCommand(config, deps);
    case "sync":
      return await syncCommand(config, deps);
    case "reconcile":
      return reconcileCommand(config, deps);
    case "webhooks":
      return await runWebhooksCommand(config, { ...deps, signal: deps.stop });
    default:
      throw new RangeError(`Cannot run '${config.command}' here: main.ts dispatches it`);
  }
}

/** `status [--json] [--check] [ids…]`: per connection its freshness and last run. */
async function statusCommand(config: Config, deps: CliDeps): Promise<number> {
  const states = await deps.store.list();
  const filter = new Set(config.listIds);
  // The same rows as the status page and Deploy's /status.json, by the stored thresholds.
  const rows = statusRows(
    config.connections.length > 0
      ? states
      : states.filter((s) => filter.size === 0 || filter.has(s.id) || filter.has(s.list_id)),
    config,
  );
  for (const id of filter) {
    if (!rows.some((r) => r.id === id || r.list_id === id)) {
      rows.push({
        id,
        list_id: id,
        threshold_seconds: config.thresholdMinutes * 60,
        state: undefined,
      });
    }
  }
  const report = buildStatusReport(rows, deps.clock.now());
  if (config.json) deps.write(JSON.stringify(report, null, 2) + "\n");
  else if (report.connections.length === 0) {
    deps.write(`No connection has state in ${deps.store.location} yet.\n`);
  } else deps.write(formatStatusTable(report) + "\n");
  if (config.check && report.connections.some((c) => c.behind)) return EXIT.failed;
  return EXIT.ok;
}

/** `reset <ids…>`: forgets watermarks and checkpoints, so the next run is a full sync. */
async function resetCommand(config: Config, deps: CliDeps): Promise<number> {
  const states = await deps.store.list();
  let missing = 0;
  for (const id of config.listIds) {
    const matches = states.filter((s) => s.id === id || s.list_id === id);
    if (matches.length === 0) {
      deps.write(`${id}: no state in ${deps.store.location}; nothing to reset.\n`);
      missing++;
      continue;
    }
    for (const s of matches) {
      await record(deps.store, { id: s.id, listId: s.list_id }, { type: "reset" });
      deps.write(`${s.id}: watermark forgotten; the next run reads the whole list.\n`);
    }
  }
  await deps.store.flush();
  // The known ones are reset; an unknown id is still a mistake worth a non-zero exit.
  return missing > 0 ? EXIT.failed : EXIT.ok;
}

/**
 * `reconcile [ids…]`: compares each list's ids in Mailchimp with those pushed to Ometria now
 * (all configured connections when no id is given), opts out orphans and pushes members
 * polling missed. Exit 0 when every reconciliation finished, 1 when one failed.
 */
async function reconcileCommand(config: Config, deps: CliDeps): Promise<number> {
  const alerts = _alertsFor(config, deps);
  const service = serviceFor(config, deps, { alerts });
  try {
    if (!(await _fieldMappingsFit(service, deps))) return EXIT.usage;
    const results = await service.reconcile(config.connections.map((c) => c.id), deps.stop);
    for (const r of results) {
      const s = r.summary;
      deps.write(
        s === undefined
          ? `${r.id}: ${r.outcome}${r.error ? `: ${r.error}` : ""}\n`
          : r.seeded
          ? `${r.id}: ledger started from Mailchimp's ${s.mailchimp_members} member id(s)\n`
          : `${r.id}: ${s.mailchimp_members} in Mailchimp, ${s.ledger_members} pushed before, ` +
            `${s.orphans} orphan(s) opted out, ${s.missing} missed member(s) pushed\n`,
      );
    }
    const skipped = config.connections.length - results.length;
    if (skipped > 0) {
      deps.write(`${skipped} connection(s) skipped: another process is running them.\n`);
    }
    if (deps.stop.aborted) return EXIT.interrupted;
    return results.some((r) => r.outcome !== "ok") ? EXIT.failed : EXIT.ok;
  } finally {
    await deps.store.flush();
    await _drainAlerts(alerts, deps);
  }
}

/**
 * A field mapping naming merge tags the list lacks is a configuration error (exit 2), found
 * at start, before anything is pushed: each problem is logged with the tags and the fix.
 */
async function _fieldMappingsFit(service: SyncService, deps: CliDeps): Promise<boolean> {
  const problems = await service.checkFieldMappings(deps.stop);
  for (const problem of problems) deps.logger.fatal(problem);
  return problems.length === 0;
}

/** The alert manager of a command that syncs or reconciles. */
function _alertsFor(config: Config, deps: CliDeps): AlertManager {
  return new AlertManager({
    clock: deps.clock,
    logger: deps.logger,
    fetch: deps.fetch,
    repeatMinutes: config.alertRepeatMinutes,
    secrets: configSecrets(config),
    ...(config.alertWebhookUrl ? { webhookUrl: config.alertWebhookUrl } : {}),
  });
}

/**
 * Alerts still queued get a few seconds (a dead webhook must not hold up a --once run or a
 * shutdown); what is left is logged as dropped by close().
 */
async function _drainAlerts(alerts: AlertManager, deps: CliDeps): Promise<void> {
  const grace = new AbortController();
  const timer = setTimeout(() => grace.abort(), ALERT_DRAIN_MS);
  try {
    await alerts.drain(AbortSignal.any([deps.hardStop, grace.signal]));
  } finally {
    clearTimeout(timer);
  }
  await alerts.close();
}

/**
 * What to tell a user when the state cannot be saved: what failed and where (the store's
 * message), that the last saved state stands, and what to do.
 */
export function stateFailureAdvice(error: StateError): string {
  return `${
    error.message.replace(/\.$/, "")
  }. The last saved state is kept and the next run resumes from it. Check that the folder is writable and the disk has free space (or pass another --state).`;
}

/** Builds the service for a config (shared by sync and the daemon). */
function serviceFor(
  config: Config,
  deps: Pick<CliDeps, "clock" | "logger" | "fetch" | "store">,
  extras: Pick<
    SyncServiceOptions,
    "alerts" | "metrics" | "progressEverySeconds" | "onProgress" | "onRunFinished"
  > = {},
): SyncService {
  return new SyncService({
    ...serviceOptionsFromConfig(config),
    store: deps.store,
    clock: deps.clock,
    logger: deps.logger,
    fetch: deps.fetch,
    ...(extras.alerts ? { onDiverged: _divergedAlert(extras.alerts) } : {}),
    ...extras,
  });
}

/** Raises `connection.diverged` for a reconciliation that repaired something. */
function _divergedAlert(alerts: AlertManager): NonNullable<SyncServiceOptions["onDiverged"]> {
  return (connection, result, state) => {
    if (!result.summary) return;
    alerts.diverged(
      {
        id: connection.id,
        list_id: connection.listId,
        threshold_seconds: connection.thresholdSeconds,
      },
      state,
      result.summary,
    );
  };
}

/**
 * Sync: with `--once` one tick and exit 0/1; otherwise the daemon — a tick now, then ticks
 * from cron until a stop signal, never two ticks at once.
 */
async function syncCommand(config: Config, deps: CliDeps): Promise<number> {
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
    ...(line
      ? {
        progressEverySeconds: 0,
        onProgress: (id, p) => line.update(id, p),
        onRunFinished: (id) => line.finish(id),
      }
      : {}),
  });
  let metricsServer: { close(): Promise<void> } | undefined;
  let webhooks: { server: WebhookServer; queue: WebhookQueue } | undefined;
  let code: number = EXIT.ok;
  const body = async (): Promise<number> => {
    if (config.webhookPort !== undefined && !config.once) {
      const listening = _listenForWebhooks(config, service, metrics, deps);
      if (typeof listening === "string") {
        logger.fatal(listening);
        return EXIT.usage;
      }
      webhooks = listening;
      logger.info("Receiving Mailchimp webhooks at {url}/webhooks/mailchimp/… ({queue} queue)", {
        url: listening.server.url,
        queue: listening.queue.kind,
      });
    }
    if (config.metricsPort !== undefined) {
      const listening = _listenForMetrics(config, metrics, deps);
      if (typeof listening === "string") {
        logger.fatal(listening);
        return EXIT.usage;
      }
      metricsServer = listening;
      logger.info("Metrics at {url}", { url: listening.url });
    }
    if (!(await _fieldMappingsFit(service, deps))) return EXIT.usage;
    const runTick = () =>
      service.tick({ force: config.force, signal: deps.stop, hardSignal: deps.hardStop });
    if (config.once) {
      let code: number;
      try {
        const result = await runTick().finally(() => line?.end());
        code = deps.stop.aborted ? EXIT.interrupted : result.failed ? EXIT.failed : EXIT.ok;
      } catch (error) {
        if (!(error instanceof StateError)) throw error;
        logger.fatal(stateFailureAdvice(error));
        code = EXIT.usage;
      }
      if (code === EXIT.interrupted) {
        logger.warn("Stopped before the run finished: exit {code}; the next run resumes.", {
          code,
        });
      }
      return code;
    }

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
  };
  try {
    code = await body();
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
    // The listener first, so no event is taken that the queue would then drop.
    await webhooks?.server.close();
    await webhooks?.queue.close();
    await _drainAlerts(alerts, deps);
    await metricsServer?.close();
  }
  return code;
}

/**
 * The webhook receiver's handler and queue for `config`, acting on events through a sync
 * service of its own over the same store (Deno Deploy: the one Deploy handler routes
 * `/webhooks/…` to it, and the KV queue hands events to whichever isolate listens).
 */
export function webhooksFor(
  config: Config,
  deps: Pick<CliDeps, "clock" | "logger" | "fetch" | "store" | "hardStop">,
  metrics?: Metrics,
): StartedWebhooks {
  return _startWebhooks(
    config,
    serviceFor(config, deps, metrics ? { metrics } : {}),
    deps,
    metrics,
  );
}

/** The receiver's handler and queue, acting on events through `service`. */
function _startWebhooks(
  config: Config,
  service: SyncService,
  deps: Pick<CliDeps, "clock" | "logger" | "store" | "hardStop">,
  metrics: Metrics | undefined,
): StartedWebhooks {
  return startWebhooks({
    connections: config.connections,
    store: deps.store,
    handle: async (job) => {
      await service.handleWebhook(job, deps.hardStop);
    },
    clock: deps.clock,
    logger: deps.logger,
    metrics,
    secrets: configSecrets(config),
  });
}

/**
 * Starts the webhook receiver on WEBHOOK_HOST:WEBHOOK_PORT, acting on events through the
 * daemon's own service (so events share its Mailchimp cap and Ometria rate), or says which
 * setting to change when it cannot listen.
 */
function _listenForWebhooks(
  config: Config,
  service: SyncService,
  metrics: Metrics,
  deps: CliDeps,
): { server: WebhookServer; queue: WebhookQueue } | string {
  const { handler, queue } = _startWebhooks(config, service, deps, metrics);
  try {
    return {
      server: serveWebhooks({ handler, hostname: config.webhookHost, port: config.webhookPort! }),
      queue,
    };
  } catch (error) {
    void queue.close();
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
      // The page reads the store as `status` does, so it shows what is saved, not a cache.
      statusPage: {
        rows: async () => statusRows(await deps.store.list(), config),
        clock: deps.clock,
      },
    });
  } catch (error) {
    const why = errorText(error).replace(/\s*\(os error \d+\)$/, "");
    if (error instanceof Deno.errors.AddrInUse) {
      return `METRICS_PORT=${config.metricsPort} cannot be used: the port is already in use on ${config.metricsHost} (${why}). Choose a free port or unset METRICS_PORT.`;
    }
    return `METRICS_HOST=${config.metricsHost} cannot be listened on (${why}): set METRICS_HOST to an address of this machine (e.g. 127.0.0.1, or 0.0.0.0 for every interface), or check METRICS_PORT=${config.metricsPort}.`;
  }
}
