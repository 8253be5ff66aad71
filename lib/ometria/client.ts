/**
 * The Ometria client: pushes batches of records to the Data API (`POST /v2/push`) or to the
 * original tool's legacy endpoint (`POST /record`), within Ometria's batch, record-size and
 * rate limits, retrying transient failures; reads the asynchronous validation errors
 * (`GET /v2/push/_errors`) in both the documented shape and the richer one some clients
 * model (docs/API_NOTES.md, "Ometria push"); reads the unsubscribes Ometria itself saw
 * (`GET /v2/unsubscribes`) and files and lists data deletion requests
 * (`/v2/data-deletion-requests`, on a limiter of their own: docs/API_NOTES.md, "Consent and
 * erasure").
 *
 * @module
 */
import { z } from "zod";
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import {
  DEFAULT_OMETRIA_BASE_URL,
  DEFAULT_OMETRIA_BATCH_SIZE,
  DEFAULT_OMETRIA_DATA_API_REQUESTS_PER_SECOND,
} from "../config/defaults.ts";
import { ApiError, type ApiErrorInit } from "../http/api_error.ts";
import {
  type ApiErrorAnswer,
  apiRequest,
  type ApiRequestEvent,
  type ApiSettings,
} from "../http/api_request.ts";
import { RateLimiter } from "../http/rate_limiter.ts";
import {
  bodySnippet,
  type HttpExchange,
  isRetryableStatus,
  parseJson,
} from "../http/request_json.ts";
import type { RetryPolicy } from "../http/retry.ts";
import { ThrottleLog } from "../http/throttle_log.ts";
import { quietLogger } from "../log/logging.ts";
import { type OmetriaRecord, type RecordJson, toRecordJson } from "../mapping/contact.ts";
import { errorText } from "../log/error_text.ts";
import { jsonArrayBody } from "./push_body.ts";

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
  /** The account's shared rate limiter for pushes: every push request acquires it first. */
  rateLimiter: RateLimiter;
  /**
   * The account's shared rate limiter for the rest of the Data API (`_errors`), whose limit
   * is Ometria's apart from the push one ("Data API | 4 requests per second").
   * @default {a limiter of its own at 4 requests/s}
   */
  dataApiRateLimiter?: RateLimiter;
  /**
   * The account's shared rate limiter for the GDPR API (`/v2/data-deletion-requests`):
   * "GDPR anonymisation API | 6 requests per minute", apart from the others.
   * @default {a limiter of its own at 6 requests a minute}
   */
  gdprRateLimiter?: RateLimiter;
  /** Retry tuning (attempts, budget, delays, jitter, `onFailedAttempt`). */
  retry?: RetryPolicy;
  /**
   * The deadline of the run in progress (clock time), read at each request: a 429 is
   * retried, and a pause of the rate limiter waited for, only while that ends before it.
   * @default {() => undefined} (429s bounded by the retry budget)
   */
  deadline?: () => number | undefined;
  /** Per-attempt limit for the whole answer, in milliseconds. @default {30_000} */
  timeoutMs?: number;
  /**
   * Most records per request, an integer from 1 to Ometria's 100 (OMETRIA_BATCH_SIZE). A 413
   * answer lowers it for later pushes; `push()` always takes up to this configured size.
   * @default {100}
   */
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
  /** Called before every attempt of every request; a throw stops the push (see `apiRequest`). */
  beforeAttempt?: (() => void) | undefined;
  /** Names the batch in logs and errors, e.g. `list abc page 3`. */
  label?: string | undefined;
}

/** A record Ometria did not take, and why. */
export interface RejectedRecord {
  /** The record's `id`. */
  id: string;
  /**
   * Why: Ometria's message from `GET /v2/push/_errors` when it has one (`field: message`),
   * the size for a record too large to send, or a generic text.
   */
  reason: string;
}

/**
 * One entry of `GET /v2/push/_errors`, read from either shape Ometria may serve: the
 * documented `{error_message, error_path}` ("root > lastname", no request index), or the
 * richer row Fivetran's connector models (`record_id`, `request_id`, `record_type`, a
 * timestamp, `message` as text or as `{error, error_path}`). Fields a shape lacks are absent.
 */
export interface OmetriaAsyncError {
  /** What was wrong, usually "not a valid value". */
  message: string;
  /** Where, as Ometria wrote it, e.g. `root > lastname`. */
  path?: string;
  /** The field the path names, e.g. `lastname`, `properties.shoe_size`; absent for `root`. */
  field?: string;
  /** The record's `id`, when the entry names it (rich shape). */
  recordId?: string;
  /** The push request's `request_id`, when the entry names it (rich shape). */
  requestId?: string;
  /** The record's `@type`, when named. */
  recordType?: string;
  /** When Ometria validated it, as it wrote it. */
  timestamp?: string;
}

/**
 * The email unsubscribe types of `GET /v2/unsubscribes` (Ometria's Unsubscribe API page):
 * the ones asked for, one request each, so that an SMS stop word (`stopword_unsubscribe_*`,
 * listed by the newer reference) never opts an email address out.
 */
