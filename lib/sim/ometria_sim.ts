/**
 * A local stand-in for the Ometria Data API (`POST /v2/push`, `GET /v2/push/_errors`) and for
 * the original tool's legacy `POST /record` endpoint. It plays what the real service is known
 * to do (auth, 100-record batches, 60 KB records, per-second rate limit, an ingest queue that
 * backs up, upserts on `@type`/`@collection`/`id`, `@merge` of partial records) and what its
 * docs do not rule out (a lower batch limit answered 413, records rejected one by one behind
 * a 2xx), and lets tests script faults, so that the client and the engine can be proven
 * against it over real HTTP.
 *
 * @module
 */
import { type Clock, systemClock } from "../clock/clock.ts";
import { droppedResponse, FaultInjector, type FaultPlan } from "./faults.ts";

/** The largest batch Ometria documents for one request (the default `maxBatchRecords`). */
export const OMETRIA_MAX_BATCH = 100;

/** The largest record, in bytes of its JSON, that Ometria accepts ("Record is too large"). */
export const OMETRIA_MAX_RECORD_BYTES = 61440;

/** The values Ometria accepts for a contact's `marketing_optin`. */
export const OMETRIA_MARKETING_OPTINS = [
  "EXPLICITLY_OPTEDIN",
  "EXPLICITLY_OPTEDOUT",
  "NOT_SPECIFIED",
] as const;

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
   * Requests allowed in one clock second (`Math.floor(clock.now() / 1000)`); the next ones
   * get 429. 0 means unlimited.
   * @default {8}
   */
  maxRequestsPerSecond?: number;
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
   * is otherwise valid. The request is still answered 2xx; the record counts in `rejected`,
   * is not stored, and is listed at `GET /v2/push/_errors` with path `[index]`. Records over
   * 60 KB are always rejected ("Record is too large") before this is asked.
   */
  reject?: ((record: Record<string, unknown>) => string | undefined) | undefined;
}

/** One entry of `GET /v2/push/_errors`. */
export interface OmetriaPushError {
  /** What was wrong, e.g. `"Record is too large"`. */
  error_message: string;
  /** Where, as an index into the pushed array and a field, e.g. `"[3].email"`. */
  error_path: string;
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
  /** Records rejected by `/v2/push` validation. */
  recordsRejected: number;
  /** 429 answers, whether from the rate limit, the queue or an injected fault. */
  status429: number;
  /** 413 answers: requests with more than `maxBatchRecords` records. */
  status413: number;
  /** Largest array seen in one request, even one refused for being over 100. */
  maxBatch: number;
  /**
   * Most requests that passed the rate limiter in one clock second. With the limiter on it
   * never exceeds `maxRequestsPerSecond` (look at `status429` instead); with it off (0) it
   * is the client's peak rate.
   */
  maxRequestsInOneSecond: number;
}

type _Reject = (record: Record<string, unknown>) => string | undefined;

