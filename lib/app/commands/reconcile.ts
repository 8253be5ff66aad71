/**
 * `reconcile [ids…]`: compares each list's ids in Mailchimp with those pushed to Ometria now,
 * opts out orphans and pushes members polling missed (ARCHITECTURE.md, "Reconciliation
 * policy").
 *
 * @module
 */
import type { Config } from "../../config/config.ts";
import { type CliDeps, EXIT } from "./cli_deps.ts";
import { _alertsFor, _drainAlerts, _fieldMappingsFit, serviceFor } from "./shared.ts";

/**
 * Reconciles the configured connections (all of them when no id is given), writing a line
 * for each. Exit 0 when every reconciliation finished, 1 when one failed, 2 for a field
 * mapping the list does not fit, 3 when stopped by a signal.
 */
export async function reconcileCommand(config: Config, deps: CliDeps): Promise<number> {
  const alerts = _alertsFor(config, deps);
  const service = serviceFor(config, deps, { alerts });
  try {
    if (!(await _fieldMappingsFit(service, deps))) return EXIT.usage;
    const results = await service.reconcile(config.connections.map((c) => c.id), deps.stop);
    for (const r of results) {
      const s = r.summary;
      deps.write(
        s === undefined
          ? `${r.id}: ${r.outcome}${r.error ? `: ${r.error}` : ""}\n`
          : r.seeded
          ? `${r.id}: ledger started from Mailchimp's ${s.mailchimp_members} member id(s)\n`
          : `${r.id}: ${s.mailchimp_members} in Mailchimp, ${s.ledger_members} pushed before, ` +
            `${s.orphans} orphan(s) opted out, ${s.missing} missing and ${s.stale} stale ` +
            `member(s) pushed, ${s.ahead} newer than the watermark pushed early\n`,
      );
    }
    const skipped = config.connections.length - results.length;
    if (skipped > 0) {
      deps.write(`${skipped} connection(s) skipped: another process is running them.\n`);
    }
    if (deps.stop.aborted) return EXIT.interrupted;
    return results.some((r) => r.outcome !== "ok") ? EXIT.failed : EXIT.ok;
  } finally {
    await service.close();
    await deps.store.flush();
    await _drainAlerts(alerts, deps);
  }
}
