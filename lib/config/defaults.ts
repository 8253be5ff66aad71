/**
 * Every default of a setting, in one place: the environment schema, the config, the sync
 * service, the engine and the API clients all fall back to these, so a default changes in one
 * line and the layers cannot drift apart. Settings the original Python tool had keep its
 * defaults. This module imports nothing of ours but an API limit, so any module may use it.
 *
 * @module
 */
import { MAILCHIMP_MAX_PAGE_SIZE } from "../mailchimp/mailchimp_url.ts";

// The original tool's settings (its environment variables, names unchanged).

/** MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS: connections run at once; the original tool's 2. */
export const DEFAULT_MAX_CONCURRENT_RUNS = 2;

/** BULK_MEMBER_COUNT: changed members that make a list due at once; the original tool's 5000. */
export const DEFAULT_BULK_MEMBER_COUNT = 5000;

/** MINUTES_NEEDED_TO_PERFORM_A_PARTIAL_SYNC_OF_A_SINGLE_BULK: the original tool's estimate, 1. */
export const DEFAULT_MINUTES_PER_BULK = 1;

/** NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA: lag that is "behind", 2 h. */
export const DEFAULT_THRESHOLD_MINUTES = 120;

/** POLLING_TIME_IN_SECONDS: seconds between ticks; the original tool polled every minute. */
export const DEFAULT_POLLING_SECONDS = 60;

// Mailchimp.

/** Members per Mailchimp page: the largest page Mailchimp serves, so fewest requests. */
export const DEFAULT_PAGE_SIZE: number = MAILCHIMP_MAX_PAGE_SIZE;

/** MAILCHIMP_MAX_CONNECTIONS: requests in flight per key; Mailchimp allows 10 per key. */
export const DEFAULT_MAILCHIMP_MAX_CONNECTIONS = 10;

/** MAILCHIMP_RETRY_MAX_SECONDS: how long a failing request is retried before the run fails. */
export const DEFAULT_MAILCHIMP_RETRY_MAX_SECONDS = 60;

/**
 * RUN_DEADLINE_MINUTES: how long one run may take while the APIs' rate limits still get
 * waited for; a `Retry-After` or a storm's backoff that would end later fails the run, naming
 * why, instead of holding it (and a `--once` process) open. Above a million-member full sync.
 */
export const DEFAULT_RUN_DEADLINE_MINUTES = 60;

/** MAILCHIMP_TIMEOUT_SECONDS: per attempt; half the retry budget, so a stall still gets a retry. */
export const DEFAULT_MAILCHIMP_TIMEOUT_SECONDS = 30;

/**
 * MAILCHIMP_CLOCK_MARGIN_SECONDS: taken off Mailchimp's clock for a window's upper edge, so
 * a change stamped late still falls in the next window (ARCHITECTURE.md, claim 1).
 */
export const DEFAULT_MAILCHIMP_CLOCK_MARGIN_SECONDS = 60;

// Ometria.

/** OMETRIA_BASE_URL: Ometria's Data API. */
export const DEFAULT_OMETRIA_BASE_URL = "https://api.ometria.com";

/** OMETRIA_MAX_REQUESTS_PER_SECOND: per account; Ometria's documented default rate. */
export const DEFAULT_OMETRIA_MAX_REQUESTS_PER_SECOND = 8;

/**
 * Requests per second to Ometria's Data API other than push (`_errors`, contacts): its own
 * documented default, apart from the push limit.
 */
export const DEFAULT_OMETRIA_DATA_API_REQUESTS_PER_SECOND = 4;

/** OMETRIA_BATCH_SIZE: records per push request; the most Ometria takes in one. */
export const DEFAULT_OMETRIA_BATCH_SIZE = 100;

// The engine and the service.

/** Ometria requests in flight per stream of batches; twice as many may start past the cursor. */
export const DEFAULT_PUSH_CONCURRENCY = 8;

