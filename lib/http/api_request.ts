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
import { ThrottleLog } from "./throttle_log.ts";

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
  /**
   * Where the client's 429s are told, once a storm (see `ThrottleLog`); one per client, so a
   * storm over many requests is one line. @default {a ThrottleLog of this request alone}
   */
  throttles?: ThrottleLog;
  /**
   * The deadline of the run in progress (clock time), read at each request: no wait for
   * the API's rate limit may end after it (see `RetryOptions.deadline`). Undefined outside
   * a run: throttles are then bounded by the retry budget.
   */
  deadline?: () => number | undefined;
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
  body?: string | Uint8Array<ArrayBuffer>;
  /** Words after the endpoint in messages, e.g. ` for batch "list1 page 3"`. @default {""} */
  context?: string;
  /** Aborting stops the request and its retries with the signal's reason. */
  signal?: AbortSignal | undefined;
  /**
   * Called right before every attempt is sent (after any rate-limit wait); a throw stops the
   * request with that error, unretried. A connection's writer checks its lease here, so no
   * attempt goes out once this process may no longer write the connection.
   */
  beforeAttempt?: (() => void) | undefined;
}

/** A validated answer with the exchange it came from (headers, status). */
export interface ApiAnswer<T> {
  /** The body, parsed and validated. */
  value: T;
  /** The successful exchange. */
  exchange: HttpExchange;
}

/**
 * Sends `method path` to the API until an attempt is answered with a 2xx whose body is JSON,
 * then validates it against `schema`. No answer (network error, timeout) and a 2xx body that
 * is not JSON (cut short, an HTML page) are retryable; an error answer becomes whatever
 * `statusError` says; retries honour `Retry-After` and are logged as a warning, except 429s,
 * which are the API's pace: told once a storm (`throttles`), retried until the run's
 * `deadline`. JSON that is not what `schema` wants throws a non-retryable `newError` naming
 * the endpoint and request id, never quoting the body. Giving up on retries throws a
 * `RetryError` (or a `DeadlineError`) whose `cause` is the last error.
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
  const throttles = options.throttles ?? new ThrottleLog({ api, logger, clock: options.clock });
  const attempt = async (n: number, sig: AbortSignal) => {
    const exchange = await gate(() => {
      options.beforeAttempt?.();
      return _attempt(url, endpoint, context, n, sig, options);
    }, sig);
    throttles.answered();
    // A body that is not JSON at all (cut short, a proxy's HTML page) is the way there, not
    // the API's answer: worth another attempt. JSON of the wrong shape is not. A 204 has no
    // body by definition (Mailchimp answers a DELETE so): it is checked as undefined.
    if (exchange.status === 204 && exchange.text.trim() === "") {
      return { exchange, json: undefined };
    }
    const json = parseJson(exchange.text);
    if (json.ok) return { exchange, json: json.value };
    throw options.newError(_malformed(options, endpoint, context, exchange, json.message, true));
  };

  let answer: { exchange: HttpExchange; json: unknown };
  if (options.retry === false) {
    answer = await attempt(1, signal ?? new AbortController().signal);
  } else {
    const { onFailedAttempt, ...policy } = options.retry ?? {};
    answer = await retry(attempt, {
      ...policy,
      clock: options.clock,
      signal,
      deadline: options.deadline?.(),
      shouldRetry: (error, n) =>
        error instanceof ApiError && error.retryable && n < (error.maxAttempts ?? Infinity),
      isThrottle: (error) => error instanceof ApiError && error.status === 429,
      retryAfterMs: (error) => error instanceof ApiError ? error.retryAfterMs : undefined,
      onFailedAttempt: (info) => {
        if (info.throttled) throttles.throttled(endpoint, info.delayMs);
        else {
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
        }
        onFailedAttempt?.(info);
      },
    });
  }

  const { exchange, json } = answer;
  const parsed = schema.safeParse(json);
  if (parsed.success) return { value: parsed.data, exchange };
  throw newError(
    _malformed(options, endpoint, context, exchange, zodProblems(parsed.error, 3), false),
  );
}

/**
 * What a 2xx answer whose body is not what the API documents is built from: the endpoint,
 * what is wrong, the status when not 200 (a clue worth the words) and the request id. The
 * body itself is never quoted: a members page would put member data into logs and the state.
 */
function _malformed(
  options: ApiRequestOptions,
  endpoint: string,
  context: string,
  exchange: HttpExchange,
  what: string,
  retryable: boolean,
): ApiErrorInit {
  const { status, headers } = exchange;
  const requestId = headers.get("x-request-id") ?? undefined;
  return {
    message: `${options.api} ${endpoint}${context} returned a malformed response${
      status === 200 ? "" : ` (${status})`
    }: ${what}${requestId ? ` (request id ${requestId})` : ""}`,
    endpoint,
    status,
    requestId,
    retryable,
  };
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