export const OMETRIA_EMAIL_UNSUBSCRIBE_TYPES = [
  "preferences_centre",
  "app",
  "list_unsubscribe",
  "link_unsubscribe",
] as const;

/**
 * A contact as Ometria's Contact API serves it: its `id` and whatever fields it holds (which
 * ones are served is not documented: see docs/API_NOTES.md, "Reading contacts back").
 */
export interface OmetriaStoredContact {
  id: string;
  [field: string]: unknown;
}

/**
 * One unsubscribe event of `GET /v2/unsubscribes`, documented as `{email_address,
 * profile_id, reason, timestamp, type}`. Unsubscribes made through the API are not listed
 * ("API unsubscribes are not available through this endpoint"), so opt-outs this program
 * pushes never come back here. A listing's collection and contact id are read when an entry
 * names them (no source shows them; Fivetran models more columns than documented).
 */
export interface OmetriaUnsubscribe {
  /** The address, when the entry carries one (never logged: personal data). */
  email?: string;
  /** Ometria's profile id. */
  profileId?: string;
  /** Where the contact unsubscribed, e.g. `preferences_centre`. */
  type: string;
  /** When, epoch ms; undefined when Ometria wrote a time that cannot be read. */
  atMs: number | undefined;
  /** The listing's collection, when named (e.g. `mailchimp-<list_id>`). */
  collection?: string;
  /** The listing's contact id in that collection, when named. */
  contactId?: string;
}

/**
 * One data deletion (GDPR anonymisation) request as `GET /v2/data-deletion-requests` lists
 * it (`id`, `identities: [{hashed_email}]`, `source.api_request_id`, `timestamp_created`,
 * `timestamp_completed`, `summary`). No status field is documented: a request is complete
 * once `timestamp_completed` is set.
 */
export interface OmetriaDeletionRequest {
  id: string;
  /** `<md5 of the email>@anonymous.ometria`, as Ometria names the identities it anonymises. */
  hashedEmails: string[];
  /** The API request that filed it (`source.api_request_id`), when named. */
  apiRequestId?: string;
  /** When it was filed, epoch ms, when readable. */
  createdAtMs?: number;
  /** When Ometria completed it, epoch ms; undefined while open. */
  completedAtMs?: number;
  /** Ometria's words about what it anonymised, e.g. "1 contact record anonymised". */
  summary?: string;
}

/** What filing a data deletion request answered. */
export interface FiledDeletionRequest {
  /** The request's id, when the answer (or the listing that found it) names it. */
  id: string | undefined;
  /** The id of the API request that filed it (answer body or `X-Request-Id`). */
  apiRequestId: string | undefined;
}

/** What Ometria said about one batch. */
export interface PushResult {
  /** Records Ometria accepted; `accepted + rejected + skipped` is the number given. */
  accepted: number;
  /**
   * Records Ometria answered as `skipped` (a count some answers carry beside `accepted`,
   * undocumented): acknowledged, neither lost nor rejected.
   */
  skipped: number;
  /** Records Ometria rejected plus those too large to send; above 0 is a failure to report. */
  rejected: number;
  /** Ids of the records not sent because their JSON exceeds `maxRecordBytes`. */
  tooLarge: string[];
  /**
   * Exactly which records were not taken (those of `tooLarge` included), so that only those
   * members are quarantined. Found by re-pushing halves of a batch with rejections (an
   * idempotent upsert) until each rejected record stands alone.
   */
  rejectedRecords: RejectedRecord[];
  /**
   * Requests beyond one per batch of `maxBatchSize`: halves after a 413, re-pushes that
   * isolate rejected records and `GET /v2/push/_errors` reads (retries not counted).
   */
  extraRequests: number;
  /** Ometria's request id of the last answer, to quote to support. */
  requestId?: string;
  /** `X-QueueSize-Remaining` of the last answer: room left in Ometria's ingest queue. */
  queueRemaining?: number;
  /**
   * Up to 5 messages (`id: reason`) of the records Ometria rejected, when it rejected any
   * (kept for callers that only log text).
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
  skipped: z.number().int().nonnegative().optional(),
});

// The original endpoint answered `{"status":"Ok","response":1}`; its `response` meant nothing more.
const _recordSchema = z.object({ status: z.string().regex(/^ok$/i, 'expected "Ok"') });

// Every field optional: an entry is read for what it carries (see OmetriaAsyncError).
const _text = z.union([z.string(), z.number().transform(String)]).optional().catch(undefined);
const _pushErrorSchema = z.object({
  error_message: _text,
  error_path: _text,
  message: z.union([
    z.string(),
    z.object({ error: _text, message: _text, error_path: _text }).loose(),
  ]).optional().catch(undefined),
  message_error: _text,
  message_error_path: _text,
  record_id: _text,
  request_id: _text,
  record_type: _text,
  timestamp: _text,
  time_stamp: _text,
}).loose();

const _errorsSchema = z.union([
  z.array(z.unknown()),
  z.object({ errors: z.array(z.unknown()) }).transform((v) => v.errors),
  z.object({ data: z.array(z.unknown()) }).transform((v) => v.data),
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
  #dataApi: ApiSettings;
  #contactsApi: ApiSettings;
  #gdprApi: ApiSettings;
  #keyName: string;
  /** The configured batch size: the most `push()` takes. */
  #configuredBatchSize: number;
  /** The batch size in use, lowered by 413 answers. */
  #maxBatchSize: number;
  /** The most records one request has carried without a 413: sizes up to it need no probe. */
  #largestTaken = 0;
  /** Whether a 413 has been answered: sizes above `#largestTaken` are then probed first. */
  #sizeInDoubt = false;
  /** The request probing the size while it is in doubt: the others wait for its answer. */
  #probe: Promise<void> | undefined;
  #maxRecordBytes: number;

