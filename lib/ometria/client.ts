/**
 * The Ometria client: pushes batches of records to the Data API (`POST /v2/push`) or to the
 * original tool's legacy endpoint (`POST /record`), within Ometria's batch, record-size and
 * rate limits, retrying transient failures.
 *
 * @module
 */
import { z } from "zod";
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import type { RateLimiter } from "../http/rate_limiter.ts";
import {
  bodySnippet,
  describeZodError,
  type HttpExchange,
  isRetryableStatus,
  noAnswerText,
  parseJson,
  requestText,
} from "../http/request_json.ts";
import { parseRetryAfter, retry, type RetryPolicy } from "../http/retry.ts";
import { quietLogger } from "../log/logging.ts";
import type { OmetriaRecord } from "../mapping/contact.ts";

/** Which Ometria endpoint a client writes to. */
export type OmetriaEndpoint = "push" | "record";

/** One HTTP exchange with Ometria, for metrics; reported after every attempt. */
export interface OmetriaRequestEvent {
  /** Method and path, e.g. `POST /v2/push`. */
  endpoint: string;
  /** HTTP status; undefined when no answer came (network error, timeout). */
  status: number | undefined;
  /** Clock time of the attempt. */
  durationMs: number;
  /** Attempt number, from 1. */
  attempt: number;
}

/** Options of {@linkcode OmetriaClient}. */
export interface OmetriaClientOptions {
  /** The API key (sent only in a header). */
  apiKey: string;
  /** Base URL without a path; clients append `/v2/push` or `/record`. @default {"https://api.ometria.com"} */
  baseUrl?: string;
  /** `push` for the Data API v2, `record` for the original tool's legacy endpoint. */
  endpoint: OmetriaEndpoint;
  /** @default {globalThis.fetch} */
  fetch?: typeof globalThis.fetch;
  /** Time of timeouts, backoff and durations. */
  clock: Clock;
  /** Where retries, oversized records and queue pauses are logged. @default {quietLogger()} */
  logger?: Logger;
  /** The account's shared rate limiter: every request acquires it first. */
  rateLimiter: RateLimiter;
  /** Retry tuning (attempts, budget, delays, jitter, `onFailedAttempt`). */
  retry?: RetryPolicy;
  /** Per-attempt limit for the whole answer, in milliseconds. @default {30_000} */
  timeoutMs?: number;
  /** Most records per request (Ometria's limit). @default {100} */
  maxBatchSize?: number;
  /** Largest record, in bytes of its JSON, that is sent (Ometria's 60 KB). @default {61_440} */
  maxRecordBytes?: number;
  /** Called after every attempt (metrics). */
  onRequest?: (event: OmetriaRequestEvent) => void;
  /**
   * Where the user set the key, named in messages about it (never the key itself).
   * @default {"OMETRIA_API_KEY"}
   */
  keyName?: string;
}

/** Options of {@linkcode OmetriaClient.push}. */
export interface PushOptions {
  /** Aborting stops the push and its retries. */
  signal?: AbortSignal | undefined;
  /** Names the batch in logs and errors, e.g. `list abc page 3`. */
  label?: string | undefined;
}

/** What Ometria said about one batch. */
export interface PushResult {
  /** Records Ometria accepted. */
  accepted: number;
  /** Records Ometria rejected plus those too large to send; above 0 is a failure to report. */
  rejected: number;
  /** Ids of the records not sent because their JSON exceeds `maxRecordBytes`. */
  tooLarge: string[];
  /** Ometria's request id, to quote to support. */
  requestId?: string;
  /** `X-QueueSize-Remaining`: room left in Ometria's ingest queue. */
  queueRemaining?: number;
  /**
   * Up to 5 recent messages of `GET /v2/push/_errors` (`path: message`) when Ometria rejected
   * records. That list is account-wide, so it may include errors of other batches.
   */
  errors?: string[];
}

/** What {@linkcode OmetriaError} is built from. */
export interface OmetriaErrorInit {
  /** Full message. */
  message: string;
  /** Method and path, e.g. `POST /v2/push` (never the key). */
  endpoint: string;
  /** HTTP status; undefined when no answer came. */
  status?: number | undefined;
  /** Ometria's request id (header `X-Request-Id` or the body's `request_id`). */
  requestId?: string | undefined;
  /** Whether another attempt may succeed. */
  retryable?: boolean;
  /** How long the server asked to wait (`Retry-After`), in milliseconds. */
  retryAfterMs?: number | undefined;
  /** The underlying error (network error, timeout). */
  cause?: unknown;
}

/**
 * An Ometria request that failed: an error answer, no answer (`status` undefined) or an
 * answer that is not what the API documents. The message names the endpoint and the batch
 * and says what to do, e.g. "Ometria rejected the API key (401): check OMETRIA_API_KEY".
 */
