/**
 * `deno task screenshot`: serves the status page of the sample connections on a real metrics
 * listener (port 0 on 127.0.0.1) and photographs it in headless Chromium into
 * `docs/status_page.png`, the picture in the README. Run it after changing the page.
 *
 * @module
 */
import { Metrics, serveMetrics } from "../../lib/metrics/metrics.ts";
import { CHROMIUM_PATH, hasChromium, screenshot } from "./_chromium.ts";
import { statusPageSample } from "./_sample.ts";

const OUTPUT = new URL("../../docs/status_page.png", import.meta.url);

if (!hasChromium()) {
  console.error(`${CHROMIUM_PATH} is missing: install it with 'apt-get install chromium'.`);
  Deno.exit(1);
}
const sample = await statusPageSample();
const server = serveMetrics({
  metrics: new Metrics(),
  port: 0,
  health: () => ({ ok: true }),
  status: { rows: () => sample.rows(), clock: sample.clock },
});
try {
  await screenshot(server.url, OUTPUT.pathname, { windowSize: [1280, 520] });
  console.log(`Wrote ${OUTPUT.pathname}`);
} finally {
  await server.close();
}
