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
import { ApiError, type ApiErrorInit } from "../http/api_error.ts";
import {
  type ApiErrorAnswer,
  apiRequest,
  type ApiRequestEvent,
  type ApiSettings,
} from "../http/api_request.ts";
import type { RateLimiter } from "../http/rate_limiter.ts";
import {
  bodySnippet,
  type HttpExchange,
  isRetryableStatus,
  parseJson,
} from "../http/request_json.ts";
import type { RetryPolicy } from "../http/retry.ts";
import { quietLogger } from "../log/logging.ts";
import type { OmetriaRecord } from "../mapping/contact.ts";

/** Which Ometria endpoint a client writes to. */
export type OmetriaEndpoint = "push" | "record";

/** One HTTP exchange with Ometria, for metrics; reported after every attempt. */
export type OmetriaRequestEvent = ApiRequestEvent;

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

/** What {@linkcode OmetriaError} is built from; `requestId` may come from the body. */
export type OmetriaErrorInit = ApiErrorInit;

/**
 * An Ometria request that failed: an error answer, no answer (`status` undefined) or an
 * answer that is not what the API documents. The message names the endpoint and the batch
 * and says what to do, e.g. "Ometria rejected the API key (401): check OMETRIA_API_KEY".
 * It is an {@linkcode ApiError}, so code common to both APIs can catch that instead.
 */
export class OmetriaError extends ApiError {
  constructor(init: OmetriaErrorInit) {
    super(init);
    this.name = "OmetriaError";
  }
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

/** Ometria's documented ingest queue, used when `X-QueueSize-Limit` is missing. */
const _QUEUE_LIMIT = 50_000;

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
  #api: ApiSettings;
  #apiKey: string;
  #endpoint: OmetriaEndpoint;
  #logger: Logger;
  #rateLimiter: RateLimiter;
  #keyName: string;
  #maxBatchSize: number;
  #maxRecordBytes: number;

