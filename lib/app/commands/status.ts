/**
 * `status [--json] [--check] [ids…]`: per connection its freshness and last run, read from
 * the store as it is saved (the same rows as the status page and Deploy's `/status.json`).
 *
 * @module
 */
import type { Config } from "../../config/config.ts";
import { buildStatusReport, formatStatusTable, statusRows } from "../../freshness/status_report.ts";
import { type CliDeps, EXIT } from "./cli_deps.ts";

/**
 * Writes the report (a table, or JSON with `--json`) and returns 0, or 1 with `--check` when
 * a connection is behind. Ids named but without state are shown as never synced.
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
  if (config.json) deps.write(JSON.stringify(report, null, 2) + "\n");
  else if (report.connections.length === 0) {
    deps.write(`No connection has state in ${deps.store.location} yet.\n`);
  } else deps.write(formatStatusTable(report) + "\n");
  if (config.check && report.connections.some((c) => c.behind)) return EXIT.failed;
  return EXIT.ok;
}
