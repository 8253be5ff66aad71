/**
 * The state document: what the sync remembers between runs, per connection. It holds no
 * secrets. Times are ISO 8601 UTC strings; Mailchimp times (`watermark`, `fresh_as_of`,
 * `upper`, `cursor`) come from Mailchimp's clock, the others from ours.
 *
 * @module
 */
import { z } from "zod";

/** Current version of the state document. */
export const STATE_VERSION = 1;

const isoTime = z.iso.datetime({ offset: true });

/** A run that started and has not completed: what a restarted run resumes from. */
export const runProgressSchema = z.object({
  /** The window's upper bound U (Mailchimp time, exclusive). */
  upper: isoTime,
  /**
   * Every member of the window with `last_changed` before this time has been acknowledged by
   * Ometria. Starts at the window's lower edge (the watermark, or null for a full sync).
   */
  cursor: isoTime.nullable(),
  /** When the run started (our clock). */
  started_at: isoTime,
  /** Members read and pushed so far by this run (carried across restarts for the summary). */
  read: z.number().int().nonnegative().default(0),
  pushed: z.number().int().nonnegative().default(0),
  rejected: z.number().int().nonnegative().default(0),
});

/** The numbers of a finished run. */
export const runSummarySchema = z.object({
  started_at: isoTime,
  finished_at: isoTime,
  outcome: z.enum(["ok", "failed"]),
  read: z.number().int().nonnegative(),
  pushed: z.number().int().nonnegative(),
  rejected: z.number().int().nonnegative(),
  duration_ms: z.number().nonnegative(),
  mailchimp_requests: z.number().int().nonnegative().default(0),
  ometria_requests: z.number().int().nonnegative().default(0),
});

/** Alerting memory of one connection (so a restart does not re-alert). */
export const alertStateSchema = z.object({
  /** When the current "behind" incident was first alerted; null when not behind. */
  behind_since: isoTime.nullable().default(null),
  /** When the last alert (or reminder) for the current incident was sent. */
  last_alert_at: isoTime.nullable().default(null),
});

/**
 * A member that could not be read, mapped or accepted: the rest of its list goes on, and it
 * is tried again on every run until it goes through (see `lib/engine/quarantine.ts`).
 */
export const quarantineEntrySchema = z.object({
  /** Mailchimp's member id (subscriber hash); null when Mailchimp served none we could use. */
  id: z.string().nullable(),
  /** Why the member is held, in words a person can act on. */
  reason: z.string(),
  /** When it was first quarantined (our clock). */
  first_seen_at: isoTime,
  /** When it was last tried (our clock). */
  last_tried_at: isoTime,
  /** How many times it has been tried. */
  attempts: z.number().int().nonnegative().default(1),
});

/** What the last reconciliation of a connection found and repaired. */
export const reconcileSummarySchema = z.object({
  /** When it finished (our clock). */
  at: isoTime,
  /** Ids Mailchimp lists now. */
  mailchimp_members: z.number().int().nonnegative(),
  /** Ids this program had pushed to Ometria (the ledger) before reconciling. */
  ledger_members: z.number().int().nonnegative(),
  /** Ids pushed before but absent now (deleted, or an old id left by an email change). */
  orphans: z.number().int().nonnegative(),
  /**
   * Members older than the watermark that the ledger lacked (polling should never miss one).
   */
  missing: z.number().int().nonnegative(),
  /** Members older than the watermark whose record in Ometria differed from Mailchimp's. */
  stale: z.number().int().nonnegative().default(0),
  /** Members changed since the watermark, pushed early (polling's next window; no divergence). */
  ahead: z.number().int().nonnegative().default(0),
  /** Ledger entries without a hash (from an earlier release) given the one Mailchimp has now. */
  adopted: z.number().int().nonnegative().default(0),
  /** Orphans opted out in Ometria and members pushed by this reconciliation. */
  repaired: z.number().int().nonnegative(),
  /** A few of the orphan ids, for the status output. */
  orphan_ids: z.array(z.string()).default([]),
});

/** What the last `verify` (read back from Ometria's Contact API) found. */
export const verifySummarySchema = z.object({
  /** When it finished (our clock). */
  at: isoTime,
  /** `full`: every member and every contact; `sample`: members at random, looked up by id. */
  mode: z.enum(["full", "sample"]),
  /** Mailchimp members compared. */
  checked: z.number().int().nonnegative(),
  /** Members Ometria held no contact for. */
  missing: z.number().int().nonnegative(),
  /** Members whose contact held other values. */
  stale: z.number().int().nonnegative(),
  /** Contacts of the collection no member has (not opted out). */
  extra: z.number().int().nonnegative(),
  /** The fields found different, most frequent first (at most 10). */
  fields: z.array(z.string()).default([]),
  /** Differences pushed by `--repair`. */
  repaired: z.number().int().nonnegative().default(0),
  /**
   * Since when verifies keep finding differences (our clock); null when the last one found
   * none. `connection.diverged` is raised when this starts, once per incident.
   */
  diverged_since: isoTime.nullable().default(null),
});

