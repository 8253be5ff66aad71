/**
 * The two `/metrics` answers of one state: the daemon's (its metrics listener, with process
 * counters) and Deploy's (its handler, from the store alone), both over the status page's
 * sample, which holds every kind of connection the gauges tell apart.
 *
 * @module
 */
import { deployHandler } from "../../lib/app/deploy_http.ts";
import { Metrics } from "../../lib/metrics/metrics.ts";
import { sampleConnectionConfigs, serveSample, statusPageSample } from "../status_page/_sample.ts";

const TOKEN = "a-status-token-of-some-length";

/** Fetches `/metrics` from a real daemon listener and from the Deploy handler of one state. */
export async function bothExpositions(): Promise<{ daemon: string; deploy: string }> {
  const sample = await statusPageSample();
  const metrics = new Metrics();
  metrics.recordRun("shop-uk", { pushed: 7, durationMs: 10, ok: true });
  metrics.recordReconcile("outlet", { orphans: 1, missing: 0, repaired: 1 });
  metrics.countRequest("ometria", 429);
  metrics.countRequest("mailchimp", "error");
  metrics.recordWebhook("shop-uk", { outcome: "queued" });
  const server = serveSample(sample, metrics);
  try {
    const daemon = await (await fetch(new URL("metrics", server.url))).text();
    const handler = deployHandler({
      store: sample.store,
      clock: sample.clock,
      config: {
        connections: sampleConnectionConfigs(),
        thresholdMinutes: 120,
        statusToken: TOKEN,
      },
    });
    const answer = await handler(
      new Request("http://deploy.test/metrics", { headers: { authorization: `Bearer ${TOKEN}` } }),
    );
    return { daemon, deploy: await answer.text() };
  } finally {
    await server.close();
  }
}