/** The most push requests a run keeps in flight, however high the account's rate. */
export const MAX_PUSH_CONCURRENCY = 32;

/**
 * Push requests a run keeps in flight when the account allows `perSecond` (what
 * OMETRIA_MAX_REQUESTS_PER_SECOND says): enough to hold that rate through round trips of a
 * quarter of a second, {@linkcode DEFAULT_PUSH_CONCURRENCY} at least (Ometria's default 8
 * requests/s gets 8, as before) and {@linkcode MAX_PUSH_CONCURRENCY} at most. A fixed 8 capped
 * an account allowed 1000 a second at 8 requests per round trip: 40,000 records/s at 20 ms,
 * the pace of the whole run in the bench beside the Python tool (issue 19).
 */
export function pushConcurrencyFor(perSecond: number): number {
  const covering = Math.ceil(perSecond / 4);
  return Math.min(MAX_PUSH_CONCURRENCY, Math.max(DEFAULT_PUSH_CONCURRENCY, covering));
}

/**
 * Slices of one window read at once. Measured (README, issue 19): 10 fill the key's 10
 * connections but peak about 85 MiB above 2 readers on 200,000 members; 6 reach 8 connections
 * and most of the speed for about 40 MiB. The pages they hold are bounded apart
 * (run_connection.ts, `PageBudget`).
 */
export const DEFAULT_READ_SLICES = 6;

/** Members a slice should hold: a window is cut only when guessed to hold twice this many. */
export const DEFAULT_SLICE_MEMBERS = 20_000;

/** Passes over one tie group before the run gives up naming the counts. */
export const DEFAULT_MAX_TIE_PASSES = 20;

/** Torn answers in a row before a run fails (keeping its checkpoint). */
export const DEFAULT_MAX_TORN_RETRIES = 10;

/** Quarantined members tried again per run: one Mailchimp request each, so capped. */
export const DEFAULT_QUARANTINE_RETRIES = 200;

/** Missed members a reconciliation fetches one by one; more are re-read by the next run. */
export const DEFAULT_MISSING_FETCH_LIMIT = 1000;

/** RECONCILE_EVERY_HOURS: hours between reconciliations of a connection; once a day. */
export const DEFAULT_RECONCILE_EVERY_HOURS = 24;

/** VERIFY_EVERY_HOURS: hours between scheduled (sampled) verifies of a connection; 0: none. */
export const DEFAULT_VERIFY_EVERY_HOURS = 24;

/** Members a scheduled verify checks at random (about four minutes at the Data API's 4/s). */
export const DEFAULT_VERIFY_SAMPLE = 1000;

/** Seconds between INFO progress lines of a running connection: alive, but not chatty. */
export const DEFAULT_PROGRESS_EVERY_SECONDS = 5;

/** Minutes an imported legacy watermark moves back: the original tool's clock is uncertain. */
export const DEFAULT_LEGACY_MARGIN_MINUTES = 60;

// Alerts and listeners.

/** ALERT_REPEAT_MINUTES: how often a connection still behind is alerted again; every 4 h. */
export const DEFAULT_ALERT_REPEAT_MINUTES = 240;

/** METRICS_HOST and WEBHOOK_HOST: loopback, so nothing is exposed unless asked for. */
export const DEFAULT_LISTEN_HOST = "127.0.0.1";

/** `simulate --mailchimp-port`: where the Mailchimp simulator listens. */
export const DEFAULT_MAILCHIMP_SIM_PORT = 8081;

/** `simulate --ometria-port`: where the Ometria simulator listens. */
export const DEFAULT_OMETRIA_SIM_PORT = 8082;

/**
 * STATE_LEASE_SECONDS: how long a connection's lease in Deno KV lasts without renewal. A
 * killed holder blocks its connections this long; a holder stops writing two thirds of it
 * after its last renewal (lib/state/kv_lease.ts).
 */
export const DEFAULT_STATE_LEASE_SECONDS = 15;