export class OmetriaError extends Error {
  /** Method and path, e.g. `POST /v2/push`. */
  readonly endpoint: string;
  /** HTTP status; undefined when no answer came. */
  readonly status: number | undefined;
  /** Ometria's request id. */
  readonly requestId: string | undefined;
  /** Whether another attempt may succeed. */
  readonly retryable: boolean;
  /** How long the server asked to wait, in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(init: OmetriaErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "OmetriaError";
    this.endpoint = init.endpoint;
    this.status = init.status;
    this.requestId = init.requestId;
    this.retryable = init.retryable ?? false;
    this.retryAfterMs = init.retryAfterMs;
  }
}

/** Splits `items` into consecutive slices of at most `size` (the last may be shorter). */
export function batches<T>(items: readonly T[], size: number): T[][] {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(
      `Cannot split into batches as 'size' must be an integer >= 1: current value ${size}`,
    );
  }
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const _pushSchema = z.object({
  status: z.literal("OK"),
  request_id: z.string().optional(),
  accepted: z.number().int().nonnegative(),
  rejected: z.number().int().nonnegative(),
});

// The original endpoint answered `{"status":"Ok","response":1}`; its `response` meant nothing more.
const _recordSchema = z.object({ status: z.string().regex(/^ok$/i, 'expected "Ok"') });

const _pushErrorSchema = z.object({
  error_message: z.string(),
  error_path: z.string().optional(),
}).loose();

const _errorsSchema = z.union([
  z.array(_pushErrorSchema),
  z.object({ errors: z.array(_pushErrorSchema) }).transform((v) => v.errors),
  z.object({ data: z.array(_pushErrorSchema) }).transform((v) => v.data),
]);

const _errorBodySchema = z.object({
  message: z.string().optional(),
  error: z.string().optional(),
  detail: z.string().optional(),
}).loose();

/** Below this share of the ingest queue left, pushes slow down so the queue can drain. */
const _QUEUE_LOW = 0.1;

/**
 * Writes records to one Ometria account. Every request first acquires the account's shared
 * {@linkcode RateLimiter}; network errors, timeouts, 408, 429 and 5xx are retried (a 429 also
 * pauses the limiter for everyone), and when Ometria's ingest queue runs low the limiter is
 * paused for 1 to 5 s. Other errors and malformed answers throw {@linkcode OmetriaError} at
 * once; giving up on retries throws a `RetryError` whose `cause` is the last one.
 */
export class OmetriaClient {
  #apiKey: string;
  #baseUrl: string;
  #endpoint: OmetriaEndpoint;
  #fetch: typeof globalThis.fetch;
  #clock: Clock;
  #logger: Logger;
  #rateLimiter: RateLimiter;
  #retry: RetryPolicy;
  #timeoutMs: number;
  #keyName: string;
  #maxBatchSize: number;
  #maxRecordBytes: number;
  #onRequest: ((event: OmetriaRequestEvent) => void) | undefined;

  constructor(options: OmetriaClientOptions) {
    if (!options.apiKey) throw new TypeError("Cannot create an Ometria client without an API key");
    this.#apiKey = options.apiKey;
    this.#baseUrl = (options.baseUrl ?? "https://api.ometria.com").replace(/\/+$/, "");
    this.#endpoint = options.endpoint;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#clock = options.clock;
    this.#logger = options.logger ?? quietLogger();
    this.#rateLimiter = options.rateLimiter;
    this.#retry = options.retry ?? {};
    this.#timeoutMs = _positive("timeoutMs", options.timeoutMs ?? 30_000);
    this.#keyName = options.keyName ?? "OMETRIA_API_KEY";
    this.#maxBatchSize = _positive("maxBatchSize", options.maxBatchSize ?? 100);
    this.#maxRecordBytes = _positive("maxRecordBytes", options.maxRecordBytes ?? 61_440);
    this.#onRequest = options.onRequest;
  }

  /** Most records per {@linkcode OmetriaClient.push}. */
  get maxBatchSize(): number {
    return this.#maxBatchSize;
  }

