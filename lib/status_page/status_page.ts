/**
 * The status page: one small HTML document a person reads at a glance, served at `GET /` by
 * the daemon's metrics listener and by the Deploy handler. Per connection: list id and name,
 * fresh-as-of and lag with a bar against the threshold, the last run, quarantined and orphan
 * counts and the last webhook; behind connections first, marked in words and colour.
 *
 * No external assets (the metrics listener is often reachable only from the machine, and a
 * third-party request would say who is looking) and no secrets: only what `status --json`
 * shows. Every text from outside (ids, names, errors, the filter) is escaped, and the
 * response's Content-Security-Policy allows only this response's own inline style and script,
 * so a mistake in escaping still could not run anything.
 *
 * @module
 */
import { formatLag, type StatusRow } from "../freshness/status_report.ts";
import { redact } from "../log/error_text.ts";
import {
  buildStatusPageView,
  parseStatusPageQuery,
  type StatusPageQuery,
  type StatusPageRow,
  type StatusPageView,
} from "./status_page_view.ts";

/** Seconds between the page's own reloads. */
export const STATUS_PAGE_REFRESH_SECONDS = 5;

/** Options of {@linkcode renderStatusPage}. */
export interface RenderStatusPageOptions {
  /**
   * The nonce that the Content-Security-Policy allows the inline style and script with; a
   * fresh one per response.
   */
  nonce: string;
  /** Seconds between reloads. @default {STATUS_PAGE_REFRESH_SECONDS} */
  refreshSeconds?: number;
}

/**
 * Renders a view as a complete HTML document. The page reloads itself every few seconds with
 * a tiny script that waits while the filter box has the focus (a `<meta refresh>` would throw
 * away what someone is typing); without script, a `<noscript>` meta refresh does it.
 */
export function renderStatusPage(view: StatusPageView, options: RenderStatusPageOptions): string {
  const refresh = options.refreshSeconds ?? STATUS_PAGE_REFRESH_SECONDS;
  const nonce = _esc(options.nonce);
  const nowMs = Date.parse(view.generated_at);
  const title = view.behind > 0 ? `${view.behind} behind · Sync status` : "Sync status";
  let out = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${_esc(title)}</title>
<noscript><meta http-equiv="refresh" content="${refresh}"></noscript>
<style nonce="${nonce}">${_CSS}</style>
</head><body>
<header><h1>Mailchimp → Ometria sync</h1>
<p class="totals">${_totals(view)}</p>
<p class="meta">As of <time datetime="${view.generated_at}">${
    _shortTime(view.generated_at)
  }</time>; refreshes every ${refresh} s. Lag bars run to twice the threshold; the line is the threshold.</p>
<form method="get">
<input type="search" name="q" value="${
    _esc(view.query.q)
  }" placeholder="Filter by connection, list id or name" aria-label="Filter">
<span class="only">Only:
<label><input type="checkbox" name="behind" value="1"${
    view.query.behind ? " checked" : ""
  }> behind</label>
<label><input type="checkbox" name="failed" value="1"${
    view.query.failed ? " checked" : ""
  }> failed</label></span>
<button type="submit">Filter</button>
</form></header>
<main>`;
  if (view.rows.length === 0) {
    out += `<p class="empty">${
      view.total === 0 ? "No connections configured." : "No connection matches this filter."
    }</p>`;
  } else {
    out += `<table><thead><tr><th>Connection</th><th>Status</th><th>Freshness</th>` +
      `<th>Last run</th><th class="num">Held</th><th class="num">Orphans</th>` +
      `<th>Verified</th><th>Last webhook</th></tr></thead><tbody>\n`;
    for (const row of view.rows) out += _row(row, nowMs);
    out += `</tbody></table>`;
  }
  out += _pager(view);
  out += `</main>
<script nonce="${nonce}">document.documentElement.dataset.live="1";setInterval(function(){var a=document.activeElement;if(!a||a.tagName!=="INPUT")location.reload()},${
    refresh * 1000
  });</script>
