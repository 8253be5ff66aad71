/**
 * One HTTP exchange with a timeout, read to the end, plus the small helpers that
 * `apiRequest` and the API clients' status rules need to judge an answer (retryable
 * statuses, JSON and zod messages).
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";
import type { Clock } from "../clock/clock.ts";

/** Thrown by {@linkcode requestText} when the answer (headers and body) took too long. */
export class HttpTimeoutError extends Error {
  /** The limit that was reached, in milliseconds. */
  readonly timeoutMs: number;

  constructor(timeoutMs: number) {
    super(`no complete answer within ${timeoutMs} ms`);
    this.name = "HttpTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/** An answer whose body has been read completely. */
export interface HttpExchange {
  /** HTTP status code. */
  status: number;
  /** Response headers. */
  headers: Headers;
  /** The whole body as text. */
  text: string;
  /** Clock time from sending to the end of the body. */
  durationMs: number;
}

/** Options of {@linkcode requestText}. */
export interface RequestTextOptions {
  /** The fetch to use (tests and `main.ts` hand it in). */
  fetch: typeof globalThis.fetch;
  /** Time of `durationMs`. */
  clock: Clock;
  /** Limit for the whole exchange, headers and body, in milliseconds. */
  timeoutMs: number;
  /** Aborting cancels the request and rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
  /** HTTP method. @default {"GET"} */
  method?: string;
  /** Request headers. */
  headers?: HeadersInit;
  /** Request body. */
  body?: string | Uint8Array<ArrayBuffer>;
}

/**
 * Sends one request and reads its body to the end, so no response body is ever left
 * unconsumed. The timeout covers the body too: a server that sends headers and then stalls is
 * also cut off. It bounds real network time, so it runs on a real timer, not the injected
 * clock: a fake clock that jumps over backoff sleeps must not also fire every timeout. Rejects with the
 * caller's abort reason, a {@linkcode HttpTimeoutError}, or fetch's own network error.
 */
export async function requestText(url: string, options: RequestTextOptions): Promise<HttpExchange> {
  const { clock, timeoutMs, signal } = options;
  signal?.throwIfAborted();
  // One controller for both ways to stop: the timer and the caller's signal, whose abort is
  // passed on by a listener removed at the end (AbortSignal.any cost about 5 µs a request,
  // and left a weak reference on the caller's long-lived signal for each).
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(new HttpTimeoutError(timeoutMs)), timeoutMs);
  const passOn = () => stop.abort(signal?.reason);
  signal?.addEventListener("abort", passOn, { once: true });
  const started = clock.now();
  try {
    const response = await options.fetch(url, {
      method: options.method ?? "GET",
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.body !== undefined ? { body: options.body } : {}),
      signal: stop.signal,
    });
    const text = await response.text();
    return {
      status: response.status,
      headers: response.headers,
      text,
      durationMs: clock.now() - started,
    };
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    if (stop.signal.aborted) throw stop.signal.reason;
    throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", passOn);
  }
}

/** Says why a request got no answer: a timeout, or the network error itself. */
export function noAnswerText(error: unknown): string {
  return error instanceof HttpTimeoutError ? error.message : `no answer (${errorText(error)})`;
}

/** Statuses worth another attempt on any API: 408, 429 and every 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

/** The outcome of {@linkcode parseJson}. */
export type JsonParse = { ok: true; value: unknown } | { ok: false; message: string };

/**
 * Parses JSON text without throwing, describing what was wrong when it is not JSON: empty,
 * an HTML page, or where the text stops being JSON and how long it is. The text itself is
 * never quoted (V8's own message quotes it): an answer's body may be member data.
 */
export function parseJson(text: string): JsonParse {
  if (text.trim() === "") return { ok: false, message: "the body is empty, not JSON" };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    const size = `${text.length.toLocaleString("en-US")} characters`;
    if (/^\s*</.test(text)) {
      return { ok: false, message: `the body is not JSON but an HTML page (${size})` };
    }
    const at = /at position (\d+)/.exec(errorText(error))?.[1];
    const cut = /end of (JSON )?input|Unterminated/i.test(errorText(error)) ||
      (at !== undefined && Number(at) >= text.length);
    const where = cut
      ? `it ends before its JSON does, after ${size}: cut short`
      : at !== undefined
      ? `it breaks at character ${Number(at).toLocaleString("en-US")} of ${size}`
      : `${size}`;
    return { ok: false, message: `the body is not JSON (${where})` };
  }
}

/** A short, single-line excerpt of a body for error messages. */
export function bodySnippet(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