/**
 * Mailchimp's clock as last seen, with ours at the same moment: a later run that finds
 * Mailchimp's clock behind where it should be (a step back) can tell how far to read again.
 */
export const clockSeenSchema = z.object({
  mailchimp_at: isoTime,
  local_at: isoTime,
});

/**
 * The last Mailchimp webhook event acted on for a connection. Webhooks only speed the copy
 * up; `fresh_as_of` stays defined by polling.
 */
export const webhookSeenSchema = z.object({
  /** When we received it (our clock). */
  received_at: isoTime,
  /** Mailchimp's `fired_at` (its clock), when it sent one we could read. */
  fired_at: isoTime.nullable(),
  /** The event type, e.g. `profile`. */
  type: z.string(),
  /** Events received so far. */
  count: z.number().int().nonnegative().default(1),
});

/** An unsubscribe of Ometria's listing this connection acted on (kept for the lookback). */
export const optoutDoneSchema = z.object({
  /** The member (subscriber hash). */
  id: z.string(),
  /** When the contact unsubscribed, as Ometria stamped it. */
  at: isoTime,
  /** Ometria's unsubscribe type, e.g. `preferences_centre`. */
  type: z.string(),
  /** What happened: set to unsubscribed, gone from Mailchimp, or refused by it. */
  outcome: z.enum(["applied", "gone", "refused"]),
});

/**
 * Ometria → Mailchimp unsubscribes of a connection with `optout_back` (engine/optout_back.ts):
 * the watermark of Ometria's unsubscribes listing and what was done with it.
 */
export const optoutBackSchema = z.object({
  /**
   * Every unsubscribe Ometria stamped before this (Ometria's time) has been acted on; the next
   * poll reads from here less a lookback, for events listed late.
   */
  watermark: isoTime,
  /** Unsubscribes acted on since the lookback's start: read again, they are not redone. */
  recent: z.array(optoutDoneSchema).default([]),
  /** Members set to unsubscribed in Mailchimp, so far. */
  applied: z.number().int().nonnegative().default(0),
  /** Unsubscribes of contacts this connection never pushed (another source's). */
  not_ours: z.number().int().nonnegative().default(0),
  /** Members Mailchimp no longer had. */
  gone: z.number().int().nonnegative().default(0),
  /** Members Mailchimp refused to change (cleaned, archived…). */
  refused: z.number().int().nonnegative().default(0),
  /** The last poll that completed (our clock). */
  last_polled_at: isoTime.nullable().default(null),
  /** The last member set to unsubscribed (our clock). */
  last_applied_at: isoTime.nullable().default(null),
  /** Why the last poll failed; null after one that completed. */
  last_error: z.string().nullable().default(null),
});

/**
 * A data-protection erasure filed with Ometria and not yet reported complete
 * (engine/erasure.ts). It never holds the address, nor its MD5 (Mailchimp's id, which a list
 * of addresses reverses): only a salted SHA-256 of it.
 */
export const erasureRecordSchema = z.object({
  /** `sha256:` and the hex SHA-256 of the connection's salt and the lowercased address. */
  identity: z.string(),
  /** When it was filed (our clock). */
  filed_at: isoTime,
  /** Ometria's id of the deletion request; null when neither its answer nor its listing named one. */
  request_id: z.string().nullable(),
  /** The API request that filed it, to find it in Ometria's listing when `request_id` is null. */
  api_request_id: z.string().nullable().default(null),
  /** `filed`: Ometria took it; `failed`: it could not be filed (run `erase` again). */
  status: z.enum(["filed", "failed"]),
  /** Why it could not be filed (no address in it). */
  error: z.string().nullable().default(null),
  /** The Mailchimp member: deleted permanently, not there, or left (no `--mailchimp`). */
  mailchimp: z.enum(["deleted", "not_found", "kept"]),
  /** Who asked: the `erase` command, or a permanent delete a webhook reported. */
  source: z.enum(["command", "webhook"]).default("command"),
  /** When `erasure.overdue` was raised for it; null before. */
  alerted_at: isoTime.nullable().default(null),
});

/** A connection's erasures: the salt of their hashes, the open ones, how many completed. */
export const erasureStateSchema = z.object({
  /** Random, per connection, made at its first erasure; null before. */
  salt: z.string().nullable().default(null),
  /** Erasures Ometria has not reported complete. */
  open: z.array(erasureRecordSchema).default([]),
  /** Erasures Ometria reported complete (their records are dropped). */
  completed: z.number().int().nonnegative().default(0),
  /** When Ometria was last asked about the open ones (our clock). */
  checked_at: isoTime.nullable().default(null),
});

