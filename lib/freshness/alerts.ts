/**
 * Alerts for connections that fall behind: one alert when an incident starts, a reminder
 * every `repeatMinutes` while it lasts, one "recovered" when it ends. The decision is made
 * from the connection's persisted alert memory (`state.alert`), so a restart during an
 * incident does not alert again, and a process that finds a connection behind with no record
 * of having alerted alerts at once.
 *
 * Every alert is a log line with a stable event name (`connection.behind`,
 * `connection.recovered`) and, when a webhook URL is configured, a JSON POST delivered in the
 * background: a bounded queue, sent in order, retried with backoff on the injected clock. A
 * slow or dead webhook never slows the sync; {@linkcode AlertManager.drain} waits for it at
 * shutdown. The webhook URL may carry a secret token: only its origin is ever logged.
 *
 * @module
 */
import { isRetryableStatus } from "../http/request_json.ts";
import { parseRetryAfter, retry, RetryError } from "../http/retry.ts";
import { errorText, redact } from "../log/error_text.ts";
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { DEFAULT_ALERT_REPEAT_MINUTES } from "../config/defaults.ts";
import type { ConnectionState } from "../state/schema.ts";
import { freshnessOf } from "./freshness.ts";
import { erasureLabel } from "../engine/erasure.ts";

/** Stable names of alert events, used in log messages and webhook payloads. */
export type AlertEvent =
  | "connection.behind"
  | "connection.recovered"
  | "connection.diverged"
  | "connection.rejected_async"
  | "erasure.overdue"
  | "state.write_failed";

/** The JSON body POSTed to the webhook for every alert. */
export interface AlertPayload {
  event: AlertEvent;
  /** The connection's id. */
  connection: string;
  list_id: string;
  /** Lag at the time of the alert; null when unknown. */
  lag_seconds: number | null;
  threshold_seconds: number;
  fresh_as_of: string | null;
  last_error: string | null;
  /** Present (true) only on a reminder of an incident already alerted. */
  reminder?: true;
  /** `connection.diverged` only: ids found gone from Mailchimp (now opted out). */
  orphans?: number;
  /** `connection.diverged` only: members polling had missed (now pushed). */
  missed?: number;
  /** `connection.diverged` only: a few of the orphan ids. */
  orphan_ids?: string[];
  /**
   * `connection.diverged` from a verify only: what it read back from Ometria, how many
   * members it compared, and how many differed by kind, with the fields.
   */
  verify?: {
    mode: "full" | "sample";
    checked: number;
    missing: number;
    stale: number;
    extra: number;
    fields: string[];
  };
  /** `connection.rejected_async` only: errors Ometria listed that name no record of ours. */
  rejected?: number;
  /** `connection.rejected_async` only: a few of them, `field: message`. */
  errors?: string[];
  /** `erasure.overdue` only: erasures open past 30 days (newly so: each alerts once). */
  erasures?: number;
  /** `erasure.overdue` only: their labels (a hash's first digits, never an address). */
  erasure_ids?: string[];
  /** `erasure.overdue` only: when the oldest of them was filed. */
  oldest_filed_at?: string;
}

/** Retry policy of webhook deliveries. */
export interface AlertRetryOptions {
  /** Attempts per delivery, the first included. @default {5} */
  maxAttempts?: number;
  /** Backoff before the second attempt; doubles for each further one. @default {1000} */
  minDelayMs?: number;
  /** Upper bound of one backoff (and of an honoured `Retry-After`). @default {60000} */
  maxDelayMs?: number;
  /** Wall-clock time one POST may take before it is abandoned and retried. @default {10000} */
  timeoutMs?: number;
  /** Source of backoff jitter in [0, 1) (see `retry`). @default {Math.random} */
  random?: () => number;
}

