/**
 * An Ometria push client for a simulator whose waits (backoff, rate) cost no time: what the
 * writer's and the pusher's tests send through.
 */
import { RateLimiter } from "../../lib/http/rate_limiter.ts";
import { OmetriaClient } from "../../lib/ometria/client.ts";
import { InstantClock } from "./instant_clock.ts";

/** A push client of `sim` at 1000 requests/s on a clock whose sleeps return at once. */
export function instantPushClient(sim: { apiKey: string; url: string }): OmetriaClient {
  const instant = new InstantClock(60_000);
  return new OmetriaClient({
    apiKey: sim.apiKey,
    baseUrl: sim.url,
    endpoint: "push",
    clock: instant,
    rateLimiter: new RateLimiter({ perSecond: 1000, clock: instant }),
  });
}
