/**
 * `deno task screenshot`: serves the status page of the sample connections on a real metrics
 * listener (port 0 on 127.0.0.1) and photographs it in headless Chromium at a desktop's width
 * and at a phone's, into `docs/status_page.png` and `docs/status_page_phone.png`, the
 * pictures in the README. Run it after changing the page; the browser test takes the same
 * pictures (into a folder of its own) and checks them.
 *
 * @module
 */
import { CHROMIUM_PATH, hasChromium, screenshot } from "./_chromium.ts";
import { serveSample, statusPageSample } from "./_sample.ts";

/** The pictures of the page: file name and viewport (a desktop's, a phone's: 390 px wide). */
export const SCREENSHOTS: readonly { file: string; windowSize: [number, number] }[] = [
  { file: "status_page.png", windowSize: [1280, 560] },
  { file: "status_page_phone.png", windowSize: [390, 844] },
];

/** Photographs the page at `url` once per {@linkcode SCREENSHOTS} entry into `dir`. */
export async function takeScreenshots(url: string, dir: string): Promise<string[]> {
  const paths: string[] = [];
  for (const shot of SCREENSHOTS) {
    const path = `${dir}/${shot.file}`;
    await screenshot(url, path, { windowSize: shot.windowSize });
    paths.push(path);
  }
  return paths;
}

if (import.meta.main) {
  if (!hasChromium()) {
    console.error(`${CHROMIUM_PATH} is missing: install it with 'apt-get install chromium'.`);
    Deno.exit(1);
  }
  const sample = await statusPageSample();
  const server = serveSample(sample);
  try {
    const docs = new URL("../../docs", import.meta.url).pathname;
    for (const path of await takeScreenshots(server.url, docs)) console.log(`Wrote ${path}`);
  } finally {
    await server.close();
  }
}
