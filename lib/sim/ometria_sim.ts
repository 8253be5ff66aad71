/**
 * A local stand-in for the Ometria Data API (`POST /v2/push`, `GET /v2/push/_errors`) and for
 * the original tool's legacy `POST /record` endpoint. It plays what the real service is known
 * to do (docs/API_NOTES.md, "Ometria push": auth answered 403, 100-record batches, 60 KB
 * records, push and the rest of the Data API paced apart, an ingest queue that backs up,
 * upserts on `@type`/`@collection`/`id` that merge partial records, validation after the
 * "OK" with errors at `_errors`) and each answer its docs leave open behind an option (blanks
 * clearing or not, a record without `@merge` replacing, `_errors` in the richer shape some
 * clients model, a `skipped` count, a lower batch limit answered 413), and lets tests script
 * faults, so that the client and the engine can be proven against it over real HTTP. The
 * unsubscribes listing, Ometria's subscription rule and data deletion requests are in
 * `ometria_privacy.ts` (`privacy`).
 *
 * @module
 */
import { type Clock, systemClock } from "../clock/clock.ts";
import { droppedResponse, FaultInjector, type FaultPlan } from "./faults.ts";
import { SimOmetriaPrivacy, type SimOmetriaPrivacyOptions } from "./ometria_privacy.ts";
import { SimOmetriaContacts, type SimOmetriaContactsOptions } from "./ometria_contacts.ts";
import {
  DEFAULT_RECORD_POLICY,
  OMETRIA_MAX_RECORD_BYTES,
  type RecordPolicy,
  storedRecord,
  validateRecord,
} from "./ometria_records.ts";

/** The largest batch Ometria documents for one request (the default `maxBatchRecords`). */
export const OMETRIA_MAX_BATCH = 100;

/** How many validation errors `GET /v2/push/_errors` keeps, as the real service does. */
const _ERRORS_KEPT = 100;

/** Options of {@linkcode OmetriaSimulator.start}. */
export interface OmetriaSimulatorOptions {
  /** The key expected in `X-Ometria-Auth` (and raw in `Authorization` for `/record`). @default {"simometriakey"} */
  apiKey?: string;
  /** Time for the rate-limit windows, the queue drain, latency and slow faults. @default {systemClock} */
  clock?: Clock;
  /** Interface to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** Port to listen on; 0 picks a free one. @default {0} */
  port?: number;
  /**
   * Push requests allowed in one clock second (`Math.floor(clock.now() / 1000)`); the next
   * ones get 429. 0 means unlimited. Ometria's newer introduction: "Push endpoint | 8
   * requests per second" (https://docs.ometria.com/docs/ometria-data-api-introduction).
   * @default {8}
   */
  maxRequestsPerSecond?: number;
  /**
   * Requests to the rest of the Data API (`_errors`) allowed in one clock second, counted
   * apart from pushes ("Data API | 4 requests per second", same page). 0 means unlimited.
   * @default {4}
   */
  maxDataApiRequestsPerSecond?: number;
  /** How records merge and blanks are taken (see `ometria_records.ts`). @default {DEFAULT_RECORD_POLICY} */
  records?: Partial<RecordPolicy>;
  /**
   * When records are validated: `"async"`, as Ometria documents ("the 'OK' result does not
   * mean that the records passed validation"): every record counts as accepted, the invalid
   * ones are then dropped and listed at `_errors`; `"sync"`: the answer already counts them
   * in `rejected` (the field exists, so some records may be refused at once).
   * @default {"sync"}
   */
  validation?: "sync" | "async";
  /**
   * The shape of `_errors` entries: `"documented"`, `{error_message, error_path}`
   * (https://docs.ometria.com/docs/list-errors); `"rich"`, the row Fivetran's connector
   * models (`record_id`, `request_id`, `record_type`, `timestamp`, `message: {error,
   * error_path}`); `"rich-text"`, the same with `message` as text and `error_path` beside it.
   * @default {"documented"}
   */
  errorsShape?: "documented" | "rich" | "rich-text";
  /** The order of `_errors` ("the 100 most recent": which first is not said). @default {"oldest-first"} */
  errorsOrder?: "oldest-first" | "newest-first";
  /**
   * `"unchanged"`: a record equal to the one stored is counted in a `skipped` field of the
   * answer instead of `accepted` (undocumented; some accounts may answer so). @default {"never"}
   */
  skipped?: "never" | "unchanged";
  /**
   * The status of a wrong key: 403, what Ometria's reference pages document ("API key is
   * not authorised to access this resource"), or 401. @default {403}
   */
  badKeyStatus?: 401 | 403;
  /** Records accepted but not yet ingested above which a push gets 429. @default {50000} */
  queueLimit?: number;
  /** Records per clock second the simulated ingest queue drains. @default {20000} */
  ingestPerSecond?: number;
  /** Delay added to every answer, through `clock.sleep`. @default {0} */
  latencyMs?: number;
  /**
   * The largest array of records one request may carry, on `/v2/push` and `/record`: a
   * larger one is answered `413 {"message":"Request Entity Too Large"}` (as an account
   * limit or a proxy in front of Ometria would) and nothing of it is stored. Lower it
   * while serving to play an account whose limit is below the documented 100.
   * @default {100}
   */
  maxBatchRecords?: number;
  /** Random fault plan; faults can also be queued later through `faults`. @default {{}} */
  faults?: FaultPlan;
  /**
   * Per-record rejection on `/v2/push`: returns an error message to reject a record that
   * is otherwise valid. The request is still answered 2xx; the record is not stored, counts
   * in `rejected` (with `validation: "sync"`), and is listed at `GET /v2/push/_errors` with
   * path `root`. Records over 60 KB are always rejected ("Record is too large") before this
   * is asked.
   */
  reject?: ((record: Record<string, unknown>) => string | undefined) | undefined;
  /**
   * The unsubscribes listing, `@force_optin` and data deletion requests (see
   * `ometria_privacy.ts`). @default {{}}
   */
  privacy?: SimOmetriaPrivacyOptions;
  /** The Contact API's paging, shape and fields (see `ometria_contacts.ts`). @default {{}} */
  contactApi?: SimOmetriaContactsOptions;
}

