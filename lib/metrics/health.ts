/**
 * `/healthz`: the liveness answer of the daemon's metrics listener and of the Deploy handler.
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";

/** What `/healthz` reports: 200 when ok, else 503; `detail` is included as JSON. */
export interface HealthReport {
  ok: boolean;
  detail?: unknown;
}

/**
 * The `/healthz` answer: `{ok}` (and `detail` when given), 200 when ok, else 503; a `health`
 * that throws counts as not ok, with its error as the detail.
 */
export function healthResponse(health: () => HealthReport, headers: HeadersInit = {}): Response {
  let report: HealthReport;
  try {
    report = health();
  } catch (error) {
    report = { ok: false, detail: errorText(error) };
  }
  const body = report.detail === undefined
    ? { ok: report.ok }
    : { ok: report.ok, detail: report.detail };
  return Response.json(body, { status: report.ok ? 200 : 503, headers });
}
