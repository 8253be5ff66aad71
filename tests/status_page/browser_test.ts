/**
 * The status page in a real headless Chromium from Debian's packages, served by a real metrics
 * listener on 127.0.0.1. Skipped where /usr/bin/chromium is missing, unless
 * `REQUIRE_CHROMIUM=1` (set by `.ci/run`, which installs it), so CI cannot pass without it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Metrics, serveMetrics } from "../../lib/metrics/metrics.ts";
import { CHROMIUM_PATH, dumpDom, hasChromium, screenshot } from "./_chromium.ts";
import { SAMPLE_CONNECTIONS, statusPageSample } from "./_sample.ts";

const required = Deno.env.get("REQUIRE_CHROMIUM") === "1";
const available = hasChromium();

Deno.test({
  name: `status page in headless Chromium: rows shown, the behind one marked, its script ran${
    available ? "" : ` (skipped: ${CHROMIUM_PATH} missing; apt-get install chromium)`
  }`,
  ignore: !available && !required,
  async fn() {
    assert.ok(available, `${CHROMIUM_PATH} is missing: apt-get install chromium`);
    const sample = await statusPageSample();
    const server = serveMetrics({
      metrics: new Metrics(),
      port: 0,
      health: () => ({ ok: true }),
      status: { rows: () => sample.rows(), clock: sample.clock },
    });
    try {
      const dom = await dumpDom(server.url);
      // The inline script set this after load: the CSP nonce let it run.
      assert.match(dom, /<html lang="en" data-live="1">/);
      const rows = [...dom.matchAll(/<tr( class="[^"]*")? data-id="([^"]+)"( data-behind="1")?>/g)]
        .map((m) => ({ id: m[2]!, behind: m[3] !== undefined, cls: m[1] ?? "" }));
      assert.deepEqual(
        rows.map((r) => r.id).sort(),
        SAMPLE_CONNECTIONS.map((c) => c.id).sort(),
      );
      assert.deepEqual(rows[0], { id: "shop-eu", behind: true, cls: ` class="behind"` });
      assert.deepEqual(rows.filter((r) => r.behind).map((r) => r.id), ["shop-eu"]);
      assert.match(dom, /data-id="shop-eu"[^]*?<span class="badge bad">BEHIND<\/span>/);
      assert.match(dom, /id="behind-count">1 behind</);

      const filtered = await dumpDom(`${server.url}?behind=1`);
      assert.deepEqual([...filtered.matchAll(/data-id="([^"]+)"/g)].map((m) => m[1]), ["shop-eu"]);

      // The picture renders too (what `deno task screenshot` relies on).
      const dir = await Deno.makeTempDir({ prefix: "status_page_png_" });
      try {
        await screenshot(server.url, `${dir}/page.png`, { windowSize: [1000, 400] });
        const png = await Deno.readFile(`${dir}/page.png`);
        assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
        assert.ok(png.length > 10_000, `a page, not a blank: ${png.length} bytes`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    } finally {
      await server.close();
    }
  },
});