/** One validation error the simulator keeps, whatever shape `_errors` serves it in. */
export interface OmetriaPushError {
  /** What was wrong, e.g. `"not a valid value"`, `"Record is too large"`. */
  error_message: string;
  /** Where, as Ometria writes it: `"root > lastname"`, `"root"`. */
  error_path: string;
  /** The record's id, when it had one. */
  record_id: string | null;
  /** The push request that carried it. */
  request_id: string;
  /** The record's `@type`, when it had one. */
  record_type: string | null;
  /** When it was validated, ISO 8601. */
  timestamp: string;
}

/** A record as the legacy `POST /record` endpoint receives it. */
export interface LegacyRecord {
  /** Mailchimp member id. */
  id: string;
  /** First name (may be empty). */
  firstname: string;
  /** Last name (may be empty). */
  lastname: string;
  /** Email address. */
  email: string;
  /** Mailchimp status string, as is; any string is stored (e.g. `"deleted"` for an orphan). */
  status: string;
}

/** Counters of an {@linkcode OmetriaSimulator}, since start or the last `resetStats()`. */
export interface OmetriaSimulatorStats {
  /** Every HTTP request, whatever its answer. */
  requests: number;
  /** Requests to `POST /v2/push` (any answer). */
  pushRequests: number;
  /** Requests to `POST /record` (any answer). */
  recordRequests: number;
  /** Records in requests that were processed (stored or rejected), on both endpoints. */
  recordsReceived: number;
  /** Records stored by `/v2/push`. */
  recordsAccepted: number;
  /** Records rejected by `/v2/push` validation, in the answer or afterwards. */
  recordsRejected: number;
  /** Records counted as `skipped` (equal to the stored record, with `skipped: "unchanged"`). */
  recordsSkipped: number;
  /** 429 answers, whether from the rate limit, the queue or an injected fault. */
  status429: number;
  /** 413 answers: requests with more than `maxBatchRecords` records. */
  status413: number;
  /** Largest array seen in one request, even one refused for being over 100. */
  maxBatch: number;
  /**
   * Most requests that passed the rate limiter in one clock second. With the limiter on it
   * never exceeds `maxRequestsPerSecond` (look at `status429` instead); with it off (0) it
   * is the client's peak rate. Pushes and `/record` only: the Data API is counted apart.
   */
  maxRequestsInOneSecond: number;
  /** The same for the rest of the Data API (`_errors`, unsubscribes, contacts). */
  maxDataApiRequestsInOneSecond: number;
  /** Most requests being answered at once (latency included): the client's window. */
  maxInFlight: number;
}

