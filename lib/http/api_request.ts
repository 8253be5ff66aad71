/**
 * One JSON request to a third-party API, with retries: the one place that sends, reports,
 * checks the status, retries and validates the answer, so each API client only states its
 * own rules (URLs, auth, which statuses are retryable and how they are worded).
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";
import type { z } from "zod";
import { zodProblems } from "../log/error_text.ts";
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { ApiError, type ApiErrorInit } from "./api_error.ts";
import { type HttpExchange, noAnswerText, parseJson, requestText } from "./request_json.ts";
import { parseRetryAfter, retry, type RetryPolicy } from "./retry.ts";

/** One HTTP exchange with an API, for metrics; reported after every attempt. */
export interface ApiRequestEvent {
  /** Method and path, e.g. `GET /lists/abc/members`. */
  endpoint: string;
  /** HTTP status; undefined when no answer came (network error, timeout). */
  status: number | undefined;
  /** Clock time of the attempt. */
  durationMs: number;
  /** Attempt number, from 1. */
  attempt: number;
}

/** An error answer (not 2xx), handed to {@linkcode ApiSettings.statusError} to word. */
export interface ApiErrorAnswer {
  /** The answer, body read. */
  exchange: HttpExchange;
  /** Method and path, e.g. `POST /v2/push`. */
  endpoint: string;
  /** The request's {@linkcode ApiRequestOptions.context} (`""` when none). */
  context: string;
  /** The `X-Request-Id` header, if any. */
  requestId: string | undefined;
  /** The `Retry-After` header in milliseconds from now, if any. */
  retryAfterMs: number | undefined;
}

/** What stays the same for every request to one API: a client builds it once. */
export interface ApiSettings {
  /** The API's name, first word of every message, e.g. `Mailchimp`. */
  api: string;
  /** Base URL the request path is appended to, without a trailing `/`. */
  baseUrl: string;
  /** The fetch to use. */
  fetch: typeof globalThis.fetch;
  /** Time of timeouts, backoff and durations. */
  clock: Clock;
  /** Where retries and failing `onRequest` hooks are logged. */
  logger: Logger;
  /** Per-attempt limit for the whole answer, in milliseconds. */
  timeoutMs: number;
  /** Retry tuning; `false` makes one attempt whose error is thrown as it is. @default {{}} */
  retry?: RetryPolicy | false;
  /**
   * Runs each attempt, e.g. inside a connection slot or after a rate limiter's turn. Backoff
   * sleeps happen outside it, so nothing it holds is held while waiting to retry.
   * @default {(attempt) => attempt()}
   */
  gate?: (attempt: () => Promise<HttpExchange>, signal: AbortSignal) => Promise<HttpExchange>;
  /** Sees every answer, error answers included, before its status is judged. */
  onAnswer?: (exchange: HttpExchange) => void;
  /** Called after every attempt (metrics); a hook that throws is logged, never fatal. */
  onRequest?: ((event: ApiRequestEvent) => void) | undefined;
  /** Builds the API's own error class (e.g. `MailchimpError`) for no answer or a bad body. */
  newError: (init: ApiErrorInit) => ApiError;
  /**
   * The API's rule for an error answer: its wording and whether it is retryable. Whatever it
   * returns is thrown, then retried when `retryable`.
   */
  statusError: (answer: ApiErrorAnswer) => ApiError;
}

/** Options of {@linkcode apiRequest}: the API's settings plus this request's own. */
export interface ApiRequestOptions extends ApiSettings {
  /** HTTP method. @default {"GET"} */
  method?: string;
  /** Query string; never named in messages. */
  query?: URLSearchParams;
  /** Request headers (auth included: they never appear in messages). */
  headers?: Record<string, string>;
  /** Request body. */
  body?: string;
  /** Words after the endpoint in messages, e.g. ` for batch "list1 page 3"`. @default {""} */
  context?: string;
  /** Aborting stops the request and its retries with the signal's reason. */
  signal?: AbortSignal | undefined;
}

/** A validated answer with the exchange it came from (headers, status). */
export interface ApiAnswer<T> {
  /** The body, parsed and validated. */
  value: T;
  /** The successful exchange. */
  exchange: HttpExchange;
}

