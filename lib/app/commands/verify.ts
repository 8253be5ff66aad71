/**
 * `verify [ids…] [--sample N] [--repair] [--connection id] [--json]`: reads back what Ometria
 * holds for each connection's collection (its Contact API) and compares it field by field,
 * through the mapping, with Mailchimp's members (engine/verify.ts); prints, per connection,
 * the members missing, the stale ones with their fields and the extra contacts, a few of
 * each. `--repair` pushes the differences through the connection's writer.
 *
 * @module
 */
import type { Config } from "../../config/config.ts";
import type { VerifyOutcome } from "../sync_service.ts";
import { type CliDeps, EXIT } from "./cli_deps.ts";
import { _alertsFor, _drainAlerts, _fieldMappingsFit, serviceFor } from "./shared.ts";

/** Examples of each kind of difference shown per connection. */
const _EXAMPLES = 5;

/**
 * Verifies the configured connections, writing a report for each (text, or one JSON
 * document with `--json`). Exit 0 when Ometria matched Mailchimp everywhere, 1 when anything
 * differed (repaired or not), a verify failed or a connection could not be repaired, 2 for a
 * field mapping the list does not fit, 3 when stopped by a signal. (A connection on the
 * legacy endpoint, which has no Contact API, is refused by the config: exit 2.)
 */
export async function verifyCommand(config: Config, deps: CliDeps): Promise<number> {
  const alerts = _alertsFor(config, deps);
  const service = serviceFor(config, deps, { alerts });
  try {
    if (!(await _fieldMappingsFit(service, deps))) return EXIT.usage;
    const outcomes = await service.verify(config.connections.map((c) => c.id), {
      sample: config.verify?.sample,
      repair: config.verify?.repair ?? false,
      signal: deps.stop,
    });
    deps.write(config.json ? `${JSON.stringify(_json(outcomes), null, 2)}\n` : _text(outcomes));
    if (deps.stop.aborted) return EXIT.interrupted;
    return outcomes.some((o) => o.outcome !== "ok" || _differences(o) > 0) ? EXIT.failed : EXIT.ok;
  } finally {
    await service.close();
    await deps.store.flush();
    await _drainAlerts(alerts, deps);
  }
}

function _differences(o: VerifyOutcome): number {
  const r = o.report;
  return r ? r.missing.length + r.stale.length + r.extra.length : 0;
}

/** The report as text: a line per connection, then a few examples of each difference. */
function _text(outcomes: readonly VerifyOutcome[]): string {
  let out = "";
  for (const o of outcomes) {
    const r = o.report;
    if (r === undefined) {
      out += `${o.id}: verify failed: ${o.error ?? o.outcome}\n`;
      continue;
    }
    const what = r.mode === "full"
      ? `full verify of ${r.checked} member(s) and ${r.ometriaContacts} Ometria contact(s)`
      : `sampled verify of ${r.checked} member(s) at random`;
    const n = _differences(o);
    out += n === 0
      ? `${o.id}: ${what}: Ometria matches Mailchimp\n`
      : `${o.id}: ${what}: ${r.missing.length} missing, ${r.stale.length} stale, ` +
        `${r.mode === "full" ? `${r.extra.length} extra` : "extra not checked (sample)"}\n`;
    for (const s of r.stale.slice(0, _EXAMPLES)) {
      out += `  stale   ${s.id}: ${s.fields.join(", ")}\n`;
    }
    for (const id of r.missing.slice(0, _EXAMPLES)) out += `  missing ${id}\n`;
    for (const id of r.extra.slice(0, _EXAMPLES)) out += `  extra   ${id}\n`;
    if (r.notReturned.length > 0) {
      out += `  not compared (Ometria's Contact API did not return them): ` +
        `${r.notReturned.join(", ")}\n`;
    }
    if (r.pending > 0) {
      out +=
        `  ${r.pending} member(s) changed since the last run differ: polling sends them next\n`;
    }
    if (r.unconfirmed > 0) {
      out += `  ${r.unconfirmed} difference(s) as listed, not read again one by one\n`;
    }
    if (o.repair) {
      out += `  repaired: ${o.repair.pushed} pushed, ${o.repair.optedOut} opted out` +
        `${
          o.repair.rejected > 0 ? `, ${o.repair.rejected} refused by Ometria (quarantined)` : ""
        }` +
        `; run verify again to confirm\n`;
    } else if (o.outcome === "held") {
      out +=
        "  not repaired: another process is running this connection; run it there or stop it\n";
    } else if (o.outcome === "failed") {
      out += `  repair failed: ${o.error}\n`;
    } else if (n > 0) {
      out += "  run verify --repair to push the differences\n";
    }
  }
  return out;
}

/** The report for machines: every count, a few examples, the requests made. */
function _json(outcomes: readonly VerifyOutcome[]) {
  return {
    connections: outcomes.map((o) => {
      const r = o.report;
      return {
        id: o.id,
        outcome: o.outcome,
        equal: r !== undefined && o.outcome === "ok" && _differences(o) === 0,
        mode: r?.mode ?? null,
        checked: r?.checked ?? null,
        ometria_contacts: r?.ometriaContacts ?? null,
        missing: r ? { count: r.missing.length, examples: r.missing.slice(0, _EXAMPLES) } : null,
        stale: r ? { count: r.stale.length, examples: r.stale.slice(0, _EXAMPLES) } : null,
        extra: r && r.mode === "full"
          ? { count: r.extra.length, examples: r.extra.slice(0, _EXAMPLES) }
          : null,
        fields: o.summary?.fields ?? [],
        not_returned: r?.notReturned ?? [],
        unconfirmed: r?.unconfirmed ?? 0,
        pending: r?.pending ?? 0,
        repaired: o.repair
          ? { pushed: o.repair.pushed, opted_out: o.repair.optedOut, rejected: o.repair.rejected }
          : null,
        requests: r ? { mailchimp: r.mailchimpRequests, ometria: r.ometriaRequests } : null,
        error: o.error ?? null,
      };
    }),
  };
}
