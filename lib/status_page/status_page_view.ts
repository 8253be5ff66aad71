/**
 * What the status page shows, as data: the connections a request asked for (filtered, behind
 * ones first, then failed ones, one page of them) with their freshness, last run, quarantine, orphans and last
 * webhook, and totals over all of them. Kept apart from the HTML so the order, the filter and
 * the paging are tested on plain values.
 *
 * With 10,000 connections only the cheap part runs over every row (freshness, to sort and
 * count); the full entries are built for the one page shown.
 *
 * @module
 */
import { z } from "zod";
import { freshnessOf } from "../freshness/freshness.ts";
import { buildStatusReport, type StatusEntry, type StatusRow } from "../freshness/status_report.ts";

/** Rows on one page: enough to scan, few enough that the page stays small and quick. */
export const STATUS_PAGE_SIZE = 100;

/** Longest filter text kept; anything longer cannot be a connection or list id anyway. */
const _MAX_FILTER = 200;

/** What a request asks the status page for (from its query string). */
export interface StatusPageQuery {
  /** 1-based page number; a page past the last shows the last. */
  page: number;
  /** Case-insensitive text that the connection id, list id or list name must contain. */
  q: string;
  /** Only connections that are behind (or, with `failed` too, behind or failed). */
  behind: boolean;
  /** Only connections whose last run failed (or, with `behind` too, failed or behind). */
  failed: boolean;
}

const _flag = z.string().catch("").transform((v) => ["1", "true", "on", "yes"].includes(v));

const _querySchema = z.object({
  page: z.coerce.number().int().min(1).max(1_000_000).catch(1),
  q: z.string().catch("").transform((q) => q.trim().slice(0, _MAX_FILTER)),
  behind: _flag,
  failed: _flag,
});

/**
 * Reads `?page=`, `?q=`, `?behind=1` and `?failed=1` from a query string. The query comes from whoever
 * opens the page, so nothing in it is an error: a value that makes no sense falls back to its
 * default (page 1, no filter), and the filter is cut to 200 characters.
 */
export function parseStatusPageQuery(params: URLSearchParams): StatusPageQuery {
  return _querySchema.parse({
    page: params.get("page") ?? undefined,
    q: params.get("q") ?? undefined,
    behind: params.get("behind") ?? undefined,
    failed: params.get("failed") ?? undefined,
  });
}

/** The last webhook event of a connection, as the page shows it. */
export interface StatusPageWebhook {
  /** When we received it (our clock). */
  received_at: string;
  /** Seconds from Mailchimp's `fired_at` to our receipt; null when it sent no readable time. */
  delivery_lag_seconds: number | null;
  /** The event type, e.g. `profile`. */
  type: string;
  /** Events received so far. */
  count: number;
}

/** One connection's row on the page: its status entry plus what only the page shows. */
export interface StatusPageRow extends StatusEntry {
  /**
   * The Mailchimp list's name when the state knows it; null until then (the page shows the
   * list id). The state has no list name yet: reading it is the engine's job.
   */
  list_name: string | null;
  /** The last webhook event acted on; null when none came. */
  webhook: StatusPageWebhook | null;
}

/** One page of the status page, with the totals a person reads first. */
export interface StatusPageView {
  /** When the view was built (our clock), ISO 8601. */
  generated_at: string;
  /** Configured connections. */
  total: number;
  /** Connections behind (of all, not only those matching the filter). */
  behind: number;
  /** Connections whose last run failed (of all). */
  failed: number;
  /** Members held back, summed over all connections. */
  quarantined: number;
  /** Connections matching the query's filter. */
  matched: number;
  /** The page shown (1-based, clamped to the pages there are). */
  page: number;
  /** Pages the matching connections fill (at least 1). */
  pages: number;
  /** The query, as understood. */
  query: StatusPageQuery;
  /**
   * The rows of this page: behind first (worst first), then those whose last run failed,
   * then the rest, each group in configuration order.
   */
  rows: StatusPageRow[];
}

