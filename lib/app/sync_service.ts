/**
 * The sync service: connections wired to their API clients, the engine, the scheduler,
 * freshness alerts and metrics. `main.ts` builds one from the config with the real fetch,
 * clock, logger and store; the demo, the benchmark and the tests build one against the
 * simulators.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { type Config, configSecrets, type ConnectionConfig } from "../config/config.ts";
import {
  DEFAULT_BULK_MEMBER_COUNT,
  DEFAULT_MAILCHIMP_CLOCK_MARGIN_SECONDS,
  DEFAULT_MAILCHIMP_MAX_CONNECTIONS,
  DEFAULT_MAILCHIMP_RETRY_MAX_SECONDS,
  DEFAULT_MAILCHIMP_TIMEOUT_SECONDS,
  DEFAULT_MAX_CONCURRENT_RUNS,
  DEFAULT_MINUTES_PER_BULK,
  DEFAULT_OMETRIA_BATCH_SIZE,
  DEFAULT_OMETRIA_DATA_API_REQUESTS_PER_SECOND,
  DEFAULT_OMETRIA_MAX_REQUESTS_PER_SECOND,
  DEFAULT_PAGE_SIZE,
  DEFAULT_POLLING_SECONDS,
  DEFAULT_PROGRESS_EVERY_SECONDS,
  DEFAULT_RECONCILE_EVERY_HOURS,
  DEFAULT_RUN_DEADLINE_MINUTES,
  DEFAULT_VERIFY_EVERY_HOURS,
  DEFAULT_VERIFY_SAMPLE,
  pushConcurrencyFor,
} from "../config/defaults.ts";
import { verifyConnection, type VerifyReport } from "../engine/verify.ts";
import { repairContacts, type RepairResult } from "../engine/verify_repair.ts";
import type { EngineContext } from "../engine/ports.ts";
import type { MemberReader } from "../engine/dry_run.ts";
import type { LedgerTable } from "../state/ledger_table.ts";
import { reconcileConnection, type ReconcileResult } from "../engine/reconcile.ts";
import { runConnection, type RunResult } from "../engine/run_connection.ts";
import { actOnInbox } from "../engine/inbox_events.ts";
import type { AlertManager } from "../freshness/alerts.ts";
import type { Metrics } from "../metrics/metrics.ts";
import { MailchimpLimiters } from "../http/concurrency_limiter.ts";
import { RateLimiter } from "../http/rate_limiter.ts";
import { MailchimpClient } from "../mailchimp/client.ts";
import { OmetriaClient } from "../ometria/client.ts";
import { FieldMapper, mappingReporter } from "../mapping/field_mapper.ts";
import type { ConnectionState, VerifySummary } from "../state/schema.ts";
import type { StateStore } from "../state/store.ts";
import { nextState } from "../state/transitions.ts";
import { tick, type TickResult } from "../scheduler/tick.ts";
import type { InboxItem } from "../state/store.ts";
import type { ConnectionWriter } from "../writer/connection_writer.ts";
import { type Exclusive, WriterPool } from "../writer/writer_pool.ts";
import { errorText } from "../log/error_text.ts";
import { ProgressLog, type ProgressUpdate } from "./progress.ts";
import { forcingResubscribes } from "../mapping/force_optin.ts";
import { isOverdue } from "../engine/erasure.ts";
import {
  checkEverywhere,
  type ConsentJobsDeps,
  consentTick,
  eraseConfirmedDeletes,
  eraseEverywhere,
  type EraseOutcome,
} from "./consent_jobs.ts";

/** Options of {@linkcode SyncService}. */
export interface SyncServiceOptions {
  connections: readonly ConnectionConfig[];
  store: StateStore;
  clock: Clock;
  logger: Logger;
  /** @default {globalThis.fetch} */
  fetch?: typeof globalThis.fetch;
  /** MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS. @default {2} */
  maxConcurrentRuns?: number;
  /** Members per Mailchimp page (≤ 1000). @default {1000} */
  pageSize?: number;
  /** BULK_MEMBER_COUNT. @default {5000} */
  bulkMemberCount?: number;
  /** MINUTES_NEEDED_TO_PERFORM_A_PARTIAL_SYNC_OF_A_SINGLE_BULK. @default {1} */
  minutesPerBulk?: number;
  /** Seconds between ticks. @default {60} */
  tickSeconds?: number;
  /** Mailchimp requests in flight per key (≤ 10). @default {10} */
  mailchimpMaxConnections?: number;
  /** Give up a failing Mailchimp request after this long. @default {60} */
  mailchimpRetryMaxSeconds?: number;
  /** Per-attempt Mailchimp timeout. @default {30} */
  mailchimpTimeoutSeconds?: number;
  /** Ometria push requests per second per account. @default {8} */
  ometriaMaxRequestsPerSecond?: number;
  /** Requests per second per account to the rest of Ometria's Data API (`_errors`). @default {4} */
  ometriaDataApiRequestsPerSecond?: number;
  /** Records per Ometria request (OMETRIA_BATCH_SIZE, ≤ 100; a 413 lowers it). @default {100} */
  ometriaBatchSize?: number;
  /**
   * Ometria requests in flight per stream of batches of a run (see run_connection.ts).
   * @default {pushConcurrencyFor(ometriaMaxRequestsPerSecond)} (8 at Ometria's default rate)
   */
  pushConcurrency?: number;
  /** Slices of one window read at once (see run_connection.ts). @default {DEFAULT_READ_SLICES} (6) */
  readSlices?: number;
  /**
   * Held members tried again per run (QUARANTINE_RETRIES_PER_RUN), those tried longest ago
   * first; one Mailchimp request each. @default {DEFAULT_QUARANTINE_RETRIES}
   */
  quarantineRetries?: number;
  /** Members per slice when a big window is cut for reading at once. @default {DEFAULT_SLICE_MEMBERS} (20,000) */
  sliceMembers?: number;
  /** Seconds taken off Mailchimp's clock for a window's upper bound. @default {60} */
  marginSeconds?: number;
  /**
   * RUN_DEADLINE_MINUTES: from a run's start, how long its requests may wait out the APIs'
   * rate limits (see `RetryOptions.deadline`). @default {60}
   */
  runDeadlineMinutes?: number;
  alerts?: AlertManager;
  metrics?: Metrics;
  /**
   * Called after every acknowledged batch of a run; `total` is Mailchimp's count of the
   * window (a hint). `--once` on a terminal draws it with `ProgressLine` (progress.ts).
   */
  onProgress?: (connectionId: string, progress: ProgressUpdate) => void;
  /** Called when a connection's run has ended, before its summary is logged. */
  onRunFinished?: (connectionId: string) => void;
  /**
   * Seconds between INFO progress lines of a running connection (read, pushed, rate, time
   * left); 0 turns them off, as a live terminal line does. @default {5}
   */
  progressEverySeconds?: number;
  /**
   * Hours between reconciliations of a connection (RECONCILE_EVERY_HOURS), done by ticks;
   * 0 turns them off. @default {24}
   */
  reconcileEveryHours?: number;
  /**
   * Hours between scheduled verifies of a connection (VERIFY_EVERY_HOURS), each of
   * `verifySample` members at random, done by ticks; 0 turns them off. @default {24}
   */
  verifyEveryHours?: number;
  /** Members a scheduled verify checks. @default {1000} */
  verifySample?: number;
  /**
   * Called when a verify finds Ometria differing from Mailchimp and the last verify did not
   * (`connection.diverged`, once per incident).
   */
  onVerifyDiverged?: (
    connection: ConnectionConfig,
    summary: VerifySummary,
    state: ConnectionState,
  ) => void;
  /** Called when a reconciliation finds the copy had diverged (orphans, missed members). */
  onDiverged?: (
    connection: ConnectionConfig,
    result: ReconcileResult,
    state: ConnectionState,
  ) => void;
  /**
   * Called when a run found records Ometria refused after answering OK that no member can
   * be tied to (`connection.rejected_async`).
   */
  onRejectedAsync?: (
    connection: ConnectionConfig,
    result: RunResult,
    state: ConnectionState,
  ) => void;
  /** Every configured secret, removed from error texts before they are stored. */
  secrets?: readonly string[];
  /**
   * Send records Ometria acknowledged before too (`--repush`): a repair after someone
   * changed Ometria by hand. @default {false}
   */
  repush?: boolean;
  /**
   * Aborted when the process stops: webhook inboxes stop being drained (what is left stays
   * in them for the next start).
   */
  signal?: AbortSignal;
}

