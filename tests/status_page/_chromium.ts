/**
 * Headless Chromium from Debian's packages (`apt-get install chromium`), driven over its own
 * DevTools protocol on 127.0.0.1: a page is opened at a given window size, then asked what it
 * shows after its scripts ran (`evaluate`: the DOM, where each row landed, what a style
 * computes to) or photographed whole (`screenshot`). No browser download and no driver
 * library: the browser the machine has is the one that is tested, through one WebSocket.
 * Used by the status page's browser test and by `deno task screenshot`.
 *
 * @module
 */
import { until } from "../_helpers/until.ts";

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

/** Options of {@linkcode evaluate}, {@linkcode dumpDom} and {@linkcode screenshot}. */
export interface ChromiumOptions {
  /** Viewport width and height in CSS pixels, as a phone's or a desktop's. @default {[1280, 800]} */
  windowSize?: [number, number];
  /** Gives up (and kills the browser) after this long. @default {60_000} */
  timeoutMs?: number;
}

/** One page in a running browser: sends DevTools commands and resolves with their results. */
interface _Page {
  send(method: string, params?: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Resolves at the next event named `method` (e.g. `Page.loadEventFired`). */
  next(method: string): Promise<void>;
}

/**
 * Loads `url`, waits for its `load` event, and resolves with the value of `expression`
 * evaluated in the page (a JSON value; a promise is awaited).
 */
export async function evaluate<T>(
  url: string,
  expression: string,
  options: ChromiumOptions = {},
): Promise<T> {
  return await _withPage(url, options, async (page) => {
    const answer = await page.send("Runtime.evaluate", {
      expression: `(${expression})`,
      awaitPromise: true,
      returnByValue: true,
    });
    if (answer.exceptionDetails !== undefined) {
      throw new Error(`The page threw: ${JSON.stringify(answer.exceptionDetails)}`);
    }
    return (answer.result as { value: T }).value;
  });
}

/** Loads `url` in headless Chromium and resolves with the DOM after load, as HTML. */
export async function dumpDom(url: string, options: ChromiumOptions = {}): Promise<string> {
  return await evaluate<string>(url, "document.documentElement.outerHTML", options);
}

/**
 * Loads `url` at the window's width and writes a PNG of the whole page (as tall as its
 * content, at least the window) to `path`.
 */
export async function screenshot(
  url: string,
  path: string,
  options: ChromiumOptions = {},
): Promise<void> {
  const [width, height] = options.windowSize ?? [1280, 800];
  await _withPage(url, options, async (page) => {
    const metrics = await page.send("Page.getLayoutMetrics");
    const content = metrics.cssContentSize as { height: number };
    const clip = {
      x: 0,
      y: 0,
      width,
      height: Math.max(height, Math.ceil(content.height)),
      scale: 1,
    };
    const shot = await page.send("Page.captureScreenshot", {
      format: "png",
      clip,
      captureBeyondViewport: true,
    });
    await Deno.writeFile(path, Uint8Array.from(atob(shot.data as string), (c) => c.charCodeAt(0)));
  });
}

async function _withPage<T>(
  url: string,
  options: ChromiumOptions,
  work: (page: _Page) => Promise<T>,
): Promise<T> {
  const [width, height] = options.windowSize ?? [1280, 800];
  // A new empty profile each time: nothing from an earlier run (cache, cookies) can make a
  // test pass, and two runs never share a profile lock.
  const profile = await Deno.makeTempDir({ prefix: "chromium-profile-" });
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), options.timeoutMs ?? 60_000);
  const child = new Deno.Command(CHROMIUM_PATH, {
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
      "--hide-scrollbars",
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      `--window-size=${width},${height}`,
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
    signal: abort.signal,
  }).spawn();
  const log = { text: "" };
  const drained = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (log.text += chunk) }),
  ).catch(() => {});
  let socket: WebSocket | undefined;
  try {
    const detail = () => log.text.split("\n").slice(-5).join(" | ");
    await until(() => /DevTools listening on ws:\/\/[^/]+:(\d+)\//.test(log.text), "DevTools", {
      timeoutMs: options.timeoutMs ?? 60_000,
      detail,
    });
    const port = /DevTools listening on ws:\/\/[^/]+:(\d+)\//.exec(log.text)![1];
    let target: { webSocketDebuggerUrl: string } | undefined;
    await until(
      async () => {
        const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
        target = targets.find((t: { type: string; url: string }) => t.type === "page");
        return target !== undefined;
      },
      "the page's DevTools target",
      { detail },
    );
    socket = new WebSocket(target!.webSocketDebuggerUrl);
    const page = await _connect(socket);
    // The window sets the layout viewport; this makes the device say the same width (and,
    // under 600 px, that it is a phone).
    await page.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: 1,
      mobile: width < 600,
    });
    // Navigated only now, at that size, and handed over once loaded (its script has run).
    await page.send("Page.enable");
    const loaded = page.next("Page.loadEventFired");
    await page.send("Page.navigate", { url });
    await loaded;
    return await work(page);
  } finally {
    clearTimeout(timer);
    socket?.close();
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
    await drained;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

/** Resolves with a page whose commands go over `socket` once it is open. */
function _connect(socket: WebSocket): Promise<_Page> {
  let next = 1;
  const pending = new Map<number, (message: Record<string, unknown>) => void>();
  const waiting: { method: string; resolve: () => void }[] = [];
  socket.onmessage = (event) => {
    const message = JSON.parse(String(event.data));
    if (typeof message.id === "number") pending.get(message.id)?.(message);
    for (const w of waiting.filter((w) => w.method === message.method)) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
  };
  const page: _Page = {
    next: (method) => new Promise((resolve) => waiting.push({ method, resolve })),
    send: (method, params = {}) =>
      new Promise((resolve, reject) => {
        const id = next++;
        pending.set(id, (message) => {
          pending.delete(id);
          if (message.error) reject(new Error(`${method}: ${JSON.stringify(message.error)}`));
          else resolve(message.result as Record<string, unknown>);
        });
        socket.send(JSON.stringify({ id, method, params }));
      }),
  };
  return new Promise((resolve, reject) => {
    socket.onopen = () => resolve(page);
    socket.onerror = () => reject(new Error("Cannot reach Chromium's DevTools"));
  });
}