</body></html>
`;
  return out;
}

/** Options of {@linkcode statusPageResponse}. */
export interface StatusPageResponseOptions {
  /**
   * Secrets taken out of the page, as they are and as they read once escaped for HTML (a
   * state may hold a key passed as an id before ids were checked). @default {[]}
   */
  secrets?: readonly string[];
}

/**
 * Answers a `GET /` for the status page: the page of `rows` the request's query asks for at
 * `nowMs`, as `text/html` with a per-response nonce in a strict Content-Security-Policy,
 * `no-store` (every reload must show the state now) and no referrer.
 */
export function statusPageResponse(
  rows: readonly StatusRow[],
  nowMs: number,
  request: Request,
  options: StatusPageResponseOptions = {},
): Response {
  const query: StatusPageQuery = parseStatusPageQuery(new URL(request.url).searchParams);
  const nonce = crypto.randomUUID().replaceAll("-", "");
  const secrets = (options.secrets ?? []).flatMap((s) => [s, _esc(s)]);
  const html = redact(
    renderStatusPage(buildStatusPageView(rows, nowMs, query), { nonce }),
    secrets,
  );
  return new Response(html, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "content-security-policy": `default-src 'none'; style-src 'nonce-${nonce}'; ` +
        `script-src 'nonce-${nonce}'; form-action 'self'; base-uri 'none'; ` +
        `frame-ancestors 'none'`,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    },
  });
}

/**
 * The counts a person reads first, each a link to its filter: how many are behind (or that
 * none is), how many failed, how many members are held, out of how many connections.
 */
function _totals(view: StatusPageView): string {
  const link = (param: string, cls: string, text: string) =>
    `<a class="n ${cls}" href="?${param}=1">${text}</a>`;
  let out = view.behind > 0
    ? `<a class="n bad" href="?behind=1" id="behind-count">${view.behind} behind</a>`
    : `<span class="n good" id="behind-count">none behind</span>`;
  out += ` <span class="n">${view.total} connection${view.total === 1 ? "" : "s"}</span>`;
  if (view.failed > 0) out += ` ${link("failed", "warn", `${view.failed} failed`)}`;
  if (view.quarantined > 0) out += ` <span class="n warn">${view.quarantined} held</span>`;
  return out;
}

function _row(row: StatusPageRow, nowMs: number): string {
  const name = row.list_name ?? row.list_id;
  const cls = row.behind ? ` class="behind"` : row.status === "failed" ? ` class="failed"` : "";
  let out = `<tr${cls} data-id="${_esc(row.id)}"${row.behind ? ` data-behind="1"` : ""}>`;
  out += `<td><b>${_esc(row.id)}</b><div class="sub">${_esc(name)}${
    row.list_name === null ? "" : ` · <span class="mono">${_esc(row.list_id)}</span>`
  }</div></td>`;
  out += `<td>${row.behind ? `<span class="badge bad">BEHIND</span> ` : ""}<span class="badge ${
    _statusClass(row.status)
  }">${row.status}</span></td>`;
  const over = row.behind && row.lag_seconds !== null
    ? `<span class="bad">${formatLag(row.lag_seconds - row.threshold_seconds)} over</span> · `
    : "";
  out += `<td>${_lagBar(row)}<div class="sub">${over}${
    row.fresh_as_of === null
      ? `never complete${row.status === "failed" ? " · its runs fail" : ""}`
      : `fresh as of <time datetime="${_esc(row.fresh_as_of)}">${
        _shortTime(row.fresh_as_of)
      }</time>`
  }</div></td>`;
  const run = row.last_run;
  if (run === null) out += `<td class="sub">no run yet</td>`;
  else {
    out += `<td><span class="${run.outcome === "ok" ? "good" : "bad"}">${run.outcome}</span> ${
      _ago(run.finished_at, nowMs)
    }<div class="sub">${_count(run.read)} read · ${_count(run.pushed)} pushed · ${
      _count(run.rejected)
    } rejected</div>`;
    if (row.last_error !== null) {
      out += `<div class="err">${_esc(_truncate(row.last_error, 160))}</div>`;
    }
    out += `</td>`;
  }
  out += `<td class="num${row.quarantined > 0 ? " warn" : ""}">${row.quarantined}</td>`;
  out += `<td class="num">${row.orphans === null ? "–" : row.orphans}</td>`;
  out += _verifyCell(row, nowMs);
  const hook = row.webhook;
  out += hook === null
    ? `<td class="sub">none</td>`
    : `<td>${_ago(hook.received_at, nowMs)} · ${_esc(_truncate(hook.type, 30))}<div class="sub">${
      hook.delivery_lag_seconds === null
        ? "delivery lag unknown"
        : `delivered in ${_duration(hook.delivery_lag_seconds)}`
    } · ${hook.count} event${hook.count === 1 ? "" : "s"}</div></td>`;
  return out + `</tr>\n`;
}