/** The options of {@linkcode serviceOptionsFromConfig}: what a {@linkcode Config} decides. */
export type ConfiguredServiceOptions = Pick<
  SyncServiceOptions,
  | "connections"
  | "maxConcurrentRuns"
  | "pageSize"
  | "bulkMemberCount"
  | "minutesPerBulk"
  | "tickSeconds"
  | "mailchimpMaxConnections"
  | "mailchimpRetryMaxSeconds"
  | "mailchimpTimeoutSeconds"
  | "marginSeconds"
  | "runDeadlineMinutes"
  | "ometriaMaxRequestsPerSecond"
  | "ometriaBatchSize"
  | "reconcileEveryHours"
  | "verifyEveryHours"
  | "quarantineRetries"
  | "secrets"
>;

/**
 * The service options a config sets: every setting of {@linkcode Config} that tunes the
 * service, mapped here once (two carry other names: POLLING_TIME_IN_SECONDS is `tickSeconds`,
 * the clock margin `marginSeconds`). `secrets` are the config's; the process adds the store,
 * clock, logger and fetch.
 */
export function serviceOptionsFromConfig(config: Config): ConfiguredServiceOptions {
  return {
    connections: config.connections,
    maxConcurrentRuns: config.maxConcurrentRuns,
    pageSize: config.pageSize,
    bulkMemberCount: config.bulkMemberCount,
    minutesPerBulk: config.minutesPerBulk,
    tickSeconds: config.pollingSeconds,
    mailchimpMaxConnections: config.mailchimpMaxConnections,
    mailchimpRetryMaxSeconds: config.mailchimpRetryMaxSeconds,
    mailchimpTimeoutSeconds: config.mailchimpTimeoutSeconds,
    marginSeconds: config.mailchimpClockMarginSeconds,
    runDeadlineMinutes: config.runDeadlineMinutes,
    quarantineRetries: config.quarantineRetries,
    ometriaMaxRequestsPerSecond: config.ometriaMaxRequestsPerSecond,
    ometriaBatchSize: config.ometriaBatchSize,
    reconcileEveryHours: config.reconcileEveryHours,
    verifyEveryHours: config.verifyEveryHours,
    secrets: configSecrets(config),
  };
}

