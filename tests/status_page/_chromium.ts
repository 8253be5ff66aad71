/**
 * Headless Chromium from Debian's packages (`apt-get install chromium`), driven through its own
 * command line: `--dump-dom` for what a page shows after its scripts ran, `--screenshot` for
 * a picture. No browser download and no driver library: the browser the machine has is the
 * one that is tested. Used by the status page's browser test and by `deno task screenshot`.
 *
 * @module
 */

/** Where Debian's package puts the browser. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** True when {@linkcode CHROMIUM_PATH} exists (tests are skipped, or fail in CI, without it). */
export function hasChromium(): boolean {
  try {
    return Deno.statSync(CHROMIUM_PATH).isFile;
  } catch {
    return false;
  }
}

/** Options of {@linkcode dumpDom} and {@linkcode screenshot}. */
export interface ChromiumOptions {
  /** Window size in CSS pixels. @default {[1280, 800]} */
  windowSize?: [number, number];
  /** Gives up (and kills the browser) after this long. @default {60_000} */
  timeoutMs?: number;
}

/** Loads `url` in headless Chromium and resolves with the DOM after load, as HTML. */
export async function dumpDom(url: string, options: ChromiumOptions = {}): Promise<string> {
  return await _run(["--dump-dom", url], options);
}

/** Loads `url` in headless Chromium and writes a PNG of the window to `path`. */
export async function screenshot(
  url: string,
  path: string,
  options: ChromiumOptions = {},
): Promise<void> {
  await _run([`--screenshot=${path}`, "--hide-scrollbars", url], options);
}

async function _run(args: string[], options: ChromiumOptions): Promise<string> {
  const [width, height] = options.windowSize ?? [1280, 800];
  // A new empty profile each time: nothing from an earlier run (cache, cookies) can make a
  // test pass, and two runs never share a profile lock.
  const profile = await Deno.makeTempDir({ prefix: "chromium-profile-" });
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), options.timeoutMs ?? 60_000);
  try {
    const output = await new Deno.Command(CHROMIUM_PATH, {
      args: [
        "--headless",
        // Root in a container has no user namespaces for the sandbox; the pages are our own.
        "--no-sandbox",
        "--disable-gpu",
        // The machine's network is closed: without these Chromium keeps trying Google's hosts.
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        `--user-data-dir=${profile}`,
        `--window-size=${width},${height}`,
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: abort.signal,
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    if (!output.success) {
      const stderr = new TextDecoder().decode(output.stderr).trim().split("\n").slice(-5);
      throw new Error(
        `${CHROMIUM_PATH} exited with ${output.code}${
          abort.signal.aborted ? " (timed out)" : ""
        }: ${stderr.join(" | ")}`,
      );
    }
    return stdout;
  } finally {
    clearTimeout(timer);
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}