/** Everything remembered about one connection. */
export const connectionStateSchema = z.object({
  id: z.string().min(1),
  list_id: z.string().min(1),
  /**
   * Lower edge of the next window: every member with `last_changed` before it is in Ometria.
   * Null before the first completed run (next run is a full sync).
   */
  watermark: isoTime.nullable().default(null),
  /** Mailchimp time up to which Ometria is known complete (U of the last completed run). */
  fresh_as_of: isoTime.nullable().default(null),
  /** The run in progress, if one started and did not complete. */
  run: runProgressSchema.nullable().default(null),
  /** Outcome of the last run: never run, ok, failed. */
  status: z.enum(["never", "ok", "failed"]).default("never"),
  /** Consecutive failed runs (drives retry backoff). */
  failures: z.number().int().nonnegative().default(0),
  /** Earliest time (our clock) a failed connection is retried. */
  retry_at: isoTime.nullable().default(null),
  last_run: runSummarySchema.nullable().default(null),
  last_error: z.string().nullable().default(null),
  /**
   * Whether Mailchimp's default member listing includes archived members for this list:
   * true once seen; until then each run also reads the window with `status=archived`.
   */
  archived_in_listing: z.boolean().nullable().default(null),
  /**
   * The connection's threshold when it last ran, so `status --check` judges it by its own
   * threshold even without the connections file that set it.
   */
  threshold_seconds: z.number().positive().nullable().default(null),
  /**
   * When a run of this connection was first attempted (our clock): the lag of a connection
   * that never completed a run counts from here, across restarts.
   */
  first_seen_at: isoTime.nullable().default(null),
  /** Where the state came from when it was migrated from the original tool. */
  imported_from: z.string().nullable().default(null),
  alert: alertStateSchema.default({ behind_since: null, last_alert_at: null }),
  /** Members held back from Ometria, with the reason; retried on every run. */
  quarantine: z.array(quarantineEntrySchema).default([]),
  /** The last reconciliation; null before the first. */
  last_reconcile: reconcileSummarySchema.nullable().default(null),
  /** The last verify; null before the first. */
  last_verify: verifySummarySchema.nullable().default(null),
  /** Mailchimp's clock at the start of the last run (step-back detection). */
  clock_seen: clockSeenSchema.nullable().default(null),
  /** The list's name in Mailchimp, read once (for the status page); null until then. */
  list_name: z.string().nullable().default(null),
  /** The last webhook event acted on; null when none came. */
  last_webhook: webhookSeenSchema.nullable().default(null),
  /**
   * The entries of Ometria's `GET /v2/push/_errors` as last read (fingerprints), so that a
   * later reading tells which are new (engine/async_rejections.ts); null before the first.
   */
  async_errors_seen: z.array(z.string()).nullable().default(null),
  /** Ometria → Mailchimp unsubscribes; null until the first poll (or without `optout_back`). */
  optout_back: optoutBackSchema.nullable().default(null),
  /** Data-protection erasures of this connection. */
  erasures: erasureStateSchema.default({ salt: null, open: [], completed: 0, checked_at: null }),
  /**
   * `reset --repush` (or `sync --repush`) asked that the next full run send every member,
   * those the ledger calls unchanged too; cleared when that run completes its window. Absent
   * (rather than false) otherwise, so documents written before it stay byte for byte.
   */
  repush_pending: z.literal(true).optional(),
});

/** Everything remembered about one connection. */
export type ConnectionState = z.infer<typeof connectionStateSchema>;
/** A run in progress. */
export type RunProgress = z.infer<typeof runProgressSchema>;
/** The numbers of a finished run. */
export type RunSummary = z.infer<typeof runSummarySchema>;
/** Alerting memory of one connection. */
export type AlertState = z.infer<typeof alertStateSchema>;
/** A quarantined member. */
export type QuarantineEntry = z.infer<typeof quarantineEntrySchema>;
/** What a reconciliation found. */
export type ReconcileSummary = z.infer<typeof reconcileSummarySchema>;
/** What a verify found. */
export type VerifySummary = z.infer<typeof verifySummarySchema>;
/** The last webhook event acted on. */
export type WebhookSeen = z.infer<typeof webhookSeenSchema>;
/** Ometria → Mailchimp unsubscribes of a connection. */
export type OptoutBack = z.infer<typeof optoutBackSchema>;
/** An unsubscribe acted on. */
export type OptoutDone = z.infer<typeof optoutDoneSchema>;
/** An open erasure. */
export type ErasureRecord = z.infer<typeof erasureRecordSchema>;

/** The whole state document as stored. */
export const stateDocumentSchema = z.object({
  version: z.literal(STATE_VERSION),
  connections: z.record(z.string(), connectionStateSchema),
});

/** The whole state document. */
export type StateDocument = z.infer<typeof stateDocumentSchema>;

/** A connection that has never run. */
export function newConnectionState(id: string, listId: string): ConnectionState {
  return connectionStateSchema.parse({ id, list_id: listId });
}
