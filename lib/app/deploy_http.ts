/**
 * The one HTTP handler of Deploy mode: the status routes (`metrics/routes.ts`, the same table
 * the daemon's metrics listener serves: `/healthz`, `/status.json`, `/metrics`, the status
 * page at `/`), all answered from the shared state (Deno KV) rather than from this isolate's
 * memory, because on Deno Deploy the isolate that answers a request is rarely the one that
 * ran the last tick; and the Mailchimp webhook receiver. Everything but `/healthz` needs
 * `STATUS_TOKEN` (see `status_page/status_token.ts`): a deployment's URL is public.
 *
 * @module
 */
import type { Clock } from "../clock/clock.ts";
import { type Config, configSecrets } from "../config/config.ts";
import { statusRows } from "../freshness/status_report.ts";
import { statusRoutes } from "../metrics/routes.ts";
import type { StateStore } from "../state/store.ts";
import { checkStatusToken } from "../status_page/status_token.ts";
import { isWebhookPath } from "../webhooks/receiver.ts";

/** What `/healthz` reports: 200 when ok, else 503, with `detail` when given. */
export interface DeployHealth {
  ok: boolean;
  /** Why not ok, in words without secrets (e.g. which variables are missing). */
  detail?: string | readonly string[];
}

/** Options of {@linkcode deployHandler}. */
export interface DeployHandlerOptions {
  /** Where the state is read on every request. */
  store: StateStore;
  /** The time lags are computed at. */
  clock: Clock;
  /**
   * The configured connections (in report order), the default threshold, and `STATUS_TOKEN`
   * (without it only `/healthz` is served); their secrets are taken out of every answer.
   */
  config:
    & Pick<Config, "connections" | "thresholdMinutes" | "statusToken">
    & Partial<Pick<Config, "alertWebhookUrl">>;
  /**
   * Called for every `/healthz`.
   * @default {() => ({ ok: true })}
   */
  health?: () => DeployHealth;
  /**
   * The Mailchimp webhook receiver (`lib/webhooks/receiver.ts`): `/webhooks/mailchimp/…` is
   * routed to it, every other path answered here. Absent: those paths are 404.
   */
  webhooks?: (request: Request) => Promise<Response>;
}

/**
 * Builds the Deploy HTTP handler: `/webhooks/mailchimp/…` to the receiver, the status routes
 * from the store (the Prometheus text of `/metrics` holds the state's gauges only: counters of
 * an isolate that may be gone by the next scrape mean nothing), all but `/healthz` behind
 * `STATUS_TOKEN`; other paths are 404, other methods 405. A store that cannot be read gives
 * 503 with the store's message (which names a connection, never a key).
 */
export function deployHandler(
  options: DeployHandlerOptions,
): (request: Request) => Promise<Response> {
  const { store, clock, config } = options;
  const routes = statusRoutes({
    health: options.health ?? (() => ({ ok: true })),
    source: { rows: async () => statusRows(await store.list(), config), clock },
    guard: (request) => checkStatusToken(request, config.statusToken),
    secrets: configSecrets({ alertWebhookUrl: undefined, ...config }),
  });
  return async (request) => {
    const { pathname } = new URL(request.url);
    if (options.webhooks && isWebhookPath(pathname)) return await options.webhooks(request);
    return await routes(request) ??
      new Response("not found\n", { status: 404, headers: { "cache-control": "no-store" } });
  };
}