type _Reject = (record: Record<string, unknown>) => string | undefined;

type _Settings = Required<
  Pick<
    OmetriaSimulatorOptions,
    "validation" | "errorsShape" | "errorsOrder" | "skipped" | "badKeyStatus"
  >
>;

/** The settings {@linkcode OmetriaSimulator.setOptions} changes while serving. */
export type OmetriaSimulatorSettings = Partial<
  Pick<
    OmetriaSimulatorOptions,
    | "maxRequestsPerSecond"
    | "maxDataApiRequestsPerSecond"
    | "latencyMs"
    | "queueLimit"
    | "maxBatchRecords"
    | "reject"
    | "records"
    | "validation"
    | "errorsShape"
    | "errorsOrder"
    | "skipped"
    | "badKeyStatus"
  >
>;

/** A push held in flight by {@linkcode OmetriaSimulator.holdPush}. */
export interface PushHold {
  /** Resolves once the push arrived and is held. */
  arrived: Promise<void>;
  /** Lets it go on (it is then stored and answered as usual). */
  release(): void;
}

interface _Hold {
  match: ((ids: readonly string[]) => boolean) | undefined;
  arrived: PromiseWithResolvers<void>;
  released: PromiseWithResolvers<void>;
}

/**
 * The Ometria simulator: a `Deno.serve` server on 127.0.0.1 that stores what it is sent in
 * memory. Start it with {@linkcode OmetriaSimulator.start}, point a client at `url`, then
 * read `contacts()`, `legacyRecords()` and `stats`; always `close()` it.
 */
export class OmetriaSimulator {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** The key the simulator expects. */
  readonly apiKey: string;
  /** Fault injection: `faults.queue(503, "drop")` scripts the next answers. */
  readonly faults: FaultInjector;
  /**
   * Consent and erasure: `privacy.unsubscribe(email)` plays an opt-out made in Ometria,
   * `privacy.subscription(email)` says what Ometria holds, `privacy.deletionRequests()` what
   * was filed.
   */
  readonly privacy: SimOmetriaPrivacy;
  /**
   * The Contact API (`GET /v2/contacts…`, what `verify` reads): `contactApi.tamper(collection,
   * id, patch)` changes a stored contact behind the product's back, `contactApi.plant(…)`
   * adds one no push sent.
   */
  readonly contactApi: SimOmetriaContacts;

  #server: Deno.HttpServer<Deno.NetAddr>;
  #clock: Clock;
  #closing = new AbortController();
  #closed: Promise<void> | undefined;

  #maxRequestsPerSecond: number;
  #maxDataApiRequestsPerSecond: number;
  #policy: RecordPolicy;
  #settings: _Settings;
  #queueLimit: number;
  #ingestPerSecond: number;
  #latencyMs: number;
  #maxBatchRecords: number;
  #reject: _Reject | undefined;

  #store = new Map<string, Record<string, unknown>>();
  #legacy = new Map<string, LegacyRecord>();
  #errors: OmetriaPushError[] = [];

  #push = new _Window();
  #data = new _Window();
  /** GDPR requests count apart (their limit is per minute, see `ometria_privacy.ts`). */
  #gdpr = new _Window();

  #queued = 0;
  #queuedAt: number;

  #stats: OmetriaSimulatorStats = _emptyStats();
  #inFlight = 0;
  #holds: _Hold[] = [];