/** The last verify: when, full or sampled, and whether Ometria matched (what differed). */
function _verifyCell(row: StatusPageRow, nowMs: number): string {
  const v = row.last_verify;
  if (v === null) return `<td class="sub">not yet</td>`;
  const differences = v.missing + v.stale + v.extra;
  const found = differences === 0
    ? `<span class="good">matches</span>`
    : `<span class="bad">${_count(v.missing)} missing · ${_count(v.stale)} stale · ${
      _count(v.extra)
    } extra</span>`;
  const fields = v.fields.length > 0
    ? `<div class="sub">${_esc(_truncate(v.fields.join(", "), 80))}</div>`
    : "";
  return `<td>${found} ${_ago(v.at, nowMs)}<div class="sub">${
    v.mode === "full" ? "full" : "sample"
  } of ${_count(v.checked)}</div>${fields}</td>`;
}

/**
 * The lag as a bar against the threshold and in words. Its colour is honest about more than
 * the lag: a connection with nothing in Ometria yet is never green (red while its runs fail,
 * grey while its first run is under way), and one whose last run failed is at least amber. A
 * lag over the threshold is red and its row says by how much (`_row`), so "1m of 1m" cannot
 * read as fine.
 */
function _lagBar(row: StatusPageRow): string {
  if (row.lag_seconds === null) return `<span class="sub">lag unknown</span>`;
  const ratio = row.threshold_seconds > 0
    ? row.lag_seconds / row.threshold_seconds
    : Number.POSITIVE_INFINITY;
  // Widths come from 21 classes rather than a style attribute: the policy allows no inline
  // style attributes, and 5 % steps are all the eye can tell apart anyway.
  // Rounded up, so any lag at all shows as a sliver rather than an empty track.
  const step = Math.ceil(Math.min(ratio / 2, 1) * 20);
  const never = row.fresh_as_of === null;
  const failed = row.status === "failed";
  const tone = row.behind || (never && failed)
    ? "bad"
    : never
    ? "muted"
    : failed || ratio > 0.75
    ? "warn"
    : "good";
  const text = `${formatLag(row.lag_seconds)} of ${formatLag(row.threshold_seconds)}`;
  return `<div class="bar" title="lag ${text}"><i class="w${step} ${tone}"></i></div>` +
    `<span class="lag${row.behind ? " bad" : ""}">${text}</span>`;
}

function _pager(view: StatusPageView): string {
  const matched = view.matched === view.total
    ? `${view.total}`
    : `${view.matched} matching of ${view.total}`;
  let out = `<nav class="pager"><span>Page ${view.page} of ${view.pages} (${matched})</span>`;
  const link = (page: number, label: string) => {
    const params = new URLSearchParams();
    if (view.query.q !== "") params.set("q", view.query.q);
    if (view.query.behind) params.set("behind", "1");
    if (view.query.failed) params.set("failed", "1");
    params.set("page", String(page));
    return ` <a href="?${_esc(params.toString())}">${label}</a>`;
  };
  if (view.page > 1) out += link(1, "« first") + link(view.page - 1, "‹ previous");
  if (view.page < view.pages) out += link(view.page + 1, "next ›") + link(view.pages, "last »");
  return out + `</nav>`;
}

function _statusClass(status: StatusPageRow["status"]): string {
  return status === "ok" ? "good" : status === "failed" ? "bad" : "muted";
}

function _ago(iso: string, nowMs: number): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return _esc(iso);
  const seconds = (nowMs - ms) / 1000;
  const text = seconds < 0 ? "just now" : `${formatLag(seconds)} ago`;
  return `<time datetime="${_esc(iso)}" title="${_esc(_shortTime(iso))}">${text}</time>`;
}

function _count(n: number): string {
  return n.toLocaleString("en-US");
}

function _duration(seconds: number): string {
  return seconds < 10 ? `${seconds.toFixed(1)} s` : formatLag(seconds);
}

function _shortTime(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isNaN(ms)
    ? iso
    : new Date(ms).toISOString().slice(0, 19).replace("T", " ") + " UTC";
}