  /**
   * Sends one batch of at most `maxBatchSize` records (a `RangeError` otherwise). Records
   * whose JSON exceeds `maxRecordBytes` are not sent: they are logged as errors, listed in
   * `tooLarge` and counted as rejected. When Ometria rejects records, up to 5 messages of
   * `GET /v2/push/_errors` come back in `errors`, best effort.
   */
  async push(records: readonly OmetriaRecord[], opts: PushOptions = {}): Promise<PushResult> {
    if (records.length > this.#maxBatchSize) {
      throw new RangeError(
        `Cannot push ${records.length} records in one request: at most ${this.#maxBatchSize}`,
      );
    }
    const { signal, label } = opts;
    const toSend: OmetriaRecord[] = [];
    const tooLarge: string[] = [];
    const encoder = new TextEncoder();
    for (const record of records) {
      const bytes = encoder.encode(JSON.stringify(record)).length;
      if (bytes > this.#maxRecordBytes) {
        tooLarge.push(record.id);
        this.#logger.error(
          "Ometria record {id}{batch} is too large to send ({bytes} bytes, at most {max}): skipped",
          { id: record.id, batch: _batch(label), bytes, max: this.#maxRecordBytes },
        );
      } else {
        toSend.push(record);
      }
    }
    if (toSend.length === 0) return { accepted: 0, rejected: tooLarge.length, tooLarge };

    const path = this.#endpoint === "push" ? "/v2/push" : "/record";
    const endpoint = `POST ${path}`;
    const body = JSON.stringify(toSend);
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.#endpoint === "push") headers["X-Ometria-Auth"] = this.#apiKey;
    else headers["Authorization"] = this.#apiKey;

    // A POST is retried, even after an answer was lost, only because a push is an idempotent
    // upsert on (@type, @collection, id): writing the same record twice stores one record.
    const exchange = await this.#withRetry(
      endpoint,
      label,
      signal,
      (attempt, sig) =>
        this.#send(`${this.#baseUrl}${path}`, endpoint, label, attempt, sig, {
          method: "POST",
          headers,
          body,
        }),
    );

    const result: PushResult = { accepted: 0, rejected: tooLarge.length, tooLarge };
    const queueRemaining = _number(exchange.headers.get("x-queuesize-remaining"));
    if (queueRemaining !== undefined) result.queueRemaining = queueRemaining;
    const headerId = exchange.headers.get("x-request-id") ?? undefined;
    if (this.#endpoint === "record") {
      this.#parse(exchange, endpoint, label, _recordSchema);
      result.accepted = toSend.length;
      if (headerId !== undefined) result.requestId = headerId;
      return result;
    }
    const answer = this.#parse(exchange, endpoint, label, _pushSchema);
    result.accepted = answer.accepted;
    result.rejected += answer.rejected;
    const requestId = answer.request_id ?? headerId;
    if (requestId !== undefined) result.requestId = requestId;
    if (answer.rejected > 0) {
      const errors = await this.#recentErrors(label, signal);
      if (errors !== undefined) result.errors = errors;
    }
    return result;
  }

  #withRetry(
    endpoint: string,
    label: string | undefined,
    signal: AbortSignal | undefined,
    fn: (attempt: number, signal: AbortSignal) => Promise<HttpExchange>,
  ): Promise<HttpExchange> {
    const { onFailedAttempt, ...policy } = this.#retry;
    return retry(fn, {
      ...policy,
      clock: this.#clock,
      signal,
      shouldRetry: (error) => error instanceof OmetriaError && error.retryable,
      retryAfterMs: (error) => error instanceof OmetriaError ? error.retryAfterMs : undefined,
      onFailedAttempt: (info) => {
        this.#logger.warn(
          "Ometria {endpoint}{batch} attempt {attempt} failed, retrying in {delayMs} ms: {error}",
          {
            endpoint,
            batch: _batch(label),
            attempt: info.attempt,
            delayMs: info.delayMs,
            error: info.error instanceof Error ? info.error.message : String(info.error),
          },
        );
        onFailedAttempt?.(info);
      },
    });
  }

  /** One attempt: waits for the rate limiter, sends, and turns error answers into errors. */
  async #send(
    url: string,
    endpoint: string,
    label: string | undefined,
    attempt: number,
    signal: AbortSignal,
    init: { method: string; headers: Record<string, string>; body?: string },
  ): Promise<HttpExchange> {
    await this.#rateLimiter.acquire(signal);
    const started = this.#clock.now();
    let exchange: HttpExchange;
    try {
      exchange = await requestText(url, {
        fetch: this.#fetch,
        clock: this.#clock,
        timeoutMs: this.#timeoutMs,
        signal,
        ...init,
      });
    } catch (error) {
      if (signal.aborted) throw error;
      this.#report({
        endpoint,
        status: undefined,
        durationMs: this.#clock.now() - started,
        attempt,
      });
      const why = noAnswerText(error);
      throw new OmetriaError({
        message: `Ometria ${endpoint}${_batch(label)} failed: ${why}`,
        endpoint,
        retryable: true,
        cause: error,
      });
    }
    this.#report({ endpoint, status: exchange.status, durationMs: exchange.durationMs, attempt });
    this.#watchQueue(exchange.headers);
    if (exchange.status >= 200 && exchange.status <= 299) return exchange;
    throw this.#statusError(exchange, endpoint, label);
  }

  /** Pauses everyone for 1 to 5 s, the lower the queue the longer, when it is nearly full. */
  #watchQueue(headers: Headers): void {
    const limit = _number(headers.get("x-queuesize-limit"));
    const remaining = _number(headers.get("x-queuesize-remaining"));
    if (limit === undefined || remaining === undefined || limit <= 0) return;
    const low = limit * _QUEUE_LOW;
    if (remaining >= low) return;
    const pauseMs = Math.round(1000 + 4000 * (1 - remaining / low));
    this.#logger.info(
      "Ometria ingest queue is low ({remaining} of {limit} left): pausing pushes {pauseMs} ms",
      { remaining, limit, pauseMs },
    );
    this.#rateLimiter.pause(pauseMs);
  }

  #statusError(exchange: HttpExchange, endpoint: string, label: string | undefined): OmetriaError {
    const { status, headers, text } = exchange;
    const requestId = headers.get("x-request-id") ?? undefined;
    const retryAfterMs = parseRetryAfter(headers.get("retry-after"), this.#clock.now());
    if (status === 429) this.#rateLimiter.pause(retryAfterMs ?? 1000);
    const json = parseJson(text);
    const parsed = json.ok ? _errorBodySchema.safeParse(json.value) : undefined;
    const said =
      (parsed?.success
        ? parsed.data.message ?? parsed.data.error ?? parsed.data.detail
        : undefined) ?? (text.trim() ? bodySnippet(text) : "(empty body)");
    const id = requestId ? ` (request id ${requestId})` : "";
    let message: string;
    if (status === 401) {
      message = `Ometria rejected the API key (401): check ${this.#keyName} (${endpoint}${
        _batch(label)
      }: ${said}${id})`;
    } else if (status === 403) {
      message = `Ometria refused ${endpoint}${
        _batch(label)
      } (403): check that ${this.#keyName} may write data: ${said}${id}`;
    } else if (status === 400 || status === 413 || status === 422) {
      message = `Ometria refused the whole batch at ${endpoint}${
        _batch(label)
      } (${status}): ${said}; fix the records and run again${id}`;
    } else {
      message = `Ometria ${endpoint}${_batch(label)} failed: ${status} ${said}${id}`;
    }
    return new OmetriaError({
      message,
      endpoint,
      status,
      requestId,
      retryable: isRetryableStatus(status),
      retryAfterMs,
    });
  }

  #parse<S extends z.ZodType>(
    exchange: HttpExchange,
    endpoint: string,
    label: string | undefined,
    schema: S,
  ): z.output<S> {
    const json = parseJson(exchange.text);
    let what: string;
    if (json.ok) {
      const parsed = schema.safeParse(json.value);
      if (parsed.success) return parsed.data;
      what = describeZodError(parsed.error);
    } else {
      what = json.message;
    }
    const requestId = exchange.headers.get("x-request-id") ?? undefined;
    throw new OmetriaError({
      message: `Ometria ${endpoint}${
        _batch(label)
      } returned a malformed response (${exchange.status}): ${what}${
        requestId ? ` (request id ${requestId})` : ""
      }`,
      endpoint,
      status: exchange.status,
      requestId,
      retryable: false,
    });
  }

  /** The latest messages of `GET /v2/push/_errors`, or undefined when they cannot be had. */
  async #recentErrors(
    label: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<string[] | undefined> {
    const endpoint = "GET /v2/push/_errors";
    try {
      // One attempt only: these messages explain a failure, they are not worth a delay.
      const exchange = await this.#send(
        `${this.#baseUrl}/v2/push/_errors`,
        endpoint,
        label,
        1,
        signal ?? new AbortController().signal,
        { method: "GET", headers: { "X-Ometria-Auth": this.#apiKey } },
      );
      const errors = this.#parse(exchange, endpoint, label, _errorsSchema);
      // The list is oldest first: the last entries are the likeliest to be this batch's.
      return errors.slice(-5).map((e) =>
        e.error_path ? `${e.error_path}: ${e.error_message}` : e.error_message
      );
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      this.#logger.warn("Could not read Ometria's push errors{batch}: {error}", {
        batch: _batch(label),
        error: error instanceof Error ? error.message : String(error),
      });
      return undefined;
    }
  }

  #report(event: OmetriaRequestEvent): void {
    try {
      this.#onRequest?.(event);
    } catch (error) {
      // Metrics must never break a request.
      this.#logger.warn("onRequest hook failed: {error}", { error: String(error) });
    }
  }
}

function _batch(label: string | undefined): string {
  return label ? ` for batch ${JSON.stringify(label)}` : "";
}

function _number(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

function _positive(name: string, value: number): number {
  if (!(value > 0)) {
    throw new RangeError(
      `Cannot create an Ometria client as '${name}' must be > 0: current value ${value}`,
    );
  }
  return value;
}