interface _Wired {
  config: ConnectionConfig;
  mailchimp: MailchimpClient;
  ometria: OmetriaClient;
  /** The connection's field mapping (push endpoint only). */
  fields: FieldMapper | undefined;
  /** The deadline of the connection's run in progress, which its clients read. */
  deadline: { at: number | undefined };
}

/** What {@linkcode SyncService.verify} did for one connection. */
export interface VerifyOutcome {
  id: string;
  /**
   * `ok`: compared (differences or not); `failed`: an API failed; `held`: another process
   * holds the connection, so nothing was repaired; `unsupported`: the legacy `/record`
   * endpoint has no Contact API to read back.
   */
  outcome: "ok" | "failed" | "held" | "unsupported";
  report?: VerifyReport;
  repair?: RepairResult;
  /** What was recorded in the state (`status` shows it). */
  summary?: VerifySummary;
  error?: string;
}

/** When a connection was last verified (or first seen), epoch ms; 0 when never. */
function _verifiedAt(state: ConnectionState | undefined): number {
  const at = state?.last_verify?.at ?? state?.first_seen_at;
  const ms = at ? Date.parse(at) : 0;
  return Number.isNaN(ms) ? 0 : ms;
}

/**
 * Runs ticks over a fixed set of connections. One Mailchimp limiter per key and one
 * Ometria rate limiter per account are shared by every connection using them.
 */
export class SyncService {
  readonly #options: SyncServiceOptions;
  readonly #wired: _Wired[];
  readonly #byId: Map<string, _Wired>;
  /** When this process first saw each connection (for the lag of never-synced ones). */
  readonly #firstSeen = new Map<string, number>();
  /**
   * Whether Mailchimp's default listing includes archived members: the API's behaviour, so
   * what one list showed holds for all (saves every other list its archived pass).
   */
  #archivedInListing = false;
  /** When each connection's changes were last counted (spreads counting over ticks). */
  readonly #checkedAt = new Map<string, number>();
  /** The connections' writers: every write of a connection goes through its one writer. */
  readonly #pool: WriterPool;
  readonly #progress: ProgressLog | undefined;
  /** When a scheduled verify of a connection last failed (tried again an hour later). */
  readonly #verifyFailedAt = new Map<string, number>();

