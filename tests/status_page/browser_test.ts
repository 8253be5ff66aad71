/**
 * The status page in a real headless Chromium from Debian's packages, served by a real metrics
 * listener on 127.0.0.1, at a desktop's width and at a phone's (390 px): what comes first,
 * that the filters work, that nothing runs off the side of a phone, and the two pictures of
 * `deno task screenshot`. Skipped where /usr/bin/chromium is missing, unless
 * `REQUIRE_CHROMIUM=1` (set by `.ci/run`, which installs it), so CI cannot pass without it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { CHROMIUM_PATH, evaluate, hasChromium } from "./_chromium.ts";
import { SAMPLE_CONNECTIONS, serveSample, statusPageSample } from "./_sample.ts";
import { SCREENSHOTS, takeScreenshots } from "./screenshot.ts";

const required = Deno.env.get("REQUIRE_CHROMIUM") === "1";
const available = hasChromium();

/** What the page shows once loaded: its rows in order, where each landed, a few styles. */
interface _Layout {
  live: string | undefined;
  viewport: number;
  scrollWidth: number;
  headerShown: boolean;
  secondCellLabel: string;
  rows: { id: string; cls: string; left: number; right: number }[];
  behindCount: string;
}

const _LAYOUT = `(() => {
  const rows = [...document.querySelectorAll("tr[data-id]")];
  return {
    live: document.documentElement.dataset.live,
    viewport: innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    headerShown: getComputedStyle(document.querySelector("thead")).display !== "none",
    secondCellLabel: getComputedStyle(rows[0].children[1], "::before").content,
    rows: rows.map((r) => {
      const box = r.getBoundingClientRect();
      return { id: r.dataset.id, cls: r.className, left: box.left, right: box.right };
    }),
    behindCount: document.getElementById("behind-count").textContent,
  };
})()`;

Deno.test({
  name: `status page in headless Chromium: behind and failed first, filters, a phone's width${
    available ? "" : ` (skipped: ${CHROMIUM_PATH} missing; apt-get install chromium)`
  }`,
  ignore: !available && !required,
  async fn(t) {
    assert.ok(available, `${CHROMIUM_PATH} is missing: apt-get install chromium`);
    const sample = await statusPageSample();
    const server = serveSample(sample);
    try {
      for (const width of [1280, 390]) {
        await t.step(`${width} px wide`, async () => {
          const page = await evaluate<_Layout>(server.url, _LAYOUT, { windowSize: [width, 800] });
          // The inline script set this after load: the CSP nonce let it run.
          assert.equal(page.live, "1");
          assert.equal(page.viewport, width);
          // Behind first, then the ones whose last run failed, then configuration order.
          assert.deepEqual(page.rows.map((r) => [r.id, r.cls]), [
            ["shop-eu", "behind"],
            ["shop-de", "failed"],
            ["shop-uk", ""],
            ["outlet", ""],
            ["newsletter", ""],
            ["vip-club", ""],
          ]);
          assert.equal(page.rows.length, SAMPLE_CONNECTIONS.length);
          assert.equal(page.behindCount, "1 behind");
          // Nothing wider than the screen: no sideways scrolling, no row cut off.
          assert.ok(page.scrollWidth <= width, `the page is ${page.scrollWidth} px wide`);
          for (const row of page.rows) {
            assert.ok(row.left >= 0 && row.right <= width, `${row.id}: ${row.left}–${row.right}`);
          }
          // On a phone every row is a card whose cells say what they are.
          assert.equal(page.headerShown, width > 720);
          assert.equal(page.secondCellLabel, width > 720 ? "none" : '"Status"');
        });
      }

      await t.step("a filter for each: ?behind=1 and ?failed=1", async () => {
        const ids = `[...document.querySelectorAll("tr[data-id]")].map((r) => r.dataset.id)`;
        assert.deepEqual(await evaluate(`${server.url}?behind=1`, ids), ["shop-eu"]);
        assert.deepEqual(await evaluate(`${server.url}?failed=1`, ids), ["shop-eu", "shop-de"]);
      });

      await t.step("the pictures of deno task screenshot, at both widths", async () => {
        const dir = await Deno.makeTempDir({ prefix: "status_page_png_" });
        try {
          const paths = await takeScreenshots(server.url, dir);
          for (const [i, path] of paths.entries()) {
            const png = await Deno.readFile(path);
            assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
            // IHDR: the picture is exactly as wide as the window it was taken in.
            const width = new DataView(png.buffer, png.byteOffset).getUint32(16);
            assert.equal(width, SCREENSHOTS[i]!.windowSize[0]);
            assert.ok(png.length > 10_000, `a page, not a blank: ${png.length} bytes`);
          }
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      });
    } finally {
      await server.close();
    }
  },
});