/**
 * Sends `method path` to the API until an attempt is answered with a 2xx, then validates
 * the body against `schema`. No answer (network error, timeout) is retryable; an error answer
 * becomes whatever `statusError` says; retries honour `Retry-After` and are logged as a
 * warning. A body that is not JSON or not what `schema` wants throws a non-retryable
 * `newError` naming the endpoint and request id. Giving up on retries throws a `RetryError`
 * whose `cause` is the last error.
 */
export async function apiRequest<S extends z.ZodType>(
  path: string,
  schema: S,
  options: ApiRequestOptions,
): Promise<ApiAnswer<z.output<S>>> {
  const { api, logger, newError, signal } = options;
  const endpoint = `${options.method ?? "GET"} ${path}`;
  const context = options.context ?? "";
  const search = options.query?.toString() ?? "";
  const url = `${options.baseUrl}${path}${search ? `?${search}` : ""}`;
  const gate = options.gate ?? ((attempt) => attempt());
  const attempt = (n: number, sig: AbortSignal) =>
    gate(() => _attempt(url, endpoint, context, n, sig, options), sig);

  let exchange: HttpExchange;
  if (options.retry === false) {
    exchange = await attempt(1, signal ?? new AbortController().signal);
  } else {
    const { onFailedAttempt, ...policy } = options.retry ?? {};
    exchange = await retry(attempt, {
      ...policy,
      clock: options.clock,
      signal,
      shouldRetry: (error) => error instanceof ApiError && error.retryable,
      retryAfterMs: (error) => error instanceof ApiError ? error.retryAfterMs : undefined,
      onFailedAttempt: (info) => {
        logger.warn(
          "{api} {endpoint}{context} attempt {attempt} failed, retrying in {delayMs} ms: {error}",
          {
            api,
            endpoint,
            context,
            attempt: info.attempt,
            delayMs: info.delayMs,
            error: errorText(info.error),
          },
        );
        onFailedAttempt?.(info);
      },
    });
  }

  // A 204 has no body by definition (Mailchimp answers a DELETE so): it is checked as undefined.
  const json = exchange.status === 204 && exchange.text.trim() === ""
    ? { ok: true as const, value: undefined }
    : parseJson(exchange.text);
  let what: string;
  if (json.ok) {
    const parsed = schema.safeParse(json.value);
    if (parsed.success) return { value: parsed.data, exchange };
    what = zodProblems(parsed.error, 3);
  } else {
    what = json.message;
  }
  const { status, headers } = exchange;
  const requestId = headers.get("x-request-id") ?? undefined;
  // 200 is what a good answer has; any other status is a clue worth the words.
  throw newError({
    message: `${api} ${endpoint}${context} returned a malformed response${
      status === 200 ? "" : ` (${status})`
    }: ${what}${requestId ? ` (request id ${requestId})` : ""}`,
    endpoint,
    status,
    requestId,
    retryable: false,
  });
}

/** One attempt: the 2xx answer, or the API's error for no answer or an error answer. */
async function _attempt(
  url: string,
  endpoint: string,
  context: string,
  attempt: number,
  signal: AbortSignal,
  options: ApiRequestOptions,
): Promise<HttpExchange> {
  const { clock } = options;
  const started = clock.now();
  let exchange: HttpExchange;
  try {
    exchange = await requestText(url, {
      fetch: options.fetch,
      clock,
      timeoutMs: options.timeoutMs,
      signal,
      method: options.method ?? "GET",
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.body !== undefined ? { body: options.body } : {}),
    });
  } catch (error) {
    if (signal.aborted) throw error;
    _report(options, { endpoint, status: undefined, durationMs: clock.now() - started, attempt });
    throw options.newError({
      message: `${options.api} ${endpoint}${context} failed: ${noAnswerText(error)}`,
      endpoint,
      retryable: true,
      cause: error,
    });
  }
  _report(options, { endpoint, status: exchange.status, durationMs: exchange.durationMs, attempt });
  options.onAnswer?.(exchange);
  if (exchange.status >= 200 && exchange.status <= 299) return exchange;
  const { headers } = exchange;
  throw options.statusError({
    exchange,
    endpoint,
    context,
    requestId: headers.get("x-request-id") ?? undefined,
    retryAfterMs: parseRetryAfter(headers.get("retry-after"), clock.now()),
  });
}

function _report(options: ApiRequestOptions, event: ApiRequestEvent): void {
  try {
    options.onRequest?.(event);
  } catch (error) {
    // Metrics must never break a request.
    options.logger.warn("onRequest hook failed: {error}", { error: String(error) });
  }
}
