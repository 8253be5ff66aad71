/**
 * The one HTTP handler of Deploy mode: `/healthz`, `/status.json`, `/metrics` and the status
 * page at `/`, all answered from the shared state (Deno KV) rather than from this isolate's
 * memory, because on Deno Deploy the isolate that answers a request is rarely the one that ran
 * the last tick. Everything but `/healthz` needs `STATUS_TOKEN` (see
 * `status_page/status_token.ts`): a deployment's URL is public.
 *
 * @module
 */
import type { Clock } from "../clock/clock.ts";
import type { Config } from "../config/config.ts";
import { buildStatusReport, type StatusRow, statusRows } from "../freshness/status_report.ts";
import { healthResponse } from "../metrics/metrics.ts";
import { renderStateMetrics } from "../metrics/state_metrics.ts";
import { errorText } from "../log/error_text.ts";
import type { StateStore } from "../state/store.ts";
import { statusPageResponse } from "../status_page/status_page.ts";
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
   * (without it only `/healthz` is served).
   */
  config: Pick<Config, "connections" | "thresholdMinutes" | "statusToken">;
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
 * Builds the Deploy HTTP handler. `GET /healthz` answers `{"ok":true}` (or 503 with the
 * health's detail); `GET /status.json` the document `status --json` prints, built from the
 * store; `GET /metrics` Prometheus text from the store (see `metrics/state_metrics.ts`);
 * `GET /` the status page. All but `/healthz` answer only with `STATUS_TOKEN`.
 * Other paths are 404, other methods 405. Nothing in the answers comes from the config
 * except connection ids, list ids and thresholds, so no key can leak; a store that cannot be
 * read gives 503 with the store's message (which names a connection, never a key).
 */
export function deployHandler(
  options: DeployHandlerOptions,
): (request: Request) => Promise<Response> {
  const { store, clock, config } = options;
  const health = options.health ?? (() => ({ ok: true }));
  const noStore = { "cache-control": "no-store" };
  return async (request) => {
    const { pathname } = new URL(request.url);
    if (options.webhooks && isWebhookPath(pathname)) return await options.webhooks(request);
    if (
      pathname !== "/healthz" && pathname !== "/status.json" && pathname !== "/metrics" &&
      pathname !== "/"
    ) {
      return new Response("not found\n", { status: 404, headers: noStore });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed\n", {
        status: 405,
        headers: { allow: "GET, HEAD", ...noStore },
      });
    }
    if (pathname === "/healthz") return healthResponse(health, noStore);
    const refused = await checkStatusToken(request, config.statusToken);
    if (refused !== undefined) return refused;
    let rows: StatusRow[];
    try {
      rows = statusRows(await store.list(), config);
    } catch (error) {
      return Response.json({ error: `Cannot read the state: ${errorText(error)}` }, {
        status: 503,
        headers: noStore,
      });
    }
    const now = clock.now();
    if (pathname === "/") return statusPageResponse(rows, now, request);
    if (pathname === "/status.json") {
      return Response.json(buildStatusReport(rows, now), { headers: noStore });
    }
    return new Response(renderStateMetrics(rows, now), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8", ...noStore },
    });
  };
}