  constructor(options: SyncServiceOptions) {
    this.#options = options;
    const every = options.progressEverySeconds ?? DEFAULT_PROGRESS_EVERY_SECONDS;
    this.#progress = every > 0
      ? new ProgressLog({ logger: options.logger, clock: options.clock, intervalMs: every * 1000 })
      : undefined;
    const limiters = new MailchimpLimiters();
    // Per account, push and the rest of the Data API are limited apart (8/s and 4/s).
    const rateLimiters = new Map<
      string,
      { push: RateLimiter; data: RateLimiter; gdpr: RateLimiter }
    >();
    const fetchFn = options.fetch ?? globalThis.fetch;
    const { clock, logger, metrics } = options;
    this.#wired = options.connections.map((config) => {
      // The legacy /record format is fixed: no mapping, no extra member fields read.
      let fields: FieldMapper | undefined;
      const deadline: _Wired["deadline"] = { at: undefined };
      const mailchimp: MailchimpClient = new MailchimpClient({
        deadline: () => deadline.at,
        apiKey: config.mailchimp.apiKey,
        baseUrl: config.mailchimp.baseUrl,
        ...(config.mailchimp.keyName ? { keyName: config.mailchimp.keyName } : {}),
        fetch: fetchFn,
        clock,
        logger,
        limiter: limiters.for(
          config.mailchimp.apiKey,
          options.mailchimpMaxConnections ?? DEFAULT_MAILCHIMP_MAX_CONNECTIONS,
        ),
        retry: {
          maxElapsedMs: (options.mailchimpRetryMaxSeconds ?? DEFAULT_MAILCHIMP_RETRY_MAX_SECONDS) *
            1000,
        },
        timeoutMs: (options.mailchimpTimeoutSeconds ?? DEFAULT_MAILCHIMP_TIMEOUT_SECONDS) * 1000,
        ...(metrics ? { onRequest: (e) => metrics.countRequest("mailchimp", e.status ?? 0) } : {}),
        ...(config.ometria.endpoint === "push"
          ? { memberFields: FieldMapper.memberFieldsFor(config.fields) }
          : {}),
      });
      if (config.ometria.endpoint === "push") {
        fields = new FieldMapper(
          config.listId,
          config.fields,
          mailchimp,
          mappingReporter(
            config.id,
            logger,
            metrics && ((field, reason) => metrics.countDroppedValue(config.id, field, reason)),
          ),
        );
      }
      const accountKey = `${config.ometria.baseUrl}\u0000${config.ometria.apiKey}`;
      let ometriaRates = rateLimiters.get(accountKey);
      if (!ometriaRates) {
        ometriaRates = {
          // Pushes are what a run waits for: a window's starts go in a 10 ms train, and a
          // 429 turns on even spacing (rate_limiter.ts, `pace`).
          push: new RateLimiter({
            perSecond: options.ometriaMaxRequestsPerSecond ??
              DEFAULT_OMETRIA_MAX_REQUESTS_PER_SECOND,
            clock,
            pace: "burst-until-429",
          }),
          // Burst as pushes do: a tick's connections each read `_errors` before their first
          // push and after their last, and even spacing kept the second of two connections of
          // one account waiting a quarter of a second at both ends of its run.
          data: new RateLimiter({
            perSecond: options.ometriaDataApiRequestsPerSecond ??
              DEFAULT_OMETRIA_DATA_API_REQUESTS_PER_SECOND,
            clock,
            pace: "burst-until-429",
          }),
          // "GDPR anonymisation API | 6 requests per minute", apart from the rest.
          gdpr: new RateLimiter({ perSecond: 6, windowMs: 60_000, clock }),
        };
        rateLimiters.set(accountKey, ometriaRates);
      }
      const ometria = new OmetriaClient({
        deadline: () => deadline.at,
        apiKey: config.ometria.apiKey,
        baseUrl: config.ometria.baseUrl,
        endpoint: config.ometria.endpoint,
        ...(config.ometria.keyName ? { keyName: config.ometria.keyName } : {}),
        fetch: fetchFn,
        clock,
        logger,
        rateLimiter: ometriaRates.push,
        dataApiRateLimiter: ometriaRates.data,
        gdprRateLimiter: ometriaRates.gdpr,
        maxBatchSize: options.ometriaBatchSize ?? DEFAULT_OMETRIA_BATCH_SIZE,
        ...(metrics ? { onRequest: (e) => metrics.countRequest("ometria", e.status ?? 0) } : {}),
      });
      return { config, mailchimp, ometria, fields, deadline };
    });
    this.#byId = new Map(this.#wired.map((w) => [w.config.id, w]));
    for (const w of this.#wired) this.#firstSeen.set(w.config.id, clock.now());
    this.#pool = new WriterPool({
      store: options.store,
      clock,
      logger,
      signal: options.signal,
      repush: options.repush ?? false,
      sinkFor: (id) => {
        const w = this.#byId.get(id);
        return w && { listId: w.config.listId, sink: w.ometria };
      },
      drain: (writer, items, signal) => this.#drain(writer, items, signal),
    });
  }

  /** The connections this service runs. */
  get connections(): readonly ConnectionConfig[] {
    return this.#wired.map((w) => w.config);
  }

  /**
   * Runs one connection now, whatever the rules say (demo, tests). Throws a RangeError for an
   * unknown connection, and an Error when another process holds it.
   */
  async runOnce(id: string, signal?: AbortSignal, hardSignal?: AbortSignal): Promise<RunResult> {
    const wired = this.#byId.get(id);
    if (!wired) throw new RangeError(`Cannot run '${id}': no such connection`);
    const result = await this.#run(wired, signal, hardSignal);
    if (result === undefined) throw new Error(`Cannot run '${id}': another process holds it`);
    return result;
  }

  /**
   * Runs `job` with connection `id`'s writer, after the exclusive jobs asked for before it
   * (see writer/writer_pool.ts); `{held: true}` when another process holds the connection.
   */
  withWriter<T>(id: string, job: (writer: ConnectionWriter) => Promise<T>): Promise<Exclusive<T>> {
    if (!this.#byId.has(id)) throw new RangeError(`Cannot write '${id}': no such connection`);
    return this.#pool.exclusive(id, job);
  }

  /**
   * `sync --repush`: for each connection `ids` names (all when empty), under its lease, the
   * reset that makes its next run read the whole list and send every member (see
   * commands/reset.ts). Resolves with the ids another process holds (not reset).
   */
  async requestRepush(ids: readonly string[] = []): Promise<string[]> {
    const held: string[] = [];
    for (const w of this.#chosen(ids, "repush")) {
      const done = await this.#pool.exclusive(
        w.config.id,
        (writer) => writer.record({ type: "reset", repush: true }),
      );
      if (done.held) held.push(w.config.id);
    }
    await this.#options.store.flush();
    return held;
  }

  /**
   * What reading connection `id`'s members without its writer takes (`sync --dry-run`,
   * `explain`): its Mailchimp client, record format and field mapping, resolved as a run's
   * (`ledger` is the connection's ledger as saved, for `force_optin_on_resubscribe`). Throws
   * a RangeError for an unknown connection.
   */
  reader(id: string, ledger: () => Promise<LedgerTable>, signal?: AbortSignal): MemberReader {
    const w = this.#byId.get(id);
    if (!w) throw new RangeError(`Cannot read '${id}': no such connection`);
    const mapping = w.fields?.forRun(signal);
    return {
      connection: { id: w.config.id, listId: w.config.listId },
      mailchimp: w.mailchimp,
      endpoint: w.config.ometria.endpoint,
      contacts: w.config.ometria.endpoint === "push" ? w.ometria : undefined,
      mapping: mapping && w.config.forceOptinOnResubscribe
        ? forcingResubscribes(mapping, w.config.listId, ledger)
        : mapping,
    };
  }

  /** Resolves when no connection's writer is busy (tests: webhook events acted on). */
  idle(): Promise<void> {
    return this.#pool.idle();
  }

  /** Stops draining webhook inboxes, waits for writers at work, and gives every lease back. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  /**
   * One tick: due connections run (closest to their threshold first), then every
   * connection's freshness is evaluated for alerts and metrics.
   */
  async tick(
    options: { force?: boolean; signal?: AbortSignal; hardSignal?: AbortSignal } = {},
  ): Promise<TickResult> {
    const o = this.#options;
    // Before the runs too: a program that starts and finds a connection behind alerts at
    // once, not after a long first tick. One listing serves this, the archived-listing
    // knowledge and the scheduler.
    const states = await o.store.list();
    // Inbox entries left by a crash, or by a process that stopped before draining them.
    for (const id of await o.store.pendingInboxes()) {
      if (this.#byId.has(id)) this.#pool.wake(id);
    }
    await this.evaluateFreshness(states);
    this.#archivedInListing ||= states.some((s) => s.archived_in_listing);
    const result: TickResult = await tick({
      states,
      checkedAt: this.#checkedAt,
      connections: this.#wired.map((w) => ({
        id: w.config.id,
        listId: w.config.listId,
        thresholdSeconds: w.config.thresholdSeconds,
        wired: w,
      })),
      store: o.store,
      clock: o.clock,
      logger: o.logger,
      concurrency: o.maxConcurrentRuns ?? DEFAULT_MAX_CONCURRENT_RUNS,
      bulkMemberCount: o.bulkMemberCount ?? DEFAULT_BULK_MEMBER_COUNT,
      minutesPerBulk: o.minutesPerBulk ?? DEFAULT_MINUTES_PER_BULK,
      tickSeconds: o.tickSeconds ?? DEFAULT_POLLING_SECONDS,
      force: options.force ?? false,
      ...(options.signal ? { signal: options.signal } : {}),
      countChanged: async (c, sinceMs, signal) => {
        const page = await c.wired.mailchimp.getMembers(c.listId, {
          count: 1,
          sinceMs,
          fieldsOnlyTotal: true,
        }, signal);
        return page.totalItems;
      },
      run: (c) => this.#run(c.wired, options.signal, options.hardSignal),
    });
    if (!options.signal?.aborted) {
      const due = await this.#reconcileDue();
      if (due.length > 0) {
        const outcomes = await this.reconcile(due.map((w) => w.config.id), options.signal);
        if (outcomes.some((r) => r.outcome === "failed")) result.failed = true;
      }
    }
    if (!options.signal?.aborted) {
      // Verifies read at the Data API's 4 requests/s: a tick spends at most half its interval
      // on them (at least one), longest unverified first; the rest wait for the next ticks.
      const until = o.clock.now() + (o.tickSeconds ?? DEFAULT_POLLING_SECONDS) * 500;
      for (const w of await this.#verifyDue()) {
        if (options.signal?.aborted) break;
        await this.#verifyOne(w, {
          sample: o.verifySample ?? DEFAULT_VERIFY_SAMPLE,
          ...(options.signal ? { signal: options.signal } : {}),
        });
        if (o.clock.now() >= until) break;
      }
    }
    if (!options.signal?.aborted) {
      // Ometria's unsubscribes (optout_back) and the open erasures' check, after the runs.
      const consent = await consentTick(this.#consentDeps(options.signal), this.#wired, {
        states: new Map((await o.store.list()).map((s) => [s.id, s])),
        nowMs: o.clock.now(),
        concurrency: o.maxConcurrentRuns ?? DEFAULT_MAX_CONCURRENT_RUNS,
        signal: options.signal,
      });
      if (consent.failed) result.failed = true;
    }
    await this.evaluateFreshness();
    return result;
  }

  /**
   * Reconciles the connections `ids` now (all when empty), each under its lease, at most
   * `maxConcurrentRuns` at once. A connection another process holds is skipped.
   */
  async reconcile(
    ids: readonly string[] = [],
    signal?: AbortSignal,
  ): Promise<(ReconcileResult & { id: string })[]> {
    const o = this.#options;
    const chosen = this.#chosen(ids, "reconcile");
    const results: (ReconcileResult & { id: string })[] = [];
    let next = 0;
    const worker = async () => {
      while (next < chosen.length && !signal?.aborted) {
        const w = chosen[next++]!;
        const done = await this.#pool.exclusive(w.config.id, (writer) =>
          reconcileConnection({
            ...this.#engine(w, writer, signal),
            pushConcurrency: o.pushConcurrency ??
              pushConcurrencyFor(
                o.ometriaMaxRequestsPerSecond ?? DEFAULT_OMETRIA_MAX_REQUESTS_PER_SECOND,
              ),
            ...(signal ? { signal } : {}),
          }));
        if (done.held) continue;
        const result = done.value;
        results.push({ ...result, id: w.config.id });
        if (result.summary) o.metrics?.recordReconcile(w.config.id, result.summary);
        if (result.diverged && o.onDiverged) {
          const state = await o.store.get(w.config.id);
          if (state) o.onDiverged(w.config, result, state);
        }
      }
    };
    const n = Math.min(o.maxConcurrentRuns ?? DEFAULT_MAX_CONCURRENT_RUNS, chosen.length);
    await Promise.all(Array.from({ length: n }, worker));
    await o.store.flush();
    return results;
  }

  /**
   * Verifies the connections `ids` (all when empty) one after another: reads back what
   * Ometria holds and compares it with Mailchimp (engine/verify.ts), outside the lease (reads
   * only); with `repair`, pushes the differences through the connection's writer
   * (engine/verify_repair.ts). Records the result in the state, and calls `onVerifyDiverged`
   * when differences start.
   */
  async verify(
    ids: readonly string[] = [],
    options: {
      sample?: number | undefined;
      repair?: boolean;
      random?: () => number;
      signal?: AbortSignal;
    } = {},
  ): Promise<VerifyOutcome[]> {
    const outcomes: VerifyOutcome[] = [];
    for (const w of this.#chosen(ids, "verify")) {
      if (options.signal?.aborted) break;
      outcomes.push(await this.#verifyOne(w, options));
    }
    await this.#options.store.flush();
    return outcomes;
  }

  async #verifyOne(
    w: _Wired,
    options: {
      sample?: number | undefined;
      repair?: boolean;
      random?: () => number;
      signal?: AbortSignal;
    },
  ): Promise<VerifyOutcome> {
    const o = this.#options;
    const id = w.config.id;
    if (w.config.ometria.endpoint !== "push") return { id, outcome: "unsupported" };
    const { signal } = options;
    let report: VerifyReport;
    try {
      const freshAsOf = (await o.store.get(id))?.fresh_as_of;
      report = await verifyConnection({
        pendingFromMs: freshAsOf ? Date.parse(freshAsOf) : undefined,
        connection: { id, listId: w.config.listId },
        mailchimp: w.mailchimp,
        ometria: w.ometria,
        mapping: w.fields?.forRun(signal),
        sample: options.sample,
        ...(options.random ? { random: options.random } : {}),
        signal,
      });
    } catch (error) {
      const text = errorText(error, o.secrets ?? []);
      if (!signal?.aborted) {
        o.logger.error("Verify of {connection} failed: {error}", { connection: id, error: text });
        this.#verifyFailedAt.set(id, o.clock.now());
      }
      return { id, outcome: "failed", error: text };
    }
    this.#verifyFailedAt.delete(id);
    const out: VerifyOutcome = { id, outcome: "ok", report };
    const wrong = [...report.missing, ...report.stale.map((s) => s.id), ...report.extra];
    if (options.repair && wrong.length > 0) {
      try {
        const done = await this.#pool.exclusive(
          id,
          (writer) => repairContacts({ ...this.#engine(w, writer, signal), signal }, wrong),
        );
        if (done.held) out.outcome = "held";
        else out.repair = done.value;
      } catch (error) {
        out.outcome = "failed";
        out.error = errorText(error, o.secrets ?? []);
      }
    }
    const summary = await this.#recordVerify(w, report, out.repair);
    if (summary) out.summary = summary;
    return out;
  }

  /** Records a verify's findings in the state; raises the alert when differences start. */
  async #recordVerify(
    w: _Wired,
    report: VerifyReport,
    repair: RepairResult | undefined,
  ): Promise<VerifySummary | undefined> {
    const o = this.#options;
    const frequency = new Map<string, number>();
    for (const s of report.stale) {
      for (const f of s.fields) frequency.set(f, (frequency.get(f) ?? 0) + 1);
    }
    const summary = {
      at: new Date(o.clock.now()).toISOString(),
      mode: report.mode,
      checked: report.checked,
      missing: report.missing.length,
      stale: report.stale.length,
      extra: report.extra.length,
      fields: [...frequency].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([f]) => f),
      repaired: repair ? repair.pushed + repair.optedOut : 0,
    };
    const before = await o.store.get(w.config.id);
    // Observation memory, as the alert memory: a run may have moved the rest on meanwhile.
    const state = await o.store.update(
      w.config.id,
      (s) => s && nextState(s, { type: "verified", summary }),
    );
    const differs = summary.missing + summary.stale + summary.extra > summary.repaired;
    const level = differs ? "warn" : "info";
    o.logger[level](
      "Verified {connection} ({mode}): {checked} member(s), {missing} missing, {stale} stale " +
        "({fields}), {extra} extra in Ometria, {repaired} repaired",
      { connection: w.config.id, ...summary, fields: summary.fields.join(", ") || "none" },
    );
    if (!state?.last_verify) return undefined;
    if (differs && before?.last_verify?.diverged_since == null) {
      o.onVerifyDiverged?.(w.config, state.last_verify, state);
    }
    return state.last_verify;
  }

  /**
   * Erases `emails` (a data-protection request) from the connections `ids` (all when empty):
   * see engine/erasure.ts. A connection another process holds is reported `held`.
   */
  erase(
    emails: readonly string[],
    options: { ids?: readonly string[]; mailchimp: boolean; signal?: AbortSignal },
  ): Promise<EraseOutcome[]> {
    return eraseEverywhere(
      this.#consentDeps(options.signal),
      this.#chosen(options.ids, "erase"),
      emails,
      {
        mailchimp: options.mailchimp,
        signal: options.signal,
      },
    );
  }

  /** Asks Ometria about the open erasures of the connections `ids` (all when empty) now. */
  checkErasures(ids: readonly string[] = [], signal?: AbortSignal): Promise<void> {
    return checkEverywhere(this.#consentDeps(signal), this.#chosen(ids, "check"), signal);
  }

  /** The connections `ids` name (all when empty); a RangeError for an unknown one. */
  #chosen(ids: readonly string[] | undefined, what: string): _Wired[] {
    if (ids === undefined || ids.length === 0) return this.#wired;
    return ids.map((id) => {
      const w = this.#byId.get(id);
      if (!w) throw new RangeError(`Cannot ${what} '${id}': no such connection`);
      return w;
    });
  }

  /** What the consent jobs (consent_jobs.ts) need of this service. */
  #consentDeps(signal: AbortSignal | undefined): ConsentJobsDeps {
    return {
      exclusive: (id, job) => this.#pool.exclusive(id, job),
      engine: (c, writer) => this.#engine(this.#byId.get(c.config.id)!, writer, signal),
      logger: this.#options.logger,
      secrets: this.#options.secrets ?? [],
    };
  }

  /**
   * Checks every connection's field mapping against its list (one request per connection
   * whose mapping names merge tags): the problems, each naming its connection, for a start
   * that exits 2. A list that cannot be asked is not a mapping problem: it is logged, and
   * its runs report it.
   */
  async checkFieldMappings(signal?: AbortSignal): Promise<string[]> {
    const problems: string[] = [];
    for (const w of this.#wired) {
      if (!w.fields || signal?.aborted) continue;
      try {
        for (const p of await w.fields.check(signal)) {
          problems.push(`Connection ${w.config.id} (list ${w.config.listId}): ${p}.`);
        }
      } catch (error) {
        this.#options.logger.warn(
          "Cannot check the field mapping of {connection} now: {error}",
          { connection: w.config.id, error: errorText(error, this.#options.secrets ?? []) },
        );
      }
    }
    return problems;
  }

  /** Connections whose last reconciliation (or first sight) is RECONCILE_EVERY_HOURS ago. */
  async #reconcileDue(): Promise<_Wired[]> {
    const hours = this.#options.reconcileEveryHours ?? DEFAULT_RECONCILE_EVERY_HOURS;
    return (await this.#due(hours, (s) => s.last_reconcile?.at)).map(({ w }) => w);
  }

  /**
   * Connections synced once and not running whose job (its last time from `last`, else the
   * connection's first sight) is `hours` ago, with their states; none when `hours` is 0.
   */
  async #due(
    hours: number,
    last: (s: ConnectionState) => string | undefined,
    eligible: (w: _Wired, now: number) => boolean = () => true,
  ): Promise<{ w: _Wired; s: ConnectionState }[]> {
    if (!(hours > 0)) return [];
    const states = new Map((await this.#options.store.list()).map((s) => [s.id, s]));
    const now = this.#options.clock.now();
    return this.#wired.flatMap((w) => {
      const s = states.get(w.config.id);
      if (!s || s.watermark === null || s.run !== null || !eligible(w, now)) return [];
      const since = last(s) ?? s.first_seen_at;
      return since === null || now - Date.parse(since) >= hours * 3_600_000 ? [{ w, s }] : [];
    });
  }

  /**
   * Connections (push endpoint, synced once, not running) whose last verify (or first sight)
   * is VERIFY_EVERY_HOURS ago, longest ago first; one whose verify failed waits an hour
   * before the next try.
   */
  async #verifyDue(): Promise<_Wired[]> {
    const hours = this.#options.verifyEveryHours ?? DEFAULT_VERIFY_EVERY_HOURS;
    const due = await this.#due(hours, (s) => s.last_verify?.at, (w, now) => {
      if (w.config.ometria.endpoint !== "push") return false;
      const failed = this.#verifyFailedAt.get(w.config.id);
      return failed === undefined || now - failed >= 3_600_000;
    });
    return due.sort((a, b) => _verifiedAt(a.s) - _verifiedAt(b.s)).map(({ w }) => w);
  }

  /**
   * Evaluates every connection's lag for alerts (once per incident). `snapshot` is
   * a `store.list()` the caller already has (one listing per tick is enough).
   */
  async evaluateFreshness(snapshot?: readonly ConnectionState[]): Promise<void> {
    const { store, clock, alerts } = this.#options;
    // Metrics read lag and quarantine from the store at every scrape (state_metrics.ts).
    if (!alerts) return;
    const states = new Map((snapshot ?? await store.list()).map((s) => [s.id, s]));
    const now = clock.now();
    for (const w of this.#wired) {
      const state = states.get(w.config.id);
      const firstSeenMs = this.#firstSeen.get(w.config.id) ?? now;
      if (!state) continue;
      const alert = alerts.evaluate(
        { id: w.config.id, list_id: w.config.listId, threshold_seconds: w.config.thresholdSeconds },
        state,
        { firstSeenMs },
      );
      if (
        alert.behind_since !== state.alert.behind_since ||
        alert.last_alert_at !== state.alert.last_alert_at
      ) {
        // Only the alert memory changes: a run may have moved the rest on since the listing.
        await store.update(w.config.id, (s) => s && nextState(s, { type: "alert", alert }));
      }
      const overdue = state.erasures.open.filter((r) => r.alerted_at === null && isOverdue(r, now));
      if (overdue.length > 0) {
        alerts.erasureOverdue(
          {
            id: w.config.id,
            list_id: w.config.listId,
            threshold_seconds: w.config.thresholdSeconds,
          },
          state,
          overdue,
        );
        const identities = overdue.map((r) => r.identity);
        await store.update(
          w.config.id,
          (s) => s && nextState(s, { type: "erasures-alerted", at: now, identities }),
        );
      }
    }
  }

  /**
   * What every engine entry point gets for connection `w` and its writer; its field
   * mapping's definitions are fetched with `signal` (a run passes its hard stop).
   */
  #engine(w: _Wired, writer: ConnectionWriter, signal: AbortSignal | undefined): EngineContext {
    const mapping = w.fields?.forRun(signal);
    return {
      writer,
      mailchimp: w.mailchimp,
      endpoint: w.config.ometria.endpoint,
      secrets: this.#options.secrets ?? [],
      ...(mapping
        ? {
          mapping: w.config.forceOptinOnResubscribe
            ? forcingResubscribes(mapping, w.config.listId, () => writer.table())
            : mapping,
        }
        : {}),
    };
  }

  /** Acts on inbox entries (webhook events, rechecks) of a connection with its writer. */
  async #drain(writer: ConnectionWriter, items: InboxItem[], signal: AbortSignal): Promise<number> {
    const w = this.#byId.get(writer.connection.id);
    if (!w) return 0;
    const onConfirmedDeletes = w.config.eraseOnPermanentDelete
      ? (deletes: { id: string; sealed: string }[]) =>
        eraseConfirmedDeletes(this.#consentDeps(signal), w, writer, deletes, signal)
      : undefined;
    const outcome = await actOnInbox(
      { ...this.#engine(w, writer, signal), signal, onConfirmedDeletes },
      items,
    );
    for (const item of items) {
      if (item.entry.type === "recheck") continue;
      this.#options.metrics?.recordWebhook(w.config.id, {
        outcome: outcome.quarantined > 0 ? "quarantined" : "pushed",
        receivedAtMs: item.entry.receivedAtMs,
        firedAtMs: item.entry.firedAtMs,
      });
    }
    return items.length;
  }

  async #run(
    w: _Wired,
    signal?: AbortSignal,
    hardSignal?: AbortSignal,
  ): Promise<RunResult | undefined> {
    const o = this.#options;
    const deadlineMinutes = o.runDeadlineMinutes ?? DEFAULT_RUN_DEADLINE_MINUTES;
    const done = await this.#pool.exclusive(w.config.id, async (writer) => {
      w.deadline.at = o.clock.now() + deadlineMinutes * 60_000;
      // A pending `reset --repush` is consumed by this run: the flag is in the state, read
      // here under the lease, and cleared by the transition of the run that completes.
      const state = await o.store.get(w.config.id);
      writer.setRepushing(state?.repush_pending === true);
      return await runConnection({
        ...this.#engine(w, writer, hardSignal),
        thresholdSeconds: w.config.thresholdSeconds,
        archivedInListing: this.#archivedInListing,
        pageSize: o.pageSize ?? DEFAULT_PAGE_SIZE,
        pushConcurrency: o.pushConcurrency ??
          pushConcurrencyFor(
            o.ometriaMaxRequestsPerSecond ?? DEFAULT_OMETRIA_MAX_REQUESTS_PER_SECOND,
          ),
        marginSeconds: o.marginSeconds ?? DEFAULT_MAILCHIMP_CLOCK_MARGIN_SECONDS,
        ...(o.readSlices !== undefined ? { readSlices: o.readSlices } : {}),
        ...(o.quarantineRetries !== undefined ? { quarantineRetries: o.quarantineRetries } : {}),
        ...(o.sliceMembers !== undefined ? { sliceMembers: o.sliceMembers } : {}),
        ...(signal ? { signal } : {}),
        ...(hardSignal ? { hardSignal } : {}),
        onProgress: (p) => {
          this.#progress?.update(w.config.id, p);
          o.onProgress?.(w.config.id, p);
        },
      }).finally(() => {
        w.deadline.at = undefined;
        writer.setRepushing(false);
      });
    });
    this.#progress?.finish(w.config.id);
    o.onRunFinished?.(w.config.id);
    if (done.held) return undefined;
    const result = done.value;
    if (result.sawArchivedInListing) this.#archivedInListing = true;
    this.#logSummary(w.config, result);
    if (result.rejectedAsync && o.onRejectedAsync) {
      const state = await o.store.get(w.config.id);
      if (state) o.onRejectedAsync(w.config, result, state);
    }
    o.metrics?.recordRun(w.config.id, {
      pushed: result.pushed,
      unchanged: result.unchanged,
      durationMs: result.durationMs,
      ok: result.outcome === "ok",
    });
    return result;
  }

  #logSummary(config: ConnectionConfig, r: RunResult): void {
    const props = {
      connection: config.id,
      list_id: config.listId,
      outcome: r.outcome,
      read: r.read,
      pushed: r.pushed,
      unchanged: r.unchanged,
      rejected: r.rejected,
      duration_ms: Math.round(r.durationMs),
      mailchimp_requests: r.mailchimpRequests,
      ometria_requests: r.ometriaRequests,
      fresh_as_of: r.upper ?? null,
      error: r.error ?? null,
    };
    const text =
      "List {list_id}: {outcome}, read {read}, pushed {pushed}, unchanged {unchanged}, " +
      "rejected {rejected} in {duration_ms} ms";
    if (r.outcome === "failed") this.#options.logger.error(text + ": {error}", props);
    else this.#options.logger.info(text, props);
  }
}
