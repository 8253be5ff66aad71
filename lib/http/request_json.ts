/**
 * One HTTP exchange with a timeout, read to the end, plus the small helpers that
 * `apiRequest` and the API clients' status rules need to judge an answer (retryable
 * statuses, JSON and zod messages).
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";
import type { z } from "zod";
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
  body?: string;
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
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new HttpTimeoutError(timeoutMs)), timeoutMs);
  const combined = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
  const started = clock.now();
  try {
    const response = await options.fetch(url, {
      method: options.method ?? "GET",
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.body !== undefined ? { body: options.body } : {}),
      signal: combined,
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
    if (timeout.signal.aborted) throw timeout.signal.reason;
    throw error;
  } finally {
    clearTimeout(timer);
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

/** Parses JSON text without throwing, describing what was wrong when it is not JSON. */
export function parseJson(text: string): JsonParse {
  if (text.trim() === "") return { ok: false, message: "the body is empty, not JSON" };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    const snippet = text.length > 60 ? `${text.slice(0, 60)}…` : text;
    return {
      ok: false,
      message: `the body is not JSON (${errorText(error)}): ${JSON.stringify(snippet)}`,
    };
  }
}

/**
 * The first problems of a zod error as `path: message` (e.g.
 * `members[3].status: Invalid option: expected one of …`), joined with "; ".
 */
export function describeZodError(error: z.ZodError, max = 3): string {
  const parts = error.issues.slice(0, max).map((issue) => {
    const path = _path(issue.path);
    return path ? `${path}: ${issue.message}` : issue.message;
  });
  const more = error.issues.length - max;
  return parts.join("; ") + (more > 0 ? ` (and ${more} more)` : "");
}

/** A short, single-line excerpt of a body for error messages. */
export function bodySnippet(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

function _path(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}
