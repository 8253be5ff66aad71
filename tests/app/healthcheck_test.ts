import assert from "node:assert/strict";
import { runHealthcheck } from "../../lib/app/healthcheck.ts";
import { Metrics, serveMetrics } from "../../lib/metrics/metrics.ts";

Deno.test("runHealthcheck() passes on a live /healthz and fails on a dead or unhealthy one", async () => {
  let ok = true;
  const server = serveMetrics({ metrics: new Metrics(), port: 0, health: () => ({ ok }) });
  const port = Number(new URL(server.url).port);
  const lines: string[] = [];
  const check = () => runHealthcheck({ fetch, port, host: "0.0.0.0", write: (t) => lines.push(t) });
  try {
    assert.equal(await check(), 0);
    ok = false;
    assert.equal(await check(), 1);
    assert.match(lines.at(-1)!, /answered 503/);
  } finally {
    await server.close();
  }
  assert.equal(await check(), 1);
  assert.match(lines.at(-1)!, /did not answer/);
});

Deno.test("runHealthcheck() fails without METRICS_PORT, since nothing can say the process lives", async () => {
  const lines: string[] = [];
  const write = (t: string) => lines.push(t);
  assert.equal(await runHealthcheck({ fetch, port: undefined, host: "127.0.0.1", write }), 1);
  assert.match(lines.join("\n"), /METRICS_PORT is not set, .* failing/);
});
