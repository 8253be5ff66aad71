/**
 * Reading the state file of the original Python tool (github.com/ruipatcheco/data_sync,
 * `syncModule.py` + `classes/syncJob.py` + `utils/utils.py`'s `SyncJobEncoder`), so that a
 * switch-over continues where it stopped instead of starting with a full sync. Its
 * `sync_jobs.json` is an object keyed by list id:
 *
 * ```json
 * { "1a2d7ebf82": {
 *     "job_details": { "list_id": "1a2d7ebf82", "last_sync_date_time": "2023-09-21T04:12:19.577413" },
 *     "status": 2, "user readable status": "PARTIALLY_SYNCED" } }
 * ```
 *
 * `last_sync_date_time` is `datetime.now().isoformat()` taken when the last successful run
 * started (the tool rolls it back when a run fails), a naive local time; `null` before the
 * first run. `status` is the `Status` enum: 1 RUNNING, 2 PARTIALLY_SYNCED, 3 ERROR,
 * 4 UNDEFINED.
 *
 * @module
 */
import { z } from "zod";
import { formatMailchimpTime } from "../mailchimp/time.ts";
import { DEFAULT_LEGACY_MARGIN_MINUTES } from "../config/defaults.ts";
import { type ConnectionState, connectionStateSchema } from "./schema.ts";

// Python's isoformat() gives "T" and 0 or 6 fraction digits; fromisoformat() (how the tool
// reads it back) also takes a space, so a hand-edited file may have one.
const _LEGACY_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** The original tool's `Status` enum values, as its `SyncJobEncoder` wrote them. */
export const LEGACY_STATUS = {
  RUNNING: 1,
  PARTIALLY_SYNCED: 2,
  ERROR: 3,
  UNDEFINED: 4,
} as const;

/** One job of the original tool's `sync_jobs.json`. */
export const legacyJobSchema = z.object({
  job_details: z.object({
    list_id: z.string().optional(),
    last_sync_date_time: z.string()
      .refine(
        (text) => parseLegacyTime(text, () => 0) !== undefined,
        "is not a date and time like 2023-09-21T04:12:19.577413",
      )
      .nullish(),
  }),
  status: z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(4)], {
    error: "must be 1 (RUNNING), 2 (PARTIALLY_SYNCED), 3 (ERROR) or 4 (UNDEFINED)",
  }),
  "user readable status": z.string().optional(),
});

/** The original tool's whole `sync_jobs.json`: jobs keyed by Mailchimp list id. */
export const legacyDocumentSchema = z.record(z.string().min(1), legacyJobSchema);

/** The original tool's whole `sync_jobs.json`. */
export type LegacyDocument = z.infer<typeof legacyDocumentSchema>;

/**
 * True when a parsed JSON value has the outline of the original tool's file (an object without
 * `version` whose entries carry `job_details`), whether or not every field is valid. Used to
 * choose which format's problems to report for a document that matches neither.
 */
export function looksLikeLegacyDocument(value: unknown): boolean {
  if (!_isPlainObject(value) || "version" in value) return false;
  const entries = Object.values(value);
  return entries.length === 0 || entries.some((v) => _isPlainObject(v) && "job_details" in v);
}

/**
 * The offset from UTC, in minutes (east positive), of the machine's time zone at a naive local
 * time given as if it were UTC milliseconds. It relies on `new Date(y, m, d, h, mi, s)`, which
 * uses the process's time zone; a naive time inside a daylight-saving gap or overlap gets
 * whichever offset JavaScript picks.
 */
export function localTimeZoneOffsetMinutes(naiveMs: number): number {
  const n = new Date(naiveMs);
  const local = new Date(
    n.getUTCFullYear(),
    n.getUTCMonth(),
    n.getUTCDate(),
    n.getUTCHours(),
    n.getUTCMinutes(),
    n.getUTCSeconds(),
    n.getUTCMilliseconds(),
  );
  return Math.round((naiveMs - local.getTime()) / 60_000);
}

/**
 * Parses one of the original tool's times (`2023-09-21T04:12:19.577413`, a space instead of
 * `T`, optional seconds fraction, optional UTC offset) into epoch milliseconds. A time without
 * an offset is local time, converted with `timeZoneOffsetMinutes`. Undefined when invalid.
 */
export function parseLegacyTime(
  text: string,
  timeZoneOffsetMinutes: (naiveMs: number) => number = localTimeZoneOffsetMinutes,
): number | undefined {
  const m = _LEGACY_TIME.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s = "0", frac = "0", offset] = m;
  const ms = Number(frac.padEnd(3, "0").slice(0, 3));
  const naive = Date.UTC(
    Number(y),
    Number(mo) - 1,
    Number(d),
    Number(h),
    Number(mi),
    Number(s),
    ms,
  );
  const check = new Date(naive);
  // Date.UTC rolls 2023-02-30 over to March; a time that does not round-trip is not a time.
  if (
    Number.isNaN(naive) || check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) || check.getUTCHours() !== Number(h) ||
    check.getUTCMinutes() !== Number(mi) || check.getUTCSeconds() !== Number(s)
  ) return undefined;
  if (offset === undefined) return naive - timeZoneOffsetMinutes(naive) * 60_000;
  if (offset === "Z") return naive;
  const sign = offset.startsWith("-") ? -1 : 1;
  const digits = offset.slice(1).replace(":", "");
  const minutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2));
  return naive - sign * minutes * 60_000;
}

/** Options of {@linkcode importLegacyDocument}. */
export interface LegacyImportOptions {
  /** Recorded as `imported_from` on every imported connection (the file's path). */
  source: string;
  /**
   * How far the imported watermark is moved back, because the original tool's time is a local
   * clock reading of uncertain zone and accuracy: resending members is cheap, skipping is not.
   * @default {60}
   */
  marginMinutes?: number | undefined;
  /**
   * The UTC offset (minutes, east positive) of the zone the original tool ran in, at a naive
   * time given as if it were UTC milliseconds.
   * @default {localTimeZoneOffsetMinutes}
   */
  timeZoneOffsetMinutes?: ((naiveMs: number) => number) | undefined;
}

/** The message recorded on connections whose last run in the original tool failed. */
export const LEGACY_FAILED_MESSAGE = "imported from the original tool: last run failed";

/**
 * Turns the original tool's jobs into connection states keyed by connection id (the list id,
 * which is the id this program gives lists named on the command line). The watermark is the
 * tool's last sync time moved back by the margin; `fresh_as_of` is that time itself, so lag
 * is reported honestly; a job that never ran starts with a full sync.
 */
export function importLegacyDocument(
  legacy: LegacyDocument,
  options: LegacyImportOptions,
): Record<string, ConnectionState> {
  const marginMs = (options.marginMinutes ?? DEFAULT_LEGACY_MARGIN_MINUTES) * 60_000;
  const connections: Record<string, ConnectionState> = {};
  for (const [listId, job] of Object.entries(legacy)) {
    const text = job.job_details.last_sync_date_time;
    const at = text ? parseLegacyTime(text, options.timeZoneOffsetMinutes) : undefined;
    const failed = job.status === LEGACY_STATUS.ERROR;
    connections[listId] = connectionStateSchema.parse({
      id: listId,
      list_id: listId,
      watermark: at === undefined ? null : formatMailchimpTime(at - marginMs),
      fresh_as_of: at === undefined ? null : formatMailchimpTime(at),
      status: failed ? "failed" : at === undefined ? "never" : "ok",
      failures: failed ? 1 : 0,
      last_error: failed ? LEGACY_FAILED_MESSAGE : null,
      imported_from: options.source,
    });
  }
  return connections;
}

function _isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
