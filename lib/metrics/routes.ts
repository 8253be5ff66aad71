/**
 * The one route table of the status routes, served alike by the daemon's metrics listener
 * (`serveMetrics`) and by the Deno Deploy handler (`app/deploy_http.ts`): `/healthz`,
 * `/metrics`, `/status.json` and the status page at `/`. Both read the saved state on every
 * request, so both answer the same facts under the same names; the daemon adds its process
 * counters to `/metrics`, Deploy (whose isolates come and go) a token check in front.
 *
 * @module
 */
import type { Clock } from "../clock/clock.ts";
import { buildStatusReport, type StatusRow } from "../freshness/status_report.ts";
import { errorText, redact } from "../log/error_text.ts";
import { statusPageResponse } from "../status_page/status_page.ts";
import { type HealthReport, healthResponse } from "./health.ts";
import { renderStateMetrics } from "./state_metrics.ts";

/** Every path of the table, in the order a person would look. */
export const STATUS_PATHS: readonly string[] = ["/", "/status.json", "/metrics", "/healthz"];

/** Where the routes read the state: the configured connections' rows, and the time. */
export interface StatusSource {
  /** The configured connections with their stored state, in configuration order. */
  rows(): Promise<readonly StatusRow[]>;
  /** The time lags are computed at. */
  clock: Clock;
}

/** Options of {@linkcode statusRoutes}. */
export interface StatusRoutesOptions {
  /** Called for every `/healthz`; a throw counts as not ok. */
  health: () => HealthReport;
  /**
   * Where `/`, `/status.json` and the state's gauges of `/metrics` come from; without it
   * `/` and `/status.json` are not routes (404) and `/metrics` has only `processMetrics`.
   */
  source?: StatusSource | undefined;
  /**
   * The process's own counters in exposition format, appended to `/metrics` (the daemon's
   * `Metrics.render`). Deploy has none: its isolates' counters would reset at random.
   */
  processMetrics?: (() => string) | undefined;
  /**
   * Checks every request but `/healthz` before it is answered, resolving to the answer to
   * send instead (Deploy's `STATUS_TOKEN`); undefined lets it through.
   */
  guard?: ((request: Request) => Promise<Response | undefined>) | undefined;
  /** Secrets taken out of every answer (a state may hold a key passed as an id). */
  secrets?: readonly string[] | undefined;
}

/**
 * Builds the handler of the status routes. It resolves to undefined for a path that is not
 * one of them (the caller answers 404, or routes it elsewhere); otherwise to the answer:
 * 405 for methods other than GET and HEAD, `/healthz` from `health`, the others from the
 * state, 503 naming the problem when the state cannot be read. Every answer is `no-store`.
 */
export function statusRoutes(
  options: StatusRoutesOptions,
): (request: Request) => Promise<Response | undefined> {
  const { source, secrets = [] } = options;
  return async (request) => {
    const { pathname } = new URL(request.url);
    const needsSource = pathname === "/" || pathname === "/status.json";
    if (!STATUS_PATHS.includes(pathname) || (needsSource && source === undefined)) {
      return undefined;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed\n", {
        status: 405,
        headers: { allow: "GET, HEAD", ..._NO_STORE },
      });
    }
    if (pathname === "/healthz") return healthResponse(options.health, _NO_STORE);
    const refused = await options.guard?.(request);
    if (refused !== undefined) return refused;
    let rows: readonly StatusRow[] = [];
    try {
      if (source !== undefined) rows = await source.rows();
    } catch (error) {
      // The store names connections and files in its errors, never keys.
      const problem = redact(`Cannot read the state: ${errorText(error)}`, secrets);
      return pathname === "/"
        ? new Response(`${problem}\n`, {
          status: 503,
          headers: { "content-type": "text/plain; charset=utf-8", ..._NO_STORE },
        })
        : Response.json({ error: problem }, { status: 503, headers: _NO_STORE });
    }
    const now = source?.clock.now() ?? 0;
    if (pathname === "/") return statusPageResponse(rows, now, request, { secrets });
    if (pathname === "/status.json") {
      return new Response(redact(JSON.stringify(buildStatusReport(rows, now)), secrets), {
        headers: { "content-type": "application/json", ..._NO_STORE },
      });
    }
    const text = (source === undefined ? "" : renderStateMetrics(rows, now)) +
      (options.processMetrics?.() ?? "");
    return new Response(redact(text, secrets), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8", ..._NO_STORE },
    });
  };
}

const _NO_STORE = { "cache-control": "no-store" };
