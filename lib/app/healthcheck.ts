/**
 * `healthcheck`: the container's liveness probe. Asks this process's own metrics listener
 * for `/healthz`, since the distroless image has no shell or curl. It says whether the
 * process is alive, not whether lists are fresh (that is `status --check`). Without
 * METRICS_PORT there is no listener to ask, and the check fails saying so: passing then would
 * report a dead daemon as healthy (the image sets METRICS_PORT, so it always has one).
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";

/** Options of {@linkcode runHealthcheck}. */
export interface HealthcheckOptions {
  fetch: typeof globalThis.fetch;
  /** METRICS_PORT; without it there is no listener to ask and the check fails. */
  port: number | undefined;
  /** METRICS_HOST; a wildcard address is asked on the loopback interface. */
  host: string;
  write: (text: string) => void;
  /** How long the listener may take to answer. @default {5000} */
  timeoutMs?: number;
}

/** Returns 0 when `/healthz` answers 200, else 1 (also when no listener is configured). */
export async function runHealthcheck(options: HealthcheckOptions): Promise<number> {
  if (options.port === undefined) {
    options.write(
      "healthcheck: METRICS_PORT is not set, so no listener can say the process is alive; " +
        "failing. Set METRICS_PORT for the daemon and for this check (the image sets 9464).",
    );
    return 1;
  }
  const host = options.host === "0.0.0.0" || options.host === "::" ? "127.0.0.1" : options.host;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${options.port}/healthz`;
  try {
    const response = await options.fetch(url, {
      signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
    });
    await response.body?.cancel();
    if (response.ok) return 0;
    options.write(`healthcheck: ${url} answered ${response.status}.`);
  } catch (error) {
    options.write(`healthcheck: ${url} did not answer: ${errorText(error)}.`);
  }
  return 1;
}
