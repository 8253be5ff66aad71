/**
 * An Ometria client as the client's tests build one: push endpoint, the account's push rate
 * at Ometria's 8/s on the given clock, whatever else `options` says.
 *
 * @module
 */
import type { Clock } from "../../lib/clock/clock.ts";
import { RateLimiter } from "../../lib/http/rate_limiter.ts";
import { OmetriaClient, type OmetriaClientOptions } from "../../lib/ometria/client.ts";

/** A client of the Ometria at `server` (a simulator, a fixture) on `clock`. */
export function ometriaClientFor(
  server: { url: string; apiKey: string },
  clock: Clock,
  options: Partial<OmetriaClientOptions> = {},
): OmetriaClient {
  return new OmetriaClient({
    apiKey: server.apiKey,
    baseUrl: server.url,
    endpoint: "push",
    clock,
    rateLimiter: new RateLimiter({ perSecond: 8, clock }),
    ...options,
  });
}