function _truncate(text: string, width: number): string {
  return text.length <= width ? text : text.slice(0, width - 1) + "…";
}

const _ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

function _esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => _ESCAPES[c]!);
}

const _WIDTHS = Array.from({ length: 21 }, (_, i) => `.w${i}{width:${i * 5}%}`).join("");

const _CSS = `
:root{color-scheme:light dark;--bg:#fff;--fg:#1d2126;--muted:#68707a;--line:#e3e6ea;
--good:#1a7f37;--warn:#9a6700;--bad:#cf222e;--badbg:#ffebe9;--track:#eef0f3}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e6e8eb;--muted:#9aa2ab;
--line:#2a2f36;--good:#3fb950;--warn:#d29922;--bad:#f85149;--badbg:#3a1618;--track:#22272e}}
*{box-sizing:border-box}
body{margin:0;padding:16px 24px;font:14px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
h1{font-size:18px;margin:0 0 6px}
.totals{margin:0 0 4px;font-size:16px}.n{margin-right:14px;font-weight:600}a.n{text-decoration:none}a.n:hover{text-decoration:underline}
.meta,.sub{color:var(--muted);font-size:12px}.meta{margin:0 0 10px}
form{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin-bottom:12px}
input[type=search]{width:320px;max-width:100%;padding:4px 8px;font:inherit}
.only label{margin-left:6px}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-size:12px;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line);padding:6px 8px}
td{border-bottom:1px solid var(--line);padding:6px 8px;vertical-align:top}
tr.behind td{background:var(--badbg)}tr.behind td:first-child{box-shadow:inset 4px 0 var(--bad)}
tr.failed td:first-child{box-shadow:inset 4px 0 var(--warn)}
.num{text-align:right;font-variant-numeric:tabular-nums}
.good{color:var(--good)}.warn{color:var(--warn)}.bad{color:var(--bad)}.muted{color:var(--muted)}
.badge{display:inline-block;font-size:11px;font-weight:700;padding:1px 6px;border-radius:8px;border:1px solid currentColor}
.badge.bad{background:var(--bad);border-color:var(--bad);color:#fff}
.bar{position:relative;display:inline-block;vertical-align:middle;width:120px;height:8px;background:var(--track);border-radius:4px;overflow:hidden;margin-right:8px}
.bar::after{content:"";position:absolute;left:50%;top:0;bottom:0;width:2px;background:var(--fg);opacity:.55}
.bar i{display:block;height:100%}.bar i.good{background:var(--good)}.bar i.warn{background:var(--warn)}.bar i.bad{background:var(--bad)}.bar i.muted{background:var(--muted)}
.lag{font-variant-numeric:tabular-nums}
.err{color:var(--bad);font-size:12px;max-width:420px;overflow-wrap:anywhere}
.mono{font-family:ui-monospace,monospace}
.pager{margin:12px 0;color:var(--muted)}.pager a{margin-left:8px}
.empty{color:var(--muted)}
@media (max-width:720px){
body{padding:12px}h1{font-size:17px}.totals{font-size:15px}.n{margin-right:10px}
input[type=search]{width:100%}
table,tbody,tr,td{display:block;width:100%}thead{display:none}
tr{border:1px solid var(--line);border-radius:8px;margin:0 0 10px;padding:6px 0;overflow:hidden}
tr.behind{border-color:var(--bad);box-shadow:inset 4px 0 var(--bad)}tr.failed{box-shadow:inset 4px 0 var(--warn)}
tr.behind{background:var(--badbg)}tr.behind td{background:none}
tr.behind td:first-child,tr.failed td:first-child{box-shadow:none}
td{border:0;padding:3px 12px;overflow-wrap:anywhere}
td+td::before{display:block;font-size:11px;font-weight:600;color:var(--muted)}
td:nth-child(2)::before{content:"Status"}td:nth-child(3)::before{content:"Freshness"}
td:nth-child(4)::before{content:"Last run"}td:nth-child(5)::before{content:"Held"}
td:nth-child(6)::before{content:"Orphans"}td:nth-child(7)::before{content:"Verified"}
td:nth-child(8)::before{content:"Last webhook"}
td.num{display:inline-block;width:auto;text-align:left;padding-right:20px}
.err{max-width:none}
}
${_WIDTHS}`;