  private constructor(options: OmetriaSimulatorOptions) {
    this.apiKey = options.apiKey ?? "simometriakey";
    this.#clock = options.clock ?? systemClock;
    this.faults = new FaultInjector(options.faults ?? {});
    this.#maxRequestsPerSecond = _count("maxRequestsPerSecond", options.maxRequestsPerSecond, 8);
    this.#maxDataApiRequestsPerSecond = _count(
      "maxDataApiRequestsPerSecond",
      options.maxDataApiRequestsPerSecond,
      4,
    );
    this.#policy = { ...DEFAULT_RECORD_POLICY, ...options.records };
    this.#settings = {
      validation: options.validation ?? "sync",
      errorsShape: options.errorsShape ?? "documented",
      errorsOrder: options.errorsOrder ?? "oldest-first",
      skipped: options.skipped ?? "never",
      badKeyStatus: options.badKeyStatus ?? 403,
    };
    this.#queueLimit = _count("queueLimit", options.queueLimit, 50000);
    this.#ingestPerSecond = _count("ingestPerSecond", options.ingestPerSecond, 20000);
    this.#latencyMs = _count("latencyMs", options.latencyMs, 0);
    this.#maxBatchRecords = _count("maxBatchRecords", options.maxBatchRecords, OMETRIA_MAX_BATCH);
    this.#reject = options.reject;
    this.privacy = new SimOmetriaPrivacy(this.#clock, {
      contacts: () => [...this.#store.values()].filter((r) => r["@type"] === "contact"),
    }, options.privacy);
    const key = (collection: string, id: string) => `contact\u0000${collection}\u0000${id}`;
    this.contactApi = new SimOmetriaContacts({
      contacts: () => [...this.#store.values()].filter((r) => r["@type"] === "contact"),
      get: (collection, id) => this.#store.get(key(collection, id)),
      set: (collection, id, record) => this.#store.set(key(collection, id), record),
      delete: (collection, id) => this.#store.delete(key(collection, id)),
    }, options.contactApi);
    this.#queuedAt = this.#clock.now();
    const hostname = options.hostname ?? "127.0.0.1";
    this.#server = Deno.serve({
      hostname,
      port: options.port ?? 0,
      onListen: () => {},
      onError: (error) =>
        _json(500, { status: "error", message: `Simulator failure: ${String(error)}` }),
    }, (req) => this.#handle(req));
    const port = this.#server.addr.port;
    this.url = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  }

  /** Starts a simulator listening on `hostname:port` (a free port by default). */
  static start(options: OmetriaSimulatorOptions = {}): Promise<OmetriaSimulator> {
    try {
      return Promise.resolve(new OmetriaSimulator(options));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Changes limits and validation while running; they apply from the next request. */
  setOptions(partial: OmetriaSimulatorSettings): void {
    if (partial.maxDataApiRequestsPerSecond !== undefined) {
      this.#maxDataApiRequestsPerSecond = _count(
        "maxDataApiRequestsPerSecond",
        partial.maxDataApiRequestsPerSecond,
        4,
      );
    }
    if (partial.records !== undefined) this.#policy = { ...this.#policy, ...partial.records };
    for (const key of Object.keys(this.#settings) as (keyof _Settings)[]) {
      const value = partial[key];
      if (value !== undefined) Object.assign(this.#settings, { [key]: value });
    }
    if (partial.maxBatchRecords !== undefined) {
      this.#maxBatchRecords = _count("maxBatchRecords", partial.maxBatchRecords, OMETRIA_MAX_BATCH);
    }
    if (partial.maxRequestsPerSecond !== undefined) {
      this.#maxRequestsPerSecond = _count("maxRequestsPerSecond", partial.maxRequestsPerSecond, 8);
    }
    if (partial.latencyMs !== undefined) {
      this.#latencyMs = _count("latencyMs", partial.latencyMs, 0);
    }
    if (partial.queueLimit !== undefined) {
      this.#queueLimit = _count("queueLimit", partial.queueLimit, 50000);
    }
    if ("reject" in partial) this.#reject = partial.reject;
  }

  /**
   * The latest contact record per id, as stored after upserts and merges, optionally only
   * those of one `@collection`. Without a collection, an id present in two collections
   * appears once (either of them).
   */
  contacts(collection?: string): Map<string, Record<string, unknown>> {
    const out = new Map<string, Record<string, unknown>>();
    for (const record of this.#store.values()) {
      if (record["@type"] !== "contact") continue;
      if (collection !== undefined && record["@collection"] !== collection) continue;
      out.set(record.id as string, record);
    }
    return out;
  }

  /** What `POST /record` received: the latest record per id. */
  legacyRecords(): Map<string, LegacyRecord> {
    return new Map(this.#legacy);
  }

  /** The errors kept now, oldest first (at most 100), whatever shape `_errors` serves. */
  errors(): OmetriaPushError[] {
    return this.#errors.map((e) => ({ ...e }));
  }

  /**
   * Holds the next push whose record ids `match` (any push when absent) after it arrived and
   * before it is stored, until `release()`: how a test keeps one request in flight while
   * others go (a slow network, a client's retries). `arrived` resolves when it is held.
   * Closing the simulator releases every hold.
   */
  holdPush(match?: (ids: readonly string[]) => boolean): PushHold {
    const arrived = Promise.withResolvers<void>();
    const released = Promise.withResolvers<void>();
    this.#holds.push({ match, arrived, released });
    return { arrived: arrived.promise, release: () => released.resolve() };
  }

  /** A snapshot of the counters (later requests do not change it). */
  get stats(): Readonly<OmetriaSimulatorStats> {
    return { ...this.#stats };
  }

  /** Zeroes the counters; stored records, errors and the queue stay. */
  resetStats(): void {
    this.#stats = _emptyStats();
  }

  /**
   * Stops listening. Requests still waiting on latency or a slow fault are answered 503 at
   * once, so closing never waits for a fake clock that nobody ticks.
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closing.abort(new Error("Ometria simulator closing"));
      this.#closed = this.#server.shutdown();
    }
    return this.#closed;
  }

  async #handle(req: Request): Promise<Response> {
    const requestId = crypto.randomUUID();
    this.#inFlight++;
    if (this.#inFlight > this.#stats.maxInFlight) this.#stats.maxInFlight = this.#inFlight;
    let response: Response;
    try {
      response = await this.#answer(req, requestId);
    } finally {
      this.#inFlight--;
    }
    response.headers.set("X-Request-Id", requestId);
    if (response.status === 429) this.#stats.status429++;
    return response;
  }

  async #answer(req: Request, requestId: string): Promise<Response> {
    this.#stats.requests++;
    // Pushes (and the legacy endpoint) and the rest of the Data API have limits of their own.
    const path = new URL(req.url).pathname.replace(/\/+$/, "");
    const second = Math.floor(this.#clock.now() / 1000);
    const window = path === "/v2/push/_errors" || path === "/v2/unsubscribes" ||
        path === "/v2/contacts" || path.startsWith("/v2/contacts/")
      ? this.#data
      : path.startsWith("/v2/data-deletion-requests")
      ? this.#gdpr
      : this.#push;
    const ordinal = window.arrive(second);
    const fault = this.faults.next();
    if (typeof fault === "number") {
      const headers: Record<string, string> = {};
      const retryAfter = this.faults.retryAfterSeconds;
      if ((fault === 429 || fault === 503) && retryAfter !== undefined) {
        headers["Retry-After"] = String(retryAfter);
      }
      return _json(fault, { status: "error", message: `Simulated fault ${fault}` }, headers);
    }
    try {
      if (fault === "slow") await this.#clock.sleep(this.faults.slowMs, this.#closing.signal);
      if (this.#latencyMs > 0) await this.#clock.sleep(this.#latencyMs, this.#closing.signal);
    } catch {
      return _json(503, { status: "error", message: "Simulator closing" });
    }
    await this.#held(req);
    const response = await this.#route(req, path, requestId, ordinal);
    if (fault === "drop") {
      // The work above is done; the client only loses the answer.
      await response.body?.cancel();
      return droppedResponse();
    }
    return response;
  }

  /** Waits while a hold (see `holdPush`) catches this request. */
  async #held(req: Request): Promise<void> {
    if (this.#holds.length === 0 || new URL(req.url).pathname !== "/v2/push") return;
    let ids: string[] = [];
    try {
      const body: unknown = JSON.parse(await req.clone().text());
      if (Array.isArray(body)) ids = body.map((r) => String((r as { id?: unknown })?.id));
    } catch {
      // Not a batch: no hold wants it.
    }
    const at = this.#holds.findIndex((h) => h.match === undefined || h.match(ids));
    if (at < 0) return;
    const [hold] = this.#holds.splice(at, 1);
    hold!.arrived.resolve();
    const closing = new Promise<void>((resolve) => {
      if (this.#closing.signal.aborted) resolve();
      this.#closing.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    await Promise.race([hold!.released.promise, closing]);
  }

  #route(
    req: Request,
    path: string,
    requestId: string,
    ordinal: number,
  ): Promise<Response> | Response {
    const denied = _unauthorised(this.#settings.badKeyStatus);
    if (path === "/v2/push") {
      this.#stats.pushRequests++;
      if (req.method !== "POST") return _methodNotAllowed("POST");
      if (req.headers.get("X-Ometria-Auth") !== this.apiKey) return denied;
      return this.#limited(ordinal) ?? this.#pushRecords(req, requestId);
    }
    if (path === "/v2/push/_errors") {
      if (req.method !== "GET") return _methodNotAllowed("GET");
      if (req.headers.get("X-Ometria-Auth") !== this.apiKey) return denied;
      return this.#dataLimited(ordinal) ?? _json(200, this.#servedErrors());
    }
    if (path === "/v2/unsubscribes") {
      if (req.headers.get("X-Ometria-Auth") !== this.apiKey) return denied;
      return this.#dataLimited(ordinal) ?? this.privacy.unsubscribesAnswer(req);
    }
    if (path === "/v2/contacts" || path.startsWith("/v2/contacts/")) {
      // The Contact API is the Data API: 4 requests/s, apart from pushes (O-INTRO).
      if (req.headers.get("X-Ometria-Auth") !== this.apiKey) return denied;
      return this.#dataLimited(ordinal) ?? this.contactApi.answer(req, path);
    }
    if (path === "/v2/data-deletion-requests" || path.startsWith("/v2/data-deletion-requests/")) {
      if (req.headers.get("X-Ometria-Auth") !== this.apiKey) return denied;
      return this.privacy.deletionAnswer(req, path, requestId);
    }
    if (path === "/record") {
      this.#stats.recordRequests++;
      if (req.method !== "POST") return _methodNotAllowed("POST");
      if (req.headers.get("Authorization") !== this.apiKey) return denied;
      return this.#limited(ordinal) ?? this.#record(req);
    }
    return _json(404, { status: "error", message: `No route for ${req.method} ${path || "/"}` });
  }

  /** The 429 for a push beyond the per-second limit, or undefined when it may go on. */
  #limited(ordinal: number): Response | undefined {
    if (this.#maxRequestsPerSecond > 0 && ordinal > this.#maxRequestsPerSecond) {
      return _json(429, { status: "error", message: "Rate limit exceeded" }, {
        "Retry-After": "1",
      });
    }
    const allowed = this.#push.allow();
    if (allowed > this.#stats.maxRequestsInOneSecond) {
      this.#stats.maxRequestsInOneSecond = allowed;
    }
    return undefined;
  }

  /** The 429 for a Data API request beyond its own per-second limit. */
  #dataLimited(ordinal: number): Response | undefined {
    const max = this.#maxDataApiRequestsPerSecond;
    if (max > 0 && ordinal > max) {
      return _json(429, { status: "error", message: "Rate limit exceeded" }, {
        "Retry-After": "1",
      });
    }
    const allowed = this.#data.allow();
    if (allowed > this.#stats.maxDataApiRequestsInOneSecond) {
      this.#stats.maxDataApiRequestsInOneSecond = allowed;
    }
    return undefined;
  }

  async #pushRecords(req: Request, requestId: string): Promise<Response> {
    const body = await _readArray(req);
    if (body instanceof Response) return body;
    this.#seeBatch(body.length);
    if (body.length > this.#maxBatchRecords) return this.#tooLarge();

    const types = new Set<unknown>();
    for (const record of body) if (_isObject(record)) types.add(record["@type"]);
    types.delete(undefined);
    if (types.size > 1) {
      return _badRequest(
        `All records of a request must have the same @type: got ${[...types].join(", ")}`,
      );
    }

    // A body no larger than the limit cannot hold a record over it: skip the re-serialising.
    const length = Number(req.headers.get("content-length") ?? Number.NaN);
    const checkSize = !(length <= OMETRIA_MAX_RECORD_BYTES);
    const valid: Record<string, unknown>[] = [];
    const problems: OmetriaPushError[] = [];
    const at = new Date(this.#clock.now()).toISOString();
    for (const record of body) {
      const problem = validateRecord(record, this.#policy, checkSize) ??
        this.#rejectedByCallback(record);
      if (!problem) valid.push(record as Record<string, unknown>);
      else {
        const r = _isObject(record) ? record : {};
        problems.push({
          error_message: problem.message,
          error_path: problem.path,
          record_id: typeof r.id === "string" ? r.id : null,
          request_id: requestId,
          record_type: typeof r["@type"] === "string" ? r["@type"] : null,
          timestamp: at,
        });
      }
    }

    const now = this.#clock.now();
    this.#drain(now);
    // Asynchronous validation queues every record; the invalid ones are dropped later.
    const queued = this.#settings.validation === "async" ? body.length : valid.length;
    if (this.#queued + queued > this.#queueLimit) {
      const headers = this.#queueHeaders();
      if (this.#ingestPerSecond > 0) {
        const excess = this.#queued + queued - this.#queueLimit;
        headers["Retry-After"] = String(Math.max(1, Math.ceil(excess / this.#ingestPerSecond)));
      }
      return _json(429, { status: "error", message: "Queue is full" }, headers);
    }

    let skipped = 0;
    for (const record of valid) if (!this.#upsert(record)) skipped++;
    this.#queued += queued;
    this.#errors.push(...problems);
    if (this.#errors.length > _ERRORS_KEPT) {
      this.#errors.splice(0, this.#errors.length - _ERRORS_KEPT);
    }
    this.#stats.recordsReceived += body.length;
    this.#stats.recordsAccepted += valid.length - skipped;
    this.#stats.recordsRejected += problems.length;
    this.#stats.recordsSkipped += skipped;
    const rejected = this.#settings.validation === "async" ? 0 : problems.length;
    return _json(202, {
      status: "OK",
      request_id: requestId,
      accepted: body.length - rejected - skipped,
      rejected,
      ...(this.#settings.skipped === "unchanged" ? { skipped } : {}),
    }, this.#queueHeaders());
  }

  /** `_errors` as the configured shape and order serve it. */
  #servedErrors(): unknown[] {
    const shape = this.#settings.errorsShape;
    const entries = this.#errors.map((e) =>
      shape === "documented" ? { error_message: e.error_message, error_path: e.error_path } : {
        record_id: e.record_id,
        request_id: e.request_id,
        record_type: e.record_type,
        timestamp: e.timestamp,
        ...(shape === "rich"
          ? { message: { error: e.error_message, error_path: e.error_path } }
          : { message: e.error_message, error_path: e.error_path }),
      }
    );
    return this.#settings.errorsOrder === "newest-first" ? entries.reverse() : entries;
  }

  #rejectedByCallback(record: unknown): { message: string; path: string } | undefined {
    if (!this.#reject) return undefined;
    const message = this.#reject(record as Record<string, unknown>);
    return message === undefined ? undefined : { message, path: "root" };
  }

  /**
   * Stores `record` under the record policy; false when, with `skipped: "unchanged"`, it
   * equals what is stored (nothing to do, counted as skipped).
   */
  #upsert(record: Record<string, unknown>): boolean {
    const collection = typeof record["@collection"] === "string" ? record["@collection"] : "";
    const key = `${record["@type"]}\u0000${collection}\u0000${record.id}`;
    const previous = this.#store.get(key);
    const next = storedRecord(previous, record, this.#policy);
    if (
      this.#settings.skipped === "unchanged" && previous !== undefined &&
      JSON.stringify(previous) === JSON.stringify(next)
    ) {
      return false;
    }
    this.#store.set(key, next);
    if (record["@type"] === "contact") this.privacy.sawContact(record, next);
    return true;
  }

  #drain(now: number): void {
    if (now > this.#queuedAt) {
      const drained = ((now - this.#queuedAt) * this.#ingestPerSecond) / 1000;
      this.#queued = Math.max(0, this.#queued - drained);
    }
    this.#queuedAt = now;
  }

  #queueHeaders(): Record<string, string> {
    const remaining = Math.max(0, this.#queueLimit - Math.ceil(this.#queued));
    return {
      "X-QueueSize-Limit": String(this.#queueLimit),
      "X-QueueSize-Remaining": String(remaining),
    };
  }

  async #record(req: Request): Promise<Response> {
    const body = await _readArray(req);
    if (body instanceof Response) return body;
    this.#seeBatch(body.length);
    if (body.length > this.#maxBatchRecords) return this.#tooLarge();
    const records: LegacyRecord[] = [];
    for (let i = 0; i < body.length; i++) {
      const item = body[i];
      if (!_isObject(item)) return _badRequest(`[${i}] must be a JSON object`);
      if (typeof item.id !== "string" || item.id === "") {
        return _badRequest(`[${i}].id must be a non-empty string`);
      }
      for (const field of ["firstname", "lastname", "email", "status"] as const) {
        if (typeof item[field] !== "string") return _badRequest(`[${i}].${field} must be a string`);
      }
      records.push({
        id: item.id,
        firstname: item.firstname as string,
        lastname: item.lastname as string,
        email: item.email as string,
        status: item.status as string,
      });
    }
    for (const record of records) this.#legacy.set(record.id, record);
    this.#stats.recordsReceived += records.length;
    return _json(201, { status: "Ok", response: 1 });
  }

  #tooLarge(): Response {
    this.#stats.status413++;
    return _json(413, { message: "Request Entity Too Large" });
  }

  #seeBatch(size: number): void {
    if (size > this.#stats.maxBatch) this.#stats.maxBatch = size;
  }
}

function _emptyStats(): OmetriaSimulatorStats {
  return {
    requests: 0,
    pushRequests: 0,
    recordRequests: 0,
    recordsReceived: 0,
    recordsAccepted: 0,
    recordsRejected: 0,
    recordsSkipped: 0,
    status429: 0,
    status413: 0,
    maxBatch: 0,
    maxRequestsInOneSecond: 0,
    maxDataApiRequestsInOneSecond: 0,
    maxInFlight: 0,
  };
}

/** Arrivals and allowed requests of one limit in the current clock second. */
class _Window {
  #second = Number.NEGATIVE_INFINITY;
  #arrivals = 0;
  #allowed = 0;

  /** Counts a request arriving in `second`; its place in that second. */
  arrive(second: number): number {
    if (second > this.#second) {
      this.#second = second;
      this.#arrivals = 0;
      this.#allowed = 0;
    }
    return ++this.#arrivals;
  }

  /** Counts a request let through; how many were in this second. */
  allow(): number {
    return ++this.#allowed;
  }
}

function _count(name: string, value: number | undefined, fallback: number): number {
  const result = value ?? fallback;
  if (!(result >= 0)) {
    throw new RangeError(
      `Cannot configure the Ometria simulator as '${name}' must be >= 0: current value ${result}`,
    );
  }
  return result;
}

function _isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

async function _readArray(req: Request): Promise<unknown[] | Response> {
  let body: unknown;
  try {
    body = await req.json();
  } catch (error) {
    return _badRequest(`Body is not valid JSON: ${error instanceof Error ? error.message : error}`);
  }
  if (!Array.isArray(body)) return _badRequest("Body must be a JSON array of records");
  return body;
}

function _json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

function _badRequest(message: string): Response {
  return _json(400, { status: "error", message });
}

function _unauthorised(status: 401 | 403): Response {
  // Ometria's reference pages: "403 Forbidden | API key is not authorised to access this
  // resource" (e.g. https://docs.ometria.com/reference/get_unsubscribes).
  return status === 403
    ? _json(403, { status: "error", message: "API key is not authorised to access this resource" })
    : _json(401, { status: "error", message: "Unauthorised" });
}

function _methodNotAllowed(allowed: string): Response {
  return _json(405, { status: "error", message: "Method not allowed" }, { Allow: allowed });
}
