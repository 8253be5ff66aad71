/**
 * `status [--json] [--check] [ids…]`: per connection its freshness and last run, read from
 * the store as it is saved (the same rows as the status page and Deploy's `/status.json`).
 *
 * @module
 */
import type { Config } from "../../config/config.ts";
import {
  buildStatusReport,
  formatLag,
  formatStatusTable,
  type StatusEntry,
  statusRows,
} from "../../freshness/status_report.ts";
import { redact } from "../../log/error_text.ts";
import { type CliDeps, EXIT } from "./cli_deps.ts";

/**
 * Writes the report (a table, or JSON with `--json`) and returns 0, or 1 with `--check` when
 * a connection is behind or has never completed a sync (an id with no state at all
 * included: a misspelt id must not pass the check). Ids named but without state are shown
 * as never synced. Every configured secret is taken out of what is written: the state may
 * hold one from before ids were checked (a key passed as a list id).
 */
export async function statusCommand(config: Config, deps: CliDeps): Promise<number> {
  const states = await deps.store.list();
  const filter = new Set(config.listIds);
  // The same rows as the status page and Deploy's /status.json, by the stored thresholds.
  const rows = statusRows(
    config.connections.length > 0
      ? states
      : states.filter((s) => filter.size === 0 || filter.has(s.id) || filter.has(s.list_id)),
    config,
  );
  for (const id of filter) {
    if (!rows.some((r) => r.id === id || r.list_id === id)) {
      rows.push({
        id,
        list_id: id,
        threshold_seconds: config.thresholdMinutes * 60,
        state: undefined,
      });
    }
  }
  const report = buildStatusReport(rows, deps.clock.now());
  const secrets = deps.secrets ?? [];
  if (config.json) deps.write(redact(JSON.stringify(report, null, 2), secrets) + "\n");
  else if (report.connections.length === 0) {
    deps.write(`No connection has state in ${deps.store.location} yet.\n`);
  } else deps.write(redact(formatStatusTable(report), secrets) + "\n");
  if (!config.check) return EXIT.ok;
  const problems = report.connections.flatMap((entry, i) => {
    const problem = _checkProblem(entry, rows[i]!.state === undefined, deps.store.location);
    return problem === undefined ? [] : [redact(problem, secrets)];
  });
  for (const problem of problems) deps.logger.error(problem);
  return problems.length > 0 ? EXIT.failed : EXIT.ok;
}

/**
 * Why `entry` fails `--check`, or undefined when it passes: behind its threshold, or never
 * complete (no `fresh_as_of`: nothing is known to be in Ometria), or not in the state at all.
 */
function _checkProblem(
  entry: StatusEntry,
  stateless: boolean,
  location: string,
): string | undefined {
  if (stateless) {
    return `status --check: ${entry.id} has no state in ${location}: it never synced there, ` +
      "or it is not a connection or list id of that state.";
  }
  if (entry.behind) {
    return `status --check: ${entry.id} is behind: lag ${formatLag(entry.lag_seconds)} of ` +
      `${formatLag(entry.threshold_seconds)}.`;
  }
  if (entry.fresh_as_of === null) {
    return `status --check: ${entry.id} has never completed a sync (status ${entry.status}${
      entry.last_error === null ? "" : `: ${entry.last_error}`
    }).`;
  }
  if (entry.quarantined > 0) {
    return `status --check: ${entry.id} holds ${entry.quarantined} member(s) in quarantine, ` +
      "not in Ometria as they are in Mailchimp (see status for why); every run tries them again.";
  }
  return undefined;
}
