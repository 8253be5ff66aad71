/**
 * What more than one command needs: the sync service built from the config, the alert
 * manager and its drain at the end, the field-mapping check at start, the advice for a state
 * that cannot be saved, and the webhook receiver's handler (the daemon's and Deploy's).
 *
 * @module
 */
import { type Config, configSecrets } from "../../config/config.ts";
import { AlertManager } from "../../freshness/alerts.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { StateError } from "../../state/store.ts";
import { startWebhooks } from "../../webhooks/setup.ts";
import { serviceOptionsFromConfig, SyncService, type SyncServiceOptions } from "../sync_service.ts";
import type { CliDeps } from "./cli_deps.ts";

/** How long queued alerts may still be delivered when the program ends. */
const ALERT_DRAIN_MS = 5_000;

/**
 * A field mapping naming merge tags the list lacks is a configuration error (exit 2), found
 * at start, before anything is pushed: each problem is logged with the tags and the fix.
 */
export async function _fieldMappingsFit(service: SyncService, deps: CliDeps): Promise<boolean> {
  const problems = await service.checkFieldMappings(deps.stop);
  for (const problem of problems) deps.logger.fatal(problem);
  return problems.length === 0;
}

/** The alert manager of a command that syncs or reconciles. */
export function _alertsFor(config: Config, deps: CliDeps): AlertManager {
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
export async function _drainAlerts(alerts: AlertManager, deps: CliDeps): Promise<void> {
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

/** OS error codes that mean the disk, not the program, stopped a write; and what they mean. */
const _STORAGE_ERRORS: Readonly<Record<string, string>> = {
  ENOSPC: "the disk is full",
  EDQUOT: "this user's disk quota is used up",
  EROFS: "the file system is read-only",
  EIO: "the disk reported an input/output error",
};

/**
 * What to tell a user when an error the store did not word itself (a plain OS error) says
 * the disk stopped a write under `location` — a full disk, a quota, a read-only file system —
 * or undefined for any other error. Such an error is the machine's, not a bug: it gets the
 * state's advice and exit 2.
 */
export function storageFailureAdvice(error: unknown, location: string): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  const meaning = typeof code === "string" ? _STORAGE_ERRORS[code] : undefined;
  if (meaning === undefined) return undefined;
  const said = error instanceof Error ? error.message.replace(/\.$/, "") : String(error);
  return `Cannot write under ${location}: ${said}: ${meaning}. The last saved state is kept ` +
    "and the next run resumes from it. Free space on that disk or fix it (or pass another " +
    "--state).";
}

/**
 * Builds the service for a config (shared by sync, the daemon, reconcile and the webhook
 * receiver): the config's settings, the process's store, clock, logger and fetch, and the
 * command's own `extras`. With alerts, a reconciliation that repaired something raises
 * `connection.diverged`.
 */
export function serviceFor(
  config: Config,
  deps: Pick<CliDeps, "clock" | "logger" | "fetch" | "store">,
  extras: Pick<
    SyncServiceOptions,
    "alerts" | "metrics" | "progressEverySeconds" | "onProgress" | "onRunFinished" | "signal"
  > = {},
): SyncService {
  return new SyncService({
    ...serviceOptionsFromConfig(config),
    store: deps.store,
    clock: deps.clock,
    logger: deps.logger,
    fetch: deps.fetch,
    ...(extras.alerts
      ? {
        onDiverged: _divergedAlert(extras.alerts),
        onVerifyDiverged: _verifyDivergedAlert(extras.alerts),
        onRejectedAsync: _rejectedAsyncAlert(extras.alerts),
      }
      : {}),
    ...extras,
  });
}

/** Raises `connection.rejected_async` for a run Ometria refused records of after OK. */
function _rejectedAsyncAlert(
  alerts: AlertManager,
): NonNullable<SyncServiceOptions["onRejectedAsync"]> {
  return (connection, result, state) => {
    const errors = result.rejectedAsync ?? [];
    alerts.rejectedAsync(
      {
        id: connection.id,
        list_id: connection.listId,
        threshold_seconds: connection.thresholdSeconds,
      },
      state,
      { rejected: errors.length, errors },
    );
  };
}

/** Raises `connection.diverged` for a verify that found Ometria differing (once an incident). */
function _verifyDivergedAlert(
  alerts: AlertManager,
): NonNullable<SyncServiceOptions["onVerifyDiverged"]> {
  return (connection, summary, state) => {
    alerts.verifyDiverged(
      {
        id: connection.id,
        list_id: connection.listId,
        threshold_seconds: connection.thresholdSeconds,
      },
      state,
      summary,
    );
  };
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
 * The webhook receiver's handler for `config`, with a sync service of its own over the same
 * store draining the connections' inboxes (Deno Deploy: the one Deploy handler routes
 * `/webhooks/…` to it). Close the returned service when the process stops.
 */
export function webhooksFor(
  config: Config,
  deps: Pick<CliDeps, "clock" | "logger" | "fetch" | "store" | "stop">,
  metrics?: Metrics,
): { handler: (request: Request) => Promise<Response>; service: SyncService } {
  const service = serviceFor(config, deps, { ...(metrics ? { metrics } : {}), signal: deps.stop });
  return { handler: _startWebhooks(config, deps, metrics), service };
}

/**
 * The receiver's handler for `config`: each event goes to its connection's inbox in the
 * store, which wakes the writers of whatever sync service runs in this process over that
 * store (the daemon's own, so events share its Mailchimp cap and Ometria rate).
 */
export function _startWebhooks(
  config: Config,
  deps: Pick<CliDeps, "clock" | "logger" | "store">,
  metrics: Metrics | undefined,
): (request: Request) => Promise<Response> {
  return startWebhooks({
    connections: config.connections,
    store: deps.store,
    clock: deps.clock,
    logger: deps.logger,
    metrics,
  });
}