/** Options of {@linkcode AlertManager}. */
export interface AlertManagerOptions {
  /** Time source for decisions and backoff. */
  clock: Clock;
  /** Where alerts and delivery problems are logged. */
  logger: Logger;
  /** Used for webhook POSTs. @default {globalThis.fetch} */
  fetch?: typeof globalThis.fetch;
  /** Where alerts are POSTed as JSON; logs only when absent. May contain a secret token. */
  webhookUrl?: string;
  /** Minutes between reminders while a connection stays behind. @default {240} */
  repeatMinutes?: number;
  /** Retry policy of webhook deliveries. */
  retry?: AlertRetryOptions;
  /** Deliveries kept waiting at most; beyond it the oldest is dropped. @default {1000} */
  maxPending?: number;
  /** Secrets (API keys) to redact from `last_error` and delivery problems. @default {[]} */
  secrets?: readonly string[];
}

/** What {@linkcode AlertManager.evaluate} needs to know about a connection's configuration. */
export interface AlertConnection {
  id: string;
  list_id: string;
  threshold_seconds: number;
}

/** Options of {@linkcode AlertManager.evaluate}. */
export interface EvaluateOptions {
  /**
   * When the program first saw the connection (epoch ms), for a connection that never
   * completed a run. @default {when this manager first evaluated the connection}
   */
  firstSeenMs?: number;
}

/** Alert memory of one connection, as stored in `ConnectionState.alert`. */
export type AlertMemory = ConnectionState["alert"];

interface _Delivery {
  payload: AlertPayload;
}

/**
 * Decides when to alert about connections that are behind, logs the alerts and delivers them
 * to an optional webhook in the background. `evaluate()` is synchronous and cheap (safe to
 * call for thousands of connections per tick); the caller persists the alert memory it
 * returns. Call {@linkcode AlertManager.drain} then {@linkcode AlertManager.close} at shutdown.
 */
export class AlertManager {
  #clock: Clock;
  #logger: Logger;
  #fetch: typeof globalThis.fetch;
  #webhookUrl: string | undefined;
  #webhookOrigin: string | undefined;
  #repeatMs: number;
  #maxAttempts: number;
  #minDelayMs: number;
  #maxDelayMs: number;
  #timeoutMs: number;
  #maxPending: number;
  #random: () => number;
  #secrets: readonly string[];
  #queue: _Delivery[] = [];
  #worker: Promise<void> | undefined;
  #closer = new AbortController();
  #firstSeen = new Map<string, number>();