  constructor(options: OmetriaClientOptions) {
    if (!options.apiKey) throw new TypeError("Cannot create an Ometria client without an API key");
    const timeoutMs = _positive("timeoutMs", options.timeoutMs ?? 30_000);
    this.#apiKey = options.apiKey;
    this.#endpoint = options.endpoint;
    this.#logger = options.logger ?? quietLogger();
    this.#rateLimiter = options.rateLimiter;
    this.#keyName = options.keyName ?? "OMETRIA_API_KEY";
    this.#maxBatchSize = _positive("maxBatchSize", options.maxBatchSize ?? 100);
    this.#maxRecordBytes = _positive("maxRecordBytes", options.maxRecordBytes ?? 61_440);
    const { rateLimiter } = options;
    this.#api = {
      api: "Ometria",
      baseUrl: (options.baseUrl ?? "https://api.ometria.com").replace(/\/+$/, ""),
      fetch: options.fetch ?? globalThis.fetch,
      clock: options.clock,
      logger: this.#logger,
      timeoutMs,
      retry: options.retry ?? {},
      gate: async (attempt, signal) => {
        await rateLimiter.acquire(signal);
        return await attempt();
      },
      onAnswer: (exchange) => this.#watchQueue(exchange.headers),
      onRequest: options.onRequest,
      newError: (init) => new OmetriaError(init),
      statusError: (answer) => this.#statusError(answer),
    };
  }

  /** Most records per {@linkcode OmetriaClient.push}. */
  get maxBatchSize(): number {
    return this.#maxBatchSize;
  }

  /**
   * Sends one batch of at most `maxBatchSize` records (a `RangeError` otherwise). Records
   * whose JSON exceeds `maxRecordBytes` are not sent: they are logged as errors, listed in
   * `tooLarge` and counted as rejected. When Ometria rejects records, up to 5 messages of
   * `GET /v2/push/_errors` come back in `errors`, best effort. A `/v2/push` answer whose
   * `accepted` and `rejected` do not add up to the records sent throws a non-retryable
   * {@linkcode OmetriaError}: it acknowledges nothing.
   */
  async push(records: readonly OmetriaRecord[], opts: PushOptions = {}): Promise<PushResult> {
    if (records.length > this.#maxBatchSize) {
      throw new RangeError(
        `Cannot push ${records.length} records in one request: at most ${this.#maxBatchSize}`,
      );
    }
    const { signal, label } = opts;
    const texts: string[] = [];
    const tooLarge: string[] = [];
    for (const record of records) {
      const text = JSON.stringify(record);
      const bytes = _oversize(text, this.#maxRecordBytes);
      if (bytes === undefined) {
        texts.push(text);
        continue;
      }
      tooLarge.push(record.id);
      this.#logger.error(
        "Ometria record {id}{batch} is too large to send ({bytes} bytes, at most {max}): skipped",
        { id: record.id, batch: _batch(label), bytes, max: this.#maxRecordBytes },
      );
    }
    const result: PushResult = { accepted: 0, rejected: tooLarge.length, tooLarge };
    if (texts.length === 0) return result;

    const auth = this.#endpoint === "push"
      ? { "X-Ometria-Auth": this.#apiKey }
      : { Authorization: this.#apiKey };
    // A POST is retried, even after an answer was lost, only because a push is an idempotent
    // upsert on (@type, @collection, id): writing the same record twice stores one record.
    const request = {
      ...this.#api,
      method: "POST",
      headers: { "Content-Type": "application/json", ...auth },
      body: `[${texts.join(",")}]`,
      context: _batch(label),
      signal,
    };
    if (this.#endpoint === "record") {
      const { exchange } = await apiRequest("/record", _recordSchema, request);
      return _withHeaders({ ...result, accepted: texts.length }, exchange, undefined);
    }
    const { value, exchange } = await apiRequest("/v2/push", _pushSchema, request);
    _withHeaders(result, exchange, value.request_id);
    const acknowledged = value.accepted + value.rejected;
    if (acknowledged !== texts.length) {
      // Records Ometria did not count may be lost: the cursor must not pass them.
      const id = result.requestId ? ` (request id ${result.requestId})` : "";
      throw new OmetriaError({
        message:
          `Ometria POST /v2/push${
            _batch(label)
          } acknowledged ${acknowledged} of ${texts.length} records (accepted ${value.accepted}, ` +
          `rejected ${value.rejected}): the batch is not counted as delivered${id}`,
        endpoint: "POST /v2/push",
        status: exchange.status,
        requestId: result.requestId,
        retryable: false,
      });
    }
    result.accepted = value.accepted;
    result.rejected += value.rejected;
    if (value.rejected > 0) {
      const errors = await this.#recentErrors(label, signal);
      if (errors !== undefined) result.errors = errors;
    }
    return result;
  }

  /** Pauses everyone for 1 to 5 s, the lower the queue the longer, when it is nearly full. */
  #watchQueue(headers: Headers): void {
    const remaining = _number(headers.get("x-queuesize-remaining"));
    if (remaining === undefined) return;
    // Without the limit header, Ometria's documented queue of 50k records is the scale.
    const limit = _number(headers.get("x-queuesize-limit")) ?? _QUEUE_LIMIT;
    if (limit <= 0) return;
    const low = limit * _QUEUE_LOW;
    if (remaining >= low) return;
    const pauseMs = Math.round(1000 + 4000 * (1 - remaining / low));
    this.#logger.info(
      "Ometria ingest queue is low ({remaining} of {limit} left): pausing pushes {pauseMs} ms",
      { remaining, limit, pauseMs },
    );
    this.#rateLimiter.pause(pauseMs);
  }

  /** Ometria's rule for an error answer: its wording, and a 429 slows everyone's pace. */
  #statusError(answer: ApiErrorAnswer): OmetriaError {
    const { exchange: { status, text }, endpoint, context, requestId, retryAfterMs } = answer;
    // The pace is fed back, not stalled: see RateLimiter.throttled.
    if (status === 429) this.#rateLimiter.throttled(retryAfterMs);
    const json = parseJson(text);
    const parsed = json.ok ? _errorBodySchema.safeParse(json.value) : undefined;
    const said =
      (parsed?.success
        ? parsed.data.message ?? parsed.data.error ?? parsed.data.detail
        : undefined) ?? (text.trim() ? bodySnippet(text) : "(empty body)");
    const id = requestId ? ` (request id ${requestId})` : "";
    let message: string;
    if (status === 401) {
      message =
        `Ometria rejected the API key (401): check ${this.#keyName} (${endpoint}${context}: ${said}${id})`;
    } else if (status === 403) {
      message =
        `Ometria refused ${endpoint}${context} (403): check that ${this.#keyName} may write data: ${said}${id}`;
    } else if (status === 400 || status === 413 || status === 422) {
      message =
        `Ometria refused the whole batch at ${endpoint}${context} (${status}): ${said}; fix the records and run again${id}`;
    } else {
      message = `Ometria ${endpoint}${context} failed: ${status} ${said}${id}`;
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

  /** The latest messages of `GET /v2/push/_errors`, or undefined when they cannot be had. */
  async #recentErrors(
    label: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<string[] | undefined> {
    try {
      const { value } = await apiRequest("/v2/push/_errors", _errorsSchema, {
        ...this.#api,
        // One attempt only: these messages explain a failure, they are not worth a delay.
        retry: false,
        headers: { "X-Ometria-Auth": this.#apiKey },
        context: _batch(label),
        signal,
      });
      // The list is oldest first: the last entries are the likeliest to be this batch's.
      return value.slice(-5).map((e) =>
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
}

/** Adds what the answer's headers say (queue room, request id) to `result`, and returns it. */
function _withHeaders(
  result: PushResult,
  exchange: HttpExchange,
  bodyRequestId: string | undefined,
): PushResult {
  const queueRemaining = _number(exchange.headers.get("x-queuesize-remaining"));
  if (queueRemaining !== undefined) result.queueRemaining = queueRemaining;
  const requestId = bodyRequestId ?? exchange.headers.get("x-request-id") ?? undefined;
  if (requestId !== undefined) result.requestId = requestId;
  return result;
}

const _utf8 = new TextEncoder();

/** The UTF-8 size of `text` when it is above `max`, else undefined. */
function _oversize(text: string, max: number): number | undefined {
  // A UTF-16 unit is at most 3 bytes of UTF-8 (a surrogate pair, 2 units, is 4): most
  // records are far below the limit and need no encoding to know it.
  if (text.length * 3 <= max) return undefined;
  const bytes = _utf8.encode(text).length;
  return bytes > max ? bytes : undefined;
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