  constructor(options: OmetriaClientOptions) {
    if (!options.apiKey) throw new TypeError("Cannot create an Ometria client without an API key");
    const timeoutMs = _positive("timeoutMs", options.timeoutMs ?? 30_000);
    this.#apiKey = options.apiKey;
    this.#endpoint = options.endpoint;
    this.#logger = options.logger ?? quietLogger();
    this.#rateLimiter = options.rateLimiter;
    this.#keyName = options.keyName ?? "OMETRIA_API_KEY";
    const batch = options.maxBatchSize ?? DEFAULT_OMETRIA_BATCH_SIZE;
    if (!Number.isInteger(batch) || batch < 1 || batch > 100) {
      throw new RangeError(
        `Cannot create an Ometria client as 'maxBatchSize' must be an integer from 1 to 100 (Ometria's limit): current value ${batch}`,
      );
    }
    this.#configuredBatchSize = batch;
    this.#maxBatchSize = batch;
    this.#maxRecordBytes = _positive("maxRecordBytes", options.maxRecordBytes ?? 61_440);
    const { rateLimiter } = options;
    const deadline = options.deadline ?? (() => undefined);
    this.#api = {
      api: "Ometria",
      baseUrl: (options.baseUrl ?? DEFAULT_OMETRIA_BASE_URL).replace(/\/+$/, ""),
      fetch: options.fetch ?? globalThis.fetch,
      clock: options.clock,
      logger: this.#logger,
      timeoutMs,
      retry: options.retry ?? {},
      gate: async (attempt, signal) => {
        await rateLimiter.acquire(signal, deadline());
        return await attempt();
      },
      throttles: new ThrottleLog({ api: "Ometria", logger: this.#logger, clock: options.clock }),
      deadline,
      onAnswer: (exchange) => this.#watchQueue(exchange.headers),
      onRequest: options.onRequest,
      newError: (init) => new OmetriaError(init),
      statusError: (answer) => this.#statusError(answer),
    };
    const dataLimiter = options.dataApiRateLimiter ??
      new RateLimiter({
        perSecond: DEFAULT_OMETRIA_DATA_API_REQUESTS_PER_SECOND,
        clock: options.clock,
      });
    this.#dataApi = {
      ...this.#api,
      gate: async (attempt, signal) => {
        await dataLimiter.acquire(signal);
        return await attempt();
      },
    };
    // Contact reads are the Data API too: its limiter, its 429s pace that limiter alone, so
    // a verify reading back never slows the push.
    this.#contactsApi = {
      ...this.#dataApi,
      statusError: (answer) => this.#statusError(answer, dataLimiter),
    };
    const gdprLimiter = options.gdprRateLimiter ??
      new RateLimiter({ perSecond: 6, windowMs: 60_000, clock: options.clock });
    this.#gdprApi = {
      ...this.#api,
      gate: async (attempt, signal) => {
        await gdprLimiter.acquire(signal);
        return await attempt();
      },
      // Its 429s pace the GDPR limiter, not the push one.
      statusError: (answer) => this.#statusError(answer, gdprLimiter),
    };
  }

  /**
   * Records per request now: the configured size until Ometria answers 413, then the
   * largest half that it took (never below 1).
   */
  get maxBatchSize(): number {
    return this.#maxBatchSize;
  }

  /**
   * Sends one batch of at most the configured `maxBatchSize` records (a `RangeError`
   * otherwise), in requests of the current `maxBatchSize`. Records whose JSON exceeds
   * `maxRecordBytes` are not sent: they are logged as errors, listed in `tooLarge` and in
   * `rejectedRecords`. A request answered 413 is split in halves, and the smaller size is
   * kept for later pushes; a single record answered 413 is rejected, not thrown. When
   * `/v2/push` reports rejected records, halves are re-pushed until each rejected record is
   * isolated, and its reason read from `GET /v2/push/_errors`. A `/v2/push` answer whose
   * `accepted` and `rejected` do not add up to the records sent throws a non-retryable
   * {@linkcode OmetriaError}: it acknowledges nothing.
   */
  async push(records: readonly OmetriaRecord[], opts: PushOptions = {}): Promise<PushResult> {
    return await this.pushJson(records.map(toRecordJson), opts);
  }

  /** {@linkcode OmetriaClient.push} for records serialised already (see `RecordJson`). */
  async pushJson(records: readonly RecordJson[], opts: PushOptions = {}): Promise<PushResult> {
    if (records.length > this.#configuredBatchSize) {
      throw new RangeError(
        `Cannot push ${records.length} records in one batch: at most ${this.#configuredBatchSize}`,
      );
    }
    const { label } = opts;
    const items: RecordJson[] = [];
    const result: PushResult = {
      accepted: 0,
      skipped: 0,
      rejected: 0,
      tooLarge: [],
      rejectedRecords: [],
      extraRequests: 0,
    };
    for (const record of records) {
      const bytes = _oversize(record.json, this.#maxRecordBytes);
      if (bytes === undefined) {
        items.push(record);
        continue;
      }
      result.tooLarge.push(record.id);
      this.#reject(result, record.id, `record is ${bytes} bytes, over Ometria's 60 KB limit`);
      this.#logger.error(
        "Ometria record {id}{batch} is too large to send ({bytes} bytes, at most {max}): skipped",
        { id: record.id, batch: _batch(label), bytes, max: this.#maxRecordBytes },
      );
    }
    const sentBefore = new Set(result.rejectedRecords);
    // Sequential on purpose: the batch already holds one slot of the caller's concurrency.
    // Cut once: a 413 lowers the size while the loop runs, and its halves are sent already.
    const size = this.#maxBatchSize;
    for (let i = 0; i < items.length; i += size) {
      await this.#send(items.slice(i, i + size), result, opts, false);
    }
    const fromOmetria = result.rejectedRecords.filter((r) => !sentBefore.has(r));
    if (fromOmetria.length > 0) {
      result.errors = fromOmetria.slice(0, 5).map((r) => `${r.id}: ${r.reason}`);
    }
    return result;
  }

  /**
   * A request's turn. Once a 413 has put the size in doubt, requests larger than any taken
   * since go one at a time, each waiting for the one before to be answered: concurrent
   * pushes would each meet the same 413s (8 in flight at 100 records against a 30-record
   * limit cost 24 of them instead of 9). Before any 413 nothing waits (100 records is
   * Ometria's documented limit), so a slow request never holds the others back. Returns
   * what ends the turn, which may be called more than once.
   */
  async #turn(count: number): Promise<() => void> {
    for (;;) {
      if (!this.#sizeInDoubt || count <= this.#largestTaken) return () => {};
      if (this.#probe === undefined) break;
      await this.#probe;
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#probe = promise;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#probe = undefined;
      resolve();
    };
  }

  /**
   * Sees each answer to a request of `count` records: a 2xx proves the count, and the turn
   * ends at the first answer that is not a 413 (a 429 or a 5xx says nothing of the size,
   * and its retries must not hold the other requests back).
   */
  #sizeAnswer(end: () => void, count: number, status: number): void {
    if (status === 413) return;
    if (status >= 200 && status <= 299) this.#largestTaken = Math.max(this.#largestTaken, count);
    end();
  }

  /**
   * Sends `items` in one request and adds its outcome to `result`, splitting on a 413 and
   * bisecting on rejections. `extra` says whether this request is one of those splits.
   */
  async #send(
    items: readonly RecordJson[],
    result: PushResult,
    opts: PushOptions,
    extra: boolean,
  ): Promise<void> {
    const end = await this.#turn(items.length);
    if (items.length > this.#maxBatchSize) {
      end();
      // A 413 met since these were cut lowered the size: cut again rather than meet it too.
      const size = this.#maxBatchSize;
      for (let i = 0; i < items.length; i += size) {
        await this.#send(items.slice(i, i + size), result, opts, extra || i > 0);
      }
      return;
    }
    if (extra) result.extraRequests++;
    let answer: _Answer;
    try {
      answer = await this.#post(items, opts, end);
    } catch (error) {
      end();
      if (!(error instanceof OmetriaError) || error.status !== 413) throw error;
      if (items.length === 1) {
        this.#reject(result, items[0]!.id, `Ometria refused the record alone as too large (413)`);
        return;
      }
      const half = Math.ceil(items.length / 2);
      if (half < this.#maxBatchSize) {
        this.#logger.warn(
          "Ometria refused {count} records in one request (413){batch}: sending at most {half} from now on",
          { count: items.length, batch: _batch(opts.label), half },
        );
        this.#maxBatchSize = half;
      }
      this.#largestTaken = Math.min(this.#largestTaken, items.length - 1);
      this.#sizeInDoubt = true;
      await this.#send(items.slice(0, half), result, opts, true);
      await this.#send(items.slice(half), result, opts, true);
      return;
    }
    if (answer.requestId !== undefined) result.requestId = answer.requestId;
    if (answer.queueRemaining !== undefined) result.queueRemaining = answer.queueRemaining;
    if (answer.rejected === 0) {
      result.accepted += answer.accepted;
      result.skipped += answer.skipped;
      return;
    }
    if (items.length > 1 && answer.rejected < items.length) {
      // Which records? Re-pushing is safe (an idempotent upsert) and the halves say. A half
      // whose records are all rejected or all accepted ends the search: at most about
      // 2 × rejected × log2(size / rejected) extra requests.
      const half = Math.ceil(items.length / 2);
      await this.#send(items.slice(0, half), result, opts, true);
      await this.#send(items.slice(half), result, opts, true);
      return;
    }
    // Every record of this request was rejected: they are known, only the reasons are not.
    result.extraRequests++;
    const reasonOf = await this.#reasons(items, answer.requestId, opts);
    for (const item of items) this.#reject(result, item.id, reasonOf(item.id));
  }

  #reject(result: PushResult, id: string, reason: string): void {
    result.rejected++;
    result.rejectedRecords.push({ id, reason });
  }

  /** One request (with retries) for `items`; a 413 or other error answer throws. */
  async #post(
    items: readonly RecordJson[],
    opts: PushOptions,
    end: () => void,
  ): Promise<_Answer> {
    const { signal, label, beforeAttempt } = opts;
    const auth = this.#endpoint === "push"
      ? { "X-Ometria-Auth": this.#apiKey }
      : { Authorization: this.#apiKey };
    // A POST is retried, even after an answer was lost, only because a push is an idempotent
    // upsert on (@type, @collection, id): writing the same record twice stores one record.
    const request = {
      ...this.#api,
      method: "POST",
      headers: { "Content-Type": "application/json", ...auth },
      body: jsonArrayBody(items),
      context: _batch(label),
      signal,
      beforeAttempt,
      onAnswer: (exchange: HttpExchange) => {
        this.#api.onAnswer?.(exchange);
        this.#sizeAnswer(end, items.length, exchange.status);
      },
    };
    if (this.#endpoint === "record") {
      const { exchange } = await apiRequest("/record", _recordSchema, request);
      return _answer(exchange, undefined, { accepted: items.length, rejected: 0 });
    }
    const { value, exchange } = await apiRequest("/v2/push", _pushSchema, request);
    const answer = _answer(exchange, value.request_id, value);
    const acknowledged = value.accepted + value.rejected + (value.skipped ?? 0);
    if (acknowledged !== items.length) {
      // Records Ometria did not count may be lost: the cursor must not pass them.
      const id = answer.requestId ? ` (request id ${answer.requestId})` : "";
      throw new OmetriaError({
        message:
          `Ometria POST /v2/push${
            _batch(label)
          } acknowledged ${acknowledged} of ${items.length} records (accepted ${value.accepted}, ` +
          `rejected ${value.rejected}${
            value.skipped === undefined ? "" : `, skipped ${value.skipped}`
          }): the batch is not counted as delivered${id}`,
        endpoint: "POST /v2/push",
        status: exchange.status,
        requestId: answer.requestId,
        retryable: false,
      });
    }
    return answer;
  }

  /**
   * Ometria's reasons for the records of a request it just rejected whole, from `GET
   * /v2/push/_errors`: an entry naming a record's id (the richer shape) gives that record's
   * reason; else entries naming the request; else, in the documented shape, which ties an
   * error to nothing (`root > lastname`), the latest errors are quoted as what they are:
   * not tied to this record. The list is account-wide and its order undocumented, so all of
   * it is read.
   */
  async #reasons(
    items: readonly RecordJson[],
    requestId: string | undefined,
    opts: PushOptions,
  ): Promise<(id: string) => string> {
    const errors = await this.#recentErrorsOrUndefined(opts.label, opts.signal) ?? [];
    const ids = new Set(items.map((i) => i.id));
    const byRecord = new Map<string, string[]>();
    const forRequest: string[] = [];
    const untied: string[] = [];
    for (const e of errors) {
      const text = e.field ? `${e.field}: ${e.message}` : e.message;
      if (e.recordId !== undefined) {
        if (ids.has(e.recordId)) {
          byRecord.set(e.recordId, [...byRecord.get(e.recordId) ?? [], text]);
        }
      } else if (e.requestId !== undefined) {
        if (e.requestId === requestId) forRequest.push(text);
      } else untied.push(text);
    }
    const distinct = (texts: string[]) => [...new Set(texts)].slice(0, 3).join("; ");
    const fallback = forRequest.length > 0
      ? `rejected by Ometria: ${distinct(forRequest)}`
      : untied.length > 0
      ? `rejected by Ometria; its latest push errors, not tied to a record: ${
        distinct(untied.slice(-10).reverse())
      }`
      : errors.length === 0
      ? "rejected by Ometria (no reason given)"
      : "rejected by Ometria (no error at _errors names this record)";
    return (id) => {
      const own = byRecord.get(id);
      return own ? `rejected by Ometria: ${distinct(own)}` : fallback;
    };
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
    this.#rateLimiter.pause(
      pauseMs,
      `Ometria's ingest queue is low (${remaining} of ${limit} left)`,
    );
  }

  /**
   * Ometria's rule for an error answer: its wording, and a 429 slows the pace of everyone
   * using `limiter` (the push one unless said).
   */
  #statusError(answer: ApiErrorAnswer, limiter = this.#rateLimiter): OmetriaError {
    const { exchange: { status, text }, endpoint, context, requestId, retryAfterMs } = answer;
    // The pace is fed back, not stalled: see RateLimiter.throttled.
    if (status === 429) {
      limiter.throttled(retryAfterMs, `Ometria ${endpoint}${context} answered 429`);
    }
    const json = parseJson(text);
    const parsed = json.ok ? _errorBodySchema.safeParse(json.value) : undefined;
    const said =
      (parsed?.success
        ? parsed.data.message ?? parsed.data.error ?? parsed.data.detail
        : undefined) ?? (text.trim() ? bodySnippet(text) : "(empty body)");
    const id = requestId ? ` (request id ${requestId})` : "";
    let message: string;
    if (status === 401 || status === 403) {
      // 403 is what Ometria documents for a key it does not take ("API key is not authorised
      // to access this resource"); 401 is handled alike. Neither is worth a retry.
      message =
        `Ometria rejected the API key (${status}): check ${this.#keyName} (${endpoint}${context}: ${said}${id})`;
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

  /**
   * `GET /v2/push/_errors`: the account's latest validation errors ("the 100 most recent"),
   * each read into one {@linkcode OmetriaAsyncError} whichever shape it comes in; entries
   * that carry no message are left out. Paced by the Data API's limiter, not the push one,
   * and tried once: the caller decides when to ask again. Errors reaching Ometria throw.
   */
  async recentErrors(signal?: AbortSignal): Promise<OmetriaAsyncError[]> {
    const { value } = await apiRequest("/v2/push/_errors", _errorsSchema, {
      ...this.#dataApi,
      retry: false,
      headers: { "X-Ometria-Auth": this.#apiKey },
      signal,
    });
    return value.flatMap((entry) => {
      const parsed = _pushErrorSchema.safeParse(entry);
      const e = parsed.success ? _asyncError(parsed.data) : undefined;
      return e === undefined ? [] : [e];
    });
  }

  /**
   * `GET /v2/unsubscribes?since=…&before=…&type=…`: the unsubscribe events of one `type`
   * stamped in `[sinceMs, beforeMs)` (times sent as `YYYY-MM-DDTHH:MM:SS`, UTC, as the
   * reference asks). Whether Ometria's edges are inclusive is not documented, so entries
   * outside the range are left out here; an entry whose time cannot be read is kept (it was
   * served for this range). Paced by the Data API's limiter and retried like any read.
   */
  async unsubscribes(
    q: { sinceMs: number; beforeMs: number; type: string },
    signal?: AbortSignal,
  ): Promise<OmetriaUnsubscribe[]> {
    const query = new URLSearchParams({
      since: _ometriaQueryTime(q.sinceMs),
      before: _ometriaQueryTime(q.beforeMs),
      type: q.type,
    });
    const { value } = await apiRequest("/v2/unsubscribes", _listSchema("unsubscribes"), {
      ...this.#dataApi,
      query,
      headers: { "X-Ometria-Auth": this.#apiKey },
      signal,
    });
    return value.flatMap((entry) => {
      const parsed = _unsubscribeSchema.safeParse(entry);
      if (!parsed.success) return [];
      const u = _unsubscribe(parsed.data, q.type);
      const inRange = u.atMs === undefined || (u.atMs >= q.sinceMs && u.atMs < q.beforeMs);
      return inRange ? [u] : [];
    });
  }

  /**
   * `POST /v2/data-deletion-requests` with `{"email", "comment"}`: files Ometria's GDPR
   * anonymisation of everything it holds of `email` (processed within 14 days). Not an
   * upsert — a second request files a second erasure — so it is retried only after a 429,
   * which means Ometria did not take it; any other failure throws, and the caller decides.
   * Paced by the GDPR limiter (6 a minute). What the answer holds is not documented: the
   * request's `id` when it carries one, else the listing is searched for the request this
   * API request filed (`source.api_request_id`).
   */
  async fileDataDeletionRequest(
    email: string,
    options: {
      comment?: string;
      signal?: AbortSignal | undefined;
      beforeAttempt?: (() => void) | undefined;
    } = {},
  ): Promise<FiledDeletionRequest> {
    const { signal, beforeAttempt } = options;
    const { value, exchange } = await apiRequest("/v2/data-deletion-requests", _filedSchema, {
      ...this.#gdprApi,
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Ometria-Auth": this.#apiKey },
      body: JSON.stringify({ email, ...(options.comment ? { comment: options.comment } : {}) }),
      signal,
      beforeAttempt,
      // Only a 429 proves the request was not filed; anything else might have been.
      newError: (init) => new OmetriaError({ ...init, retryable: false }),
      statusError: (answer) => {
        const error = this.#gdprApi.statusError(answer);
        return error.status === 429 ? error : new OmetriaError({
          message: error.message,
          endpoint: error.endpoint,
          status: error.status,
          requestId: error.requestId,
          retryable: false,
        });
      },
    });
    const apiRequestId = value.request_id ?? exchange.headers.get("x-request-id") ?? undefined;
    if (value.id !== undefined || apiRequestId === undefined) return { id: value.id, apiRequestId };
    const listed = await this.dataDeletionRequests(signal);
    return { id: listed.find((r) => r.apiRequestId === apiRequestId)?.id, apiRequestId };
  }

  /**
   * `GET /v2/data-deletion-requests`: every deletion request filed for the account, with
   * when each was completed. Paced by the GDPR limiter, retried like any read.
   */
  async dataDeletionRequests(signal?: AbortSignal): Promise<OmetriaDeletionRequest[]> {
    const schema = _listSchema("data_deletion_requests");
    const { value } = await apiRequest("/v2/data-deletion-requests", schema, {
      ...this.#gdprApi,
      headers: { "X-Ometria-Auth": this.#apiKey },
      signal,
    });
    return value.flatMap((entry) => {
      const parsed = _deletionSchema.safeParse(entry);
      return parsed.success ? [_deletionRequest(parsed.data)] : [];
    });
  }

  /**
   * `GET /v2/contacts?collection=…&limit=…&offset=…`: one page of the contacts Ometria holds
   * in `collection` (docs/API_NOTES.md, "Reading contacts back"), each with its `id`; entries
   * without one are left out. A bare array or one wrapped in `data`/`contacts` is read. Paced
   * by the Data API's limiter (never the push one) and retried like any read.
   */
  async contactsPage(
    collection: string,
    page: { offset: number; limit: number },
    signal?: AbortSignal,
  ): Promise<{ contacts: OmetriaStoredContact[]; size: number }> {
    const query = new URLSearchParams({
      collection,
      limit: String(page.limit),
      offset: String(page.offset),
    });
    const { value } = await apiRequest("/v2/contacts", _listSchema("contacts"), {
      ...this.#contactsApi,
      query,
      headers: { "X-Ometria-Auth": this.#apiKey },
      signal,
    });
    const contacts = value.flatMap((entry) => {
      const parsed = _storedContactSchema.safeParse(entry);
      return parsed.success ? [parsed.data as OmetriaStoredContact] : [];
    });
    return { contacts, size: value.length };
  }

  /**
   * Every contact of `collection`, page after page of `pageSize`. How Ometria cuts pages is
   * not documented (a cap below `limit` would make every page look short), so the listing ends
   * at an empty page or at one shorter than the longest seen: a collection that fits one page
   * costs a second request, never a contact.
   */
  async *contactsOf(
    collection: string,
    options: {
      pageSize?: number;
      signal?: AbortSignal | undefined;
      /** Called before each page is asked for (counting requests). */
      onPage?: (() => void) | undefined;
    } = {},
  ): AsyncGenerator<OmetriaStoredContact[], void, undefined> {
    const limit = options.pageSize ?? OMETRIA_CONTACTS_PAGE;
    let longest = 0;
    for (let offset = 0;;) {
      options.onPage?.();
      const page = await this.contactsPage(collection, { offset, limit }, options.signal);
      if (page.contacts.length > 0) yield page.contacts;
      if (page.size === 0 || page.size < longest) return;
      longest = Math.max(longest, page.size);
      offset += page.size;
    }
  }

  /**
   * `GET /v2/contacts/{collection}/{id}`: the contact Ometria holds, or undefined when it
   * answers 404. Paced by the Data API's limiter and retried like any read.
   */
  async contact(
    collection: string,
    id: string,
    signal?: AbortSignal,
  ): Promise<OmetriaStoredContact | undefined> {
    const path = `/v2/contacts/${encodeURIComponent(collection)}/${encodeURIComponent(id)}`;
    try {
      const { value } = await apiRequest(path, _storedContactSchema, {
        ...this.#contactsApi,
        headers: { "X-Ometria-Auth": this.#apiKey },
        signal,
      });
      return value as OmetriaStoredContact;
    } catch (error) {
      if (error instanceof OmetriaError && error.status === 404) return undefined;
      throw error;
    }
  }

  /** {@linkcode OmetriaClient.recentErrors}, or undefined (logged) when it cannot be had. */
  async #recentErrorsOrUndefined(
    label: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<OmetriaAsyncError[] | undefined> {
    try {
      return await this.recentErrors(signal);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      this.#logger.warn("Could not read Ometria's push errors{batch}: {error}", {
        batch: _batch(label),
        error: errorText(error),
      });
      return undefined;
    }
  }
}

/** One parsed `_errors` entry as the normalised type, or undefined without a message. */
function _asyncError(e: z.output<typeof _pushErrorSchema>): OmetriaAsyncError | undefined {
  const nested = typeof e.message === "object" ? e.message : undefined;
  const message = e.error_message ?? (typeof e.message === "string" ? e.message : undefined) ??
    nested?.error ?? nested?.message ?? e.message_error;
  if (message === undefined || message.trim() === "") return undefined;
  const path = e.error_path ?? nested?.error_path ?? e.message_error_path;
  const field = path === undefined ? undefined : _fieldOf(path);
  const out: OmetriaAsyncError = { message };
  if (path !== undefined) out.path = path;
  if (field !== undefined) out.field = field;
  if (e.record_id !== undefined) out.recordId = e.record_id;
  if (e.request_id !== undefined) out.requestId = e.request_id;
  if (e.record_type !== undefined) out.recordType = e.record_type;
  const timestamp = e.timestamp ?? e.time_stamp;
  if (timestamp !== undefined) out.timestamp = timestamp;
  return out;
}

/**
 * The field an `error_path` names: `root > lastname` → `lastname`, `root > properties > x`
 * → `properties.x`, a dotted path as it is (`[3].email` → `email`); `root` names none.
 */
function _fieldOf(path: string): string | undefined {
  const parts = path.split(">").map((p) => p.trim()).filter((p) => p !== "");
  if (parts[0] === "root") parts.shift();
  const field = parts.join(".").replace(/^\[\d+\]\.?/, "");
  return field === "" ? undefined : field;
}

// Listings are read as a bare array (what the reference shows) or wrapped in an object.
function _listSchema(key: string) {
  return z.union([
    z.array(z.unknown()),
    z.object({ [key]: z.array(z.unknown()) }).transform((v) => v[key] as unknown[]),
    z.object({ data: z.array(z.unknown()) }).transform((v) => v.data),
  ]);
}

/** Contacts one Contact API page is asked for (Ometria's push limit; its read limit is unknown). */
export const OMETRIA_CONTACTS_PAGE = 100;

const _storedContactSchema = z.object({
  id: z.union([z.string().min(1), z.number().transform(String)]),
}).loose();

const _unsubscribeSchema = z.object({
  email_address: _text.nullable(),
  profile_id: _text.nullable(),
  timestamp: _text.nullable(),
  time_stamp: _text.nullable(),
  type: _text.nullable(),
  collection: _text.nullable(),
  contact_id: _text.nullable(),
}).loose();

function _unsubscribe(e: z.output<typeof _unsubscribeSchema>, asked: string): OmetriaUnsubscribe {
  const out: OmetriaUnsubscribe = {
    type: e.type ?? asked,
    atMs: _ometriaTime(e.timestamp ?? e.time_stamp ?? undefined),
  };
  if (e.email_address) out.email = e.email_address;
  if (e.profile_id) out.profileId = e.profile_id;
  if (e.collection) out.collection = e.collection;
  if (e.contact_id) out.contactId = e.contact_id;
  return out;
}

const _filedSchema = z.object({
  id: _text.nullable().transform((v) => v ?? undefined),
  request_id: _text.nullable().transform((v) => v ?? undefined),
}).loose().catch({ id: undefined, request_id: undefined });

const _deletionSchema = z.object({
  id: z.union([z.string().min(1), z.number().transform(String)]),
  identities: z.array(z.object({ hashed_email: _text.nullable() }).loose()).optional()
    .catch(undefined),
  source: z.object({ api_request_id: _text.nullable() }).loose().nullable().optional()
    .catch(undefined),
  timestamp_created: _text.nullable(),
  timestamp_completed: _text.nullable(),
  summary: _text.nullable(),
}).loose();

function _deletionRequest(e: z.output<typeof _deletionSchema>): OmetriaDeletionRequest {
  const out: OmetriaDeletionRequest = {
    id: e.id,
    hashedEmails: (e.identities ?? []).flatMap((i) => i.hashed_email ? [i.hashed_email] : []),
  };
  if (e.source?.api_request_id) out.apiRequestId = e.source.api_request_id;
  const created = _ometriaTime(e.timestamp_created ?? undefined);
  if (created !== undefined) out.createdAtMs = created;
  // Set but unreadable still means done: the field is only written on completion.
  if (e.timestamp_completed) out.completedAtMs = _ometriaTime(e.timestamp_completed) ?? 0;
  if (e.summary) out.summary = e.summary;
  return out;
}

/** `YYYY-MM-DDTHH:MM:SS` in UTC: the `since`/`before` format of `GET /v2/unsubscribes`. */
function _ometriaQueryTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19);
}

/**
 * A time as Ometria writes it (`2017-05-17 22:08:07+00`, `2017-02-04 10:18:12.833949+00`,
 * or ISO 8601), epoch ms; undefined when it cannot be read. A time without an offset is UTC,
 * as the reference says of its parameters.
 */
function _ometriaTime(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  let t = text.trim().replace(" ", "T").replace(/(\.\d{3})\d+/, "$1");
  if (/[+-]\d\d$/.test(t)) t += ":00";
  else if (!/(Z|[+-]\d\d:?\d\d)$/i.test(t)) t += "Z";
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}

/** What one successful request said. */
interface _Answer {
  accepted: number;
  rejected: number;
  skipped: number;
  requestId: string | undefined;
  queueRemaining: number | undefined;
}

/** The counts of an answer with what its headers say (queue room, request id). */
function _answer(
  exchange: HttpExchange,
  bodyRequestId: string | undefined,
  counts: { accepted: number; rejected: number; skipped?: number | undefined },
): _Answer {
  return {
    accepted: counts.accepted,
    rejected: counts.rejected,
    skipped: counts.skipped ?? 0,
    queueRemaining: _number(exchange.headers.get("x-queuesize-remaining")),
    requestId: bodyRequestId ?? exchange.headers.get("x-request-id") ?? undefined,
  };
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