  constructor(options: AlertManagerOptions) {
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#repeatMs =
      _positive("repeatMinutes", options.repeatMinutes ?? DEFAULT_ALERT_REPEAT_MINUTES) * 60_000;
    this.#maxAttempts = Math.floor(_positive("retry.maxAttempts", options.retry?.maxAttempts ?? 5));
    this.#minDelayMs = _nonNegative("retry.minDelayMs", options.retry?.minDelayMs ?? 1000);
    this.#maxDelayMs = _nonNegative("retry.maxDelayMs", options.retry?.maxDelayMs ?? 60_000);
    this.#timeoutMs = _positive("retry.timeoutMs", options.retry?.timeoutMs ?? 10_000);
    this.#maxPending = Math.floor(_positive("maxPending", options.maxPending ?? 1000));
    this.#random = options.retry?.random ?? Math.random;
    this.#secrets = options.secrets ?? [];
    if (this.#minDelayMs > this.#maxDelayMs) {
      throw new RangeError(
        `Cannot create AlertManager as 'retry.minDelayMs' must be <= 'retry.maxDelayMs': current values ${this.#minDelayMs} and ${this.#maxDelayMs}`,
      );
    }
    if (options.webhookUrl !== undefined) {
      let url: URL;
      try {
        url = new URL(options.webhookUrl);
      } catch {
        // The URL is not repeated in the message: it may hold a secret token.
        throw new TypeError("Cannot create AlertManager as 'webhookUrl' is not a valid URL");
      }
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new TypeError(
          `Cannot create AlertManager as 'webhookUrl' must be http or https: current scheme ${url.protocol}`,
        );
      }
      this.#webhookUrl = options.webhookUrl;
      this.#webhookOrigin = url.origin;
    }
  }

  /** Webhook deliveries waiting or in progress. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Decides whether `conn` needs an alert now, sends it (log line at once, webhook in the
   * background) and returns the alert memory to persist in `state.alert`:
   * - behind, no incident recorded → `connection.behind`; `behind_since` and
   *   `last_alert_at` become now;
   * - behind, incident recorded → nothing until `repeatMinutes` after `last_alert_at`, then
   *   the same event with `reminder: true`, and `last_alert_at` becomes now;
   * - not behind, incident recorded → `connection.recovered`, memory cleared;
   * - otherwise the memory is returned unchanged.
   */
  evaluate(
    conn: AlertConnection,
    state: ConnectionState,
    options: EvaluateOptions = {},
  ): AlertMemory {
    const nowMs = this.#clock.now();
    let firstSeenMs = options.firstSeenMs ?? this.#firstSeen.get(conn.id);
    if (firstSeenMs === undefined) {
      firstSeenMs = nowMs;
      this.#firstSeen.set(conn.id, nowMs);
    }
    const freshness = freshnessOf(state, {
      nowMs,
      thresholdSeconds: conn.threshold_seconds,
      firstSeenMs,
    });
    const memory = state.alert;
    const nowIso = new Date(nowMs).toISOString();
    const payload = (event: AlertEvent): AlertPayload => ({
      event,
      connection: conn.id,
      list_id: conn.list_id,
      lag_seconds: freshness.lag_seconds,
      threshold_seconds: freshness.threshold_seconds,
      fresh_as_of: freshness.fresh_as_of,
      last_error: state.last_error === null ? null : redact(state.last_error, this.#secrets),
    });

    if (freshness.behind) {
      if (memory.behind_since === null) {
        this.#alert(payload("connection.behind"), nowIso);
        return { behind_since: nowIso, last_alert_at: nowIso };
      }
      const lastMs = Date.parse(memory.last_alert_at ?? memory.behind_since);
      // An unreadable time counts as "long ago": a reminder too many beats silence.
      if (Number.isNaN(lastMs) || nowMs - lastMs >= this.#repeatMs) {
        this.#alert({ ...payload("connection.behind"), reminder: true }, memory.behind_since);
        return { behind_since: memory.behind_since, last_alert_at: nowIso };
      }
      return { behind_since: memory.behind_since, last_alert_at: memory.last_alert_at };
    }
    if (memory.behind_since !== null) {
      this.#alert(payload("connection.recovered"), memory.behind_since);
      return { behind_since: null, last_alert_at: null };
    }
    return { behind_since: memory.behind_since, last_alert_at: memory.last_alert_at };
  }

  /**
   * Sends `connection.diverged` (log line at once, webhook in the background): a
   * reconciliation found orphans or members polling missed, and repaired them. Polling should
   * never miss a member, so this is a bug report; each reconciliation that finds a divergence
   * is one incident and alerts once.
   */
  diverged(
    conn: AlertConnection,
    state: ConnectionState,
    found: { orphans: number; missing: number; orphan_ids: readonly string[] },
  ): void {
    this.#alert({
      ...this.#incident("connection.diverged", conn, state),
      orphans: found.orphans,
      missed: found.missing,
      orphan_ids: found.orphan_ids.slice(0, 10),
    }, new Date(this.#clock.now()).toISOString());
  }

  /**
   * Sends `connection.diverged` for a verify (log line at once, webhook in the background):
   * what Ometria holds differs from Mailchimp (members missing, fields stale, contacts no
   * member has). The caller raises it once per incident: when verifies start finding
   * differences (`diverged_since`), not at every verify that still does.
   */
  verifyDiverged(
    conn: AlertConnection,
    state: ConnectionState,
    found: {
      mode: "full" | "sample";
      checked: number;
      missing: number;
      stale: number;
      extra: number;
      fields: readonly string[];
    },
  ): void {
    this.#alert({
      ...this.#incident("connection.diverged", conn, state),
      verify: {
        mode: found.mode,
        checked: found.checked,
        missing: found.missing,
        stale: found.stale,
        extra: found.extra,
        fields: found.fields.slice(0, 10),
      },
    }, new Date(this.#clock.now()).toISOString());
  }

  /**
   * Sends `connection.rejected_async` (log line at once, webhook in the background): Ometria
   * listed validation errors after answering "OK" (`GET /v2/push/_errors`) that cannot be
   * tied to a record, so some pushed records may not be stored and none can be named (the
   * documented error shape names a field, not a record). Records an error does name are
   * quarantined instead; this is for the rest. `errors` are shown as `field: message`.
   */
  rejectedAsync(
    conn: AlertConnection,
    state: ConnectionState,
    found: { rejected: number; errors: readonly string[] },
  ): void {
    this.#alert({
      ...this.#incident("connection.rejected_async", conn, state),
      rejected: found.rejected,
      errors: found.errors.slice(0, 10).map((e) => redact(e, this.#secrets)),
    }, new Date(this.#clock.now()).toISOString());
  }

  /**
   * Sends `erasure.overdue` (log line at once, webhook in the background): data deletion
   * requests Ometria has not reported complete 30 days after they were filed (it promises 14).
   * Each erasure alerts once; the caller records that it did.
   */
  erasureOverdue(
    conn: AlertConnection,
    state: ConnectionState,
    overdue: readonly { identity: string; filed_at: string }[],
  ): void {
    const oldest = overdue.map((r) => r.filed_at).sort()[0] ?? "";
    this.#alert({
      ...this.#incident("erasure.overdue", conn, state),
      erasures: overdue.length,
      erasure_ids: overdue.slice(0, 10).map((r) => erasureLabel(r.identity)),
      oldest_filed_at: oldest,
    }, new Date(this.#clock.now()).toISOString());
  }

  /** The payload of an incident that is not about lag: the connection and its last state. */
  #incident(event: AlertEvent, conn: AlertConnection, state: ConnectionState): AlertPayload {
    return {
      event,
      connection: conn.id,
      list_id: conn.list_id,
      lag_seconds: null,
      threshold_seconds: conn.threshold_seconds,
      fresh_as_of: state.fresh_as_of,
      last_error: state.last_error === null ? null : redact(state.last_error, this.#secrets),
    };
  }

  /**
   * Sends `state.write_failed` (log line at once, webhook in the background): the state
   * could not be saved for `ticks` ticks in a row. Syncing goes on from the last saved state,
   * but checkpoints are not kept until it is fixed. `connection` is the state's location.
   */
  stateFailing(location: string, advice: string, ticks: number): void {
    this.#alert({
      event: "state.write_failed",
      connection: location,
      list_id: "",
      lag_seconds: null,
      threshold_seconds: 0,
      fresh_as_of: null,
      last_error: redact(`${advice} (${ticks} ticks in a row)`, this.#secrets),
    }, new Date(this.#clock.now()).toISOString());
  }

  /**
   * Waits until every queued webhook delivery has been sent or given up. Resolves true when
   * the queue is empty, false when `signal` aborted first (deliveries then go on in the
   * background until {@linkcode AlertManager.close}).
   */
  async drain(signal?: AbortSignal): Promise<boolean> {
    while (this.#worker !== undefined) {
      if (signal?.aborted) return false;
      if (!signal) {
        await this.#worker;
        continue;
      }
      let onAbort = () => {};
      const aborted = new Promise<void>((resolve) => {
        onAbort = () => resolve();
        signal.addEventListener("abort", onAbort, { once: true });
      });
      try {
        await Promise.race([this.#worker, aborted]);
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    }
    return this.#queue.length === 0;
  }

  /**
   * Stops delivering: aborts the POST or backoff in progress, drops what is still queued
   * (with a warning naming how many) and resolves once the background worker has stopped.
   * Alerts evaluated afterwards are logged but not POSTed.
   */
  async close(): Promise<void> {
    if (!this.#closer.signal.aborted) {
      this.#closer.abort(new Error("AlertManager closed"));
      if (this.#queue.length > 0) {
        this.#logger.warn(
          "alert.webhook.dropped {count} pending webhook deliveries dropped at close",
          {
            event: "alert.webhook.dropped",
            count: this.#queue.length,
            webhook: this.#webhookOrigin,
          },
        );
      }
      this.#queue = [];
    }
    await this.#worker;
  }

  /** Same as {@linkcode AlertManager.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #alert(payload: AlertPayload, behindSince: string): void {
    const properties = {
      ...payload,
      reminder: payload.reminder ?? false,
      behind_since: behindSince,
    };
    if (payload.event === "connection.behind") {
      this.#logger.error(
        "connection.behind {connection} (list {list_id}): lag {lag_seconds}s exceeds threshold {threshold_seconds}s, fresh as of {fresh_as_of}, behind since {behind_since}, reminder {reminder}",
        properties,
      );
    } else if (payload.event === "state.write_failed") {
      this.#logger.error("state.write_failed {connection}: {last_error}", properties);
    } else if (payload.event === "connection.diverged" && payload.verify) {
      this.#logger.error(
        "connection.diverged {connection} (list {list_id}): a {mode} verify of {checked} member(s) found {missing} missing, {stale} stale ({fields}) and {extra} extra in Ometria; run verify --repair",
        { ...properties, ...payload.verify, fields: payload.verify.fields.join(", ") || "none" },
      );
    } else if (payload.event === "connection.diverged") {
      this.#logger.error(
        "connection.diverged {connection} (list {list_id}): reconciliation found {orphans} orphan(s) and {missed} member(s) polling missed, and repaired them",
        properties,
      );
    } else if (payload.event === "erasure.overdue") {
      this.#logger.error(
        "erasure.overdue {connection} (list {list_id}): {erasures} erasure(s) filed with Ometria 30 days ago or more are not complete (oldest filed {oldest_filed_at}): {erasure_list}",
        { ...properties, erasure_list: (payload.erasure_ids ?? []).join(", ") },
      );
    } else if (payload.event === "connection.rejected_async") {
      this.#logger.error(
        "connection.rejected_async {connection} (list {list_id}): Ometria listed {rejected} validation error(s) after accepting pushes, tied to no record: {errors}",
        { ...properties, errors: (payload.errors ?? []).join("; ") },
      );
    } else {
      // WARN rather than INFO so that whoever watches warnings sees each incident end too.
      this.#logger.warn(
        "connection.recovered {connection} (list {list_id}): lag {lag_seconds}s within threshold {threshold_seconds}s, fresh as of {fresh_as_of}, behind since {behind_since}",
        properties,
      );
    }
    if (this.#webhookUrl !== undefined && !this.#closer.signal.aborted) this.#enqueue(payload);
  }

  #enqueue(payload: AlertPayload): void {
    if (this.#queue.length >= this.#maxPending) {
      // The head may be in flight; dropping the next oldest keeps the worker's bookkeeping
      // simple and loses an alert that is already stale anyway.
      const dropAt = this.#worker !== undefined && this.#queue.length > 1 ? 1 : 0;
      const [dropped] = this.#queue.splice(dropAt, 1);
      this.#logger.warn(
        "alert.webhook.dropped {dropped_event} for {connection}: more than {max_pending} deliveries pending",
        {
          event: "alert.webhook.dropped",
          dropped_event: dropped?.payload.event,
          connection: dropped?.payload.connection,
          max_pending: this.#maxPending,
          webhook: this.#webhookOrigin,
        },
      );
    }
    this.#queue.push({ payload });
    this.#worker ??= this.#work().finally(() => {
      this.#worker = undefined;
    });
  }

  async #work(): Promise<void> {
    // Deliveries go one at a time, in order, so a receiver never sees "recovered" before
    // the "behind" it ends.
    while (this.#queue.length > 0 && !this.#closer.signal.aborted) {
      const delivery = this.#queue[0]!;
      await this.#deliver(delivery);
      if (this.#queue[0] === delivery) this.#queue.shift();
    }
  }

  async #deliver(delivery: _Delivery): Promise<void> {
    const { payload } = delivery;
    // Every field, not only last_error: a state from before ids were checked may hold a key
    // passed as a list id.
    const body = redact(JSON.stringify(payload), this.#secrets);
    const closed = this.#closer.signal;
    const about = {
      alert_event: payload.event,
      connection: payload.connection,
      webhook: this.#webhookOrigin,
    };
    let attempts = 0;
    try {
      await retry(async (attempt, signal) => {
        attempts = attempt;
        const response = await this.#post(body, signal);
        await response.body?.cancel();
        if (!response.ok) {
          throw new _WebhookStatusError(
            response.status,
            parseRetryAfter(response.headers.get("retry-after"), this.#clock.now()),
          );
        }
      }, {
        clock: this.#clock,
        signal: closed,
        maxAttempts: this.#maxAttempts,
        minDelayMs: this.#minDelayMs,
        maxDelayMs: this.#maxDelayMs,
        // Bounded by attempts, not by time: an alert is worth its retries however long they
        // take, and they never hold up the sync.
        maxElapsedMs: Infinity,
        random: this.#random,
        shouldRetry: (error) => !(error instanceof _WebhookStatusError) || error.retryable,
        retryAfterMs: (error) =>
          error instanceof _WebhookStatusError && error.retryAfterMs !== undefined
            ? Math.min(this.#maxDelayMs, error.retryAfterMs)
            : undefined,
        onFailedAttempt: ({ error, attempt, delayMs }) => {
          this.#logger.warn(
            "alert.webhook.retry {alert_event} for {connection} to {webhook}: {problem}, attempt {attempt} of {max_attempts}, retrying in {delay_ms}ms",
            {
              event: "alert.webhook.retry",
              ...about,
              attempt,
              max_attempts: this.#maxAttempts,
              delay_ms: Math.round(delayMs),
              problem: this.#problem(error),
            },
          );
        },
      });
      this.#logger.debug("alert.webhook.sent {alert_event} for {connection} to {webhook}", {
        event: "alert.webhook.sent",
        ...about,
        attempt: attempts,
      });
    } catch (error) {
      if (closed.aborted) return;
      this.#logger.error(
        "alert.webhook.failed {alert_event} for {connection} to {webhook} after {attempts} attempt(s): {problem}",
        {
          event: "alert.webhook.failed",
          ...about,
          attempts,
          problem: this.#problem(error instanceof RetryError ? error.cause : error),
        },
      );
    }
  }

  #post(body: string, signal: AbortSignal): Promise<Response> {
    // The timeout bounds real network I/O, so it runs on wall-clock time rather than on the
    // injected clock (a FakeClock with autoAdvance would otherwise fire it at once).
    return this.#fetch(this.#webhookUrl!, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      signal: AbortSignal.any([AbortSignal.timeout(this.#timeoutMs), signal]),
    });
  }

  /** A delivery problem for the log: never the webhook's path (it may hold a token). */
  #problem(error: unknown): string {
    if (error instanceof _WebhookStatusError) return `HTTP ${error.status}`;
    if (error instanceof DOMException && error.name === "TimeoutError") {
      return `no answer within ${this.#timeoutMs}ms`;
    }
    const text = error instanceof Error ? `${error.name}: ${errorText(error)}` : errorText(error);
    const url = this.#webhookUrl!;
    // The origin stays readable; the rest of the URL and every other secret is redacted.
    return redact(
      text.replaceAll(url, this.#webhookOrigin!).replaceAll(
        new URL(url).href,
        this.#webhookOrigin!,
      ),
      this.#secrets,
    );
  }
}

/** A webhook answer that was not 2xx. */
class _WebhookStatusError extends Error {
  readonly retryable: boolean;
  constructor(readonly status: number, readonly retryAfterMs: number | undefined) {
    super(`HTTP ${status}`);
    this.name = "WebhookStatusError";
    this.retryable = isRetryableStatus(status);
  }
}

function _positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(
      `Cannot create AlertManager as '${name}' must be > 0: current value ${value}`,
    );
  }
  return value;
}

function _nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(
      `Cannot create AlertManager as '${name}' must be >= 0: current value ${value}`,
    );
  }
  return value;
}