/** Options of {@linkcode buildStatusPageView}. */
export interface StatusPageViewOptions {
  /** Rows a page. @default {STATUS_PAGE_SIZE} */
  pageSize?: number;
}

/**
 * Builds one page of the status page from the configured connections' rows at `nowMs`. Behind
 * connections come first, the furthest behind (lag over threshold) first, then connections
 * whose last run failed, so what needs a person is at the top of page 1 however many
 * connections there are; the others keep the configuration order, so rows do not jump around
 * between refreshes. Pure: the same rows, time and query give the same view.
 */
export function buildStatusPageView(
  rows: readonly StatusRow[],
  nowMs: number,
  query: StatusPageQuery,
  options: StatusPageViewOptions = {},
): StatusPageView {
  const pageSize = options.pageSize ?? STATUS_PAGE_SIZE;
  if (!Number.isInteger(pageSize) || pageSize < 1) {
    throw new RangeError(`Cannot page the status as 'pageSize' must be >= 1: current ${pageSize}`);
  }
  const needle = query.q.toLowerCase();
  const only = query.behind || query.failed;
  let behind = 0;
  let failed = 0;
  let quarantined = 0;
  const matching: { row: StatusRow; index: number; rank: number; ratio: number }[] = [];
  rows.forEach((row, index) => {
    const freshness = freshnessOf(row.state, {
      nowMs,
      thresholdSeconds: row.threshold_seconds,
    });
    const isFailed = row.state?.status === "failed";
    if (freshness.behind) behind++;
    if (isFailed) failed++;
    quarantined += row.state?.quarantine.length ?? 0;
    if (only && !((query.behind && freshness.behind) || (query.failed && isFailed))) return;
    if (needle !== "" && !_matches(row, needle)) return;
    const ratio = row.threshold_seconds > 0
      ? (freshness.lag_seconds ?? 0) / row.threshold_seconds
      : Number.POSITIVE_INFINITY;
    matching.push({ row, index, rank: freshness.behind ? 0 : isFailed ? 1 : 2, ratio });
  });
  matching.sort((a, b) =>
    a.rank !== b.rank
      ? a.rank - b.rank
      : a.rank === 0 && a.ratio !== b.ratio
      ? b.ratio - a.ratio
      : a.index - b.index
  );
  const pages = Math.max(1, Math.ceil(matching.length / pageSize));
  const page = Math.min(query.page, pages);
  const shown = matching.slice((page - 1) * pageSize, page * pageSize).map((m) => m.row);
  const entries = buildStatusReport(shown, nowMs).connections;
  return {
    generated_at: new Date(nowMs).toISOString(),
    total: rows.length,
    behind,
    failed,
    quarantined,
    matched: matching.length,
    page,
    pages,
    query: { ...query, page },
    rows: entries.map((entry, i) => ({
      ...entry,
      list_name: _listName(shown[i]!),
      webhook: _webhook(shown[i]!),
    })),
  };
}

function _matches(row: StatusRow, needle: string): boolean {
  return row.id.toLowerCase().includes(needle) || row.list_id.toLowerCase().includes(needle) ||
    (_listName(row)?.toLowerCase().includes(needle) ?? false);
}

function _listName(row: StatusRow): string | null {
  // Reconciliation reads the list's name (daily by default); until then there is none.
  const name = row.state?.list_name;
  return typeof name === "string" && name !== "" ? name : null;
}

function _webhook(row: StatusRow): StatusPageWebhook | null {
  const seen = row.state?.last_webhook;
  if (!seen) return null;
  const received = Date.parse(seen.received_at);
  const fired = seen.fired_at === null ? Number.NaN : Date.parse(seen.fired_at);
  return {
    received_at: seen.received_at,
    // Two clocks (Mailchimp's and ours): a negative difference is skew, not time travel.
    delivery_lag_seconds: Number.isNaN(received) || Number.isNaN(fired)
      ? null
      : Math.max(0, (received - fired) / 1000),
    type: seen.type,
    count: seen.count,
  };
}