interface _Problem {
  message: string;
  path: string;
}

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

  #server: Deno.HttpServer<Deno.NetAddr>;
  #clock: Clock;
  #closing = new AbortController();
  #closed: Promise<void> | undefined;

  #maxRequestsPerSecond: number;
  #queueLimit: number;
  #ingestPerSecond: number;
  #latencyMs: number;
  #maxBatchRecords: number;
  #reject: _Reject | undefined;

  #store = new Map<string, Record<string, unknown>>();
  #legacy = new Map<string, LegacyRecord>();
  #errors: OmetriaPushError[] = [];

  #windowSecond = Number.NEGATIVE_INFINITY;
  #windowArrivals = 0;
  #windowAllowed = 0;

  #queued = 0;
  #queuedAt: number;

  #stats: OmetriaSimulatorStats = _emptyStats();
  #holds: _Hold[] = [];

  private constructor(options: OmetriaSimulatorOptions) {
    this.apiKey = options.apiKey ?? "simometriakey";
    this.#clock = options.clock ?? systemClock;
    this.faults = new FaultInjector(options.faults ?? {});
    this.#maxRequestsPerSecond = _count("maxRequestsPerSecond", options.maxRequestsPerSecond, 8);
    this.#queueLimit = _count("queueLimit", options.queueLimit, 50000);
    this.#ingestPerSecond = _count("ingestPerSecond", options.ingestPerSecond, 20000);
    this.#latencyMs = _count("latencyMs", options.latencyMs, 0);
    this.#maxBatchRecords = _count("maxBatchRecords", options.maxBatchRecords, OMETRIA_MAX_BATCH);
    this.#reject = options.reject;
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
  setOptions(
    partial: Partial<
      Pick<
        OmetriaSimulatorOptions,
        "maxRequestsPerSecond" | "latencyMs" | "queueLimit" | "maxBatchRecords" | "reject"
      >
    >,
  ): void {
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

  /** The errors `GET /v2/push/_errors` would list now, oldest first (at most 100). */
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
    const response = await this.#answer(req, requestId);
    response.headers.set("X-Request-Id", requestId);
    if (response.status === 429) this.#stats.status429++;
    return response;
  }

  async #answer(req: Request, requestId: string): Promise<Response> {
    this.#stats.requests++;
    const ordinal = this.#arrive();
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
    const response = await this.#route(req, requestId, ordinal);
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

  /** Counts the request in its clock second and returns its place in that second. */
  #arrive(): number {
    const second = Math.floor(this.#clock.now() / 1000);
    if (second > this.#windowSecond) {
      this.#windowSecond = second;
      this.#windowArrivals = 0;
      this.#windowAllowed = 0;
    }
    return ++this.#windowArrivals;
  }

  #route(req: Request, requestId: string, ordinal: number): Promise<Response> | Response {
    const path = new URL(req.url).pathname.replace(/\/+$/, "");
    if (path === "/v2/push") {
      this.#stats.pushRequests++;
      if (req.method !== "POST") return _methodNotAllowed("POST");
      if (req.headers.get("X-Ometria-Auth") !== this.apiKey) return _unauthorised();
      return this.#limited(ordinal) ?? this.#push(req, requestId);
    }
    if (path === "/v2/push/_errors") {
      if (req.method !== "GET") return _methodNotAllowed("GET");
      if (req.headers.get("X-Ometria-Auth") !== this.apiKey) return _unauthorised();
      return this.#limited(ordinal) ?? _json(200, this.#errors);
    }
    if (path === "/record") {
      this.#stats.recordRequests++;
      if (req.method !== "POST") return _methodNotAllowed("POST");
      if (req.headers.get("Authorization") !== this.apiKey) return _unauthorised();
      return this.#limited(ordinal) ?? this.#record(req);
    }
    return _json(404, { status: "error", message: `No route for ${req.method} ${path || "/"}` });
  }

  /** The 429 for a request beyond the per-second limit, or undefined when it may go on. */
  #limited(ordinal: number): Response | undefined {
    if (this.#maxRequestsPerSecond > 0 && ordinal > this.#maxRequestsPerSecond) {
      return _json(429, { status: "error", message: "Rate limit exceeded" }, {
        "Retry-After": "1",
      });
    }
    this.#windowAllowed++;
    if (this.#windowAllowed > this.#stats.maxRequestsInOneSecond) {
      this.#stats.maxRequestsInOneSecond = this.#windowAllowed;
    }
    return undefined;
  }

  async #push(req: Request, requestId: string): Promise<Response> {
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
    const accepted: Record<string, unknown>[] = [];
    const problems: _Problem[] = [];
    for (let i = 0; i < body.length; i++) {
      const record = body[i];
      const problem = _validate(record, i, checkSize) ?? this.#rejectedByCallback(record, i);
      if (problem) problems.push(problem);
      else accepted.push(record as Record<string, unknown>);
    }

    const now = this.#clock.now();
    this.#drain(now);
    if (this.#queued + accepted.length > this.#queueLimit) {
      const headers = this.#queueHeaders();
      if (this.#ingestPerSecond > 0) {
        const excess = this.#queued + accepted.length - this.#queueLimit;
        headers["Retry-After"] = String(Math.max(1, Math.ceil(excess / this.#ingestPerSecond)));
      }
      return _json(429, { status: "error", message: "Queue is full" }, headers);
    }

    for (const record of accepted) this.#upsert(record);
    this.#queued += accepted.length;
    for (const problem of problems) {
      this.#errors.push({ error_message: problem.message, error_path: problem.path });
    }
    if (this.#errors.length > _ERRORS_KEPT) {
      this.#errors.splice(0, this.#errors.length - _ERRORS_KEPT);
    }
    this.#stats.recordsReceived += body.length;
    this.#stats.recordsAccepted += accepted.length;
    this.#stats.recordsRejected += problems.length;
    return _json(202, {
      status: "OK",
      request_id: requestId,
      accepted: accepted.length,
      rejected: problems.length,
    }, this.#queueHeaders());
  }

  #rejectedByCallback(record: unknown, index: number): _Problem | undefined {
    if (!this.#reject) return undefined;
    const message = this.#reject(record as Record<string, unknown>);
    return message === undefined ? undefined : { message, path: `[${index}]` };
  }

  #upsert(record: Record<string, unknown>): void {
    const collection = typeof record["@collection"] === "string" ? record["@collection"] : "";
    const key = `${record["@type"]}\u0000${collection}\u0000${record.id}`;
    const { "@merge": merge, ...fields } = record;
    const previous = merge === true ? this.#store.get(key) : undefined;
    // A shallow merge: Ometria documents "@merge" as keeping the fields a record leaves unset
    // (an opted-out orphan sent as id + marketing_optin keeps its email and names). The
    // directive itself is not data, so it is not stored.
    this.#store.set(key, previous ? { ...previous, ...fields } : fields);
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
    status429: 0,
    status413: 0,
    maxBatch: 0,
    maxRequestsInOneSecond: 0,
  };
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

/** The first thing wrong with one pushed record, the way Ometria's validation reports it. */
function _validate(record: unknown, index: number, checkSize: boolean): _Problem | undefined {
  const at = (field: string) => `[${index}].${field}`;
  if (!_isObject(record)) return { message: "Record must be a JSON object", path: `[${index}]` };
  const type = record["@type"];
  if (typeof type !== "string" || type === "") {
    return { message: "@type must be a non-empty string", path: at("@type") };
  }
  if (typeof record.id !== "string" || record.id === "") {
    return { message: "id must be a non-empty string", path: at("id") };
  }
  const collection = record["@collection"];
  // Contacts need a collection (one per source); other types may leave it out.
  if (
    (type === "contact" || collection !== undefined) &&
    (typeof collection !== "string" || collection === "")
  ) {
    return { message: "@collection must be a non-empty string", path: at("@collection") };
  }
  if (record["@merge"] !== undefined && typeof record["@merge"] !== "boolean") {
    return { message: "@merge must be a boolean", path: at("@merge") };
  }
  if (type === "contact") {
    if (record.email !== undefined && typeof record.email !== "string") {
      return { message: "email must be a string", path: at("email") };
    }
    const optin = record.marketing_optin;
    if (
      optin !== undefined &&
      !(OMETRIA_MARKETING_OPTINS as readonly unknown[]).includes(optin)
    ) {
      return {
        message: `marketing_optin must be one of ${OMETRIA_MARKETING_OPTINS.join(", ")}`,
        path: at("marketing_optin"),
      };
    }
  }
  if (checkSize && _jsonBytes(record) > OMETRIA_MAX_RECORD_BYTES) {
    return { message: "Record is too large", path: `[${index}]` };
  }
  return undefined;
}

function _jsonBytes(record: Record<string, unknown>): number {
  const text = JSON.stringify(record);
  // UTF-8 takes at most 3 bytes per UTF-16 unit, so short texts need no encoding.
  if (text.length * 3 <= OMETRIA_MAX_RECORD_BYTES) return text.length;
  return new TextEncoder().encode(text).length;
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

function _unauthorised(): Response {
  return _json(401, { status: "error", message: "Unauthorised" });
}

function _methodNotAllowed(allowed: string): Response {
  return _json(405, { status: "error", message: "Method not allowed" }, { Allow: allowed });
}
