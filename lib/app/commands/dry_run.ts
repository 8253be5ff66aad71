/**
 * `sync --dry-run [--json]`: for each connection, what a run would push now (new, changed
 * and why, opted out, unchanged), without writing to Ometria or the state: no lease is
 * taken, the state and the ledger are read as saved (main.ts opens a state file read-only,
 * without its lock), and Mailchimp is only read. See engine/dry_run.ts for what is counted.
 *
 * @module
 */
import { type Config, configSecrets } from "../../config/config.ts";
import { dryRun, type DryRunReport } from "../../engine/dry_run.ts";
import { errorText } from "../../log/error_text.ts";
import { type CliDeps, EXIT } from "./cli_deps.ts";
import { _fieldMappingsFit, serviceFor } from "./shared.ts";

/** What `--dry-run --json` prints. */
export interface DryRunOutput {
  /** Always true: nothing was written. */
  dry_run: true;
  connections: (DryRunReport | { id: string; list_id: string; error: string })[];
  /** What `examples.changed[].fields` can and cannot say. */
  fields_note: string;
}

/** Why changed fields are not named (the ledger holds a hash, not the record). */
export const FIELDS_NOTE = "The ledger keeps one 8-byte hash of each record as sent, not the " +
  "record, so which fields changed cannot be named from it (fields: null); each changed " +
  "example says why its hash differs (cause). Comparing field by field needs Ometria's copy.";

/**
 * Runs the dry run over the configured connections and writes the report. Exit 0 when every
 * connection could be read, 1 when one could not, 2 for a field mapping the list does not
 * fit, 3 when stopped by a signal.
 */
export async function dryRunCommand(config: Config, deps: CliDeps): Promise<number> {
  const secrets = [...configSecrets(config), ...(deps.secrets ?? [])];
  const service = serviceFor(config, deps);
  try {
    if (!(await _fieldMappingsFit(service, deps))) return EXIT.usage;
    const output: DryRunOutput = { dry_run: true, connections: [], fields_note: FIELDS_NOTE };
    for (const c of config.connections) {
      if (deps.stop.aborted) return EXIT.interrupted;
      try {
        const state = await deps.store.get(c.id);
        const ledger = deps.store.ledger(c.id).load();
        output.connections.push(
          await dryRun({
            reader: service.reader(c.id, () => ledger, deps.stop),
            state,
            table: await ledger,
            pageSize: config.pageSize,
            signal: deps.stop,
          }),
        );
      } catch (error) {
        if (deps.stop.aborted) return EXIT.interrupted;
        output.connections.push({ id: c.id, list_id: c.listId, error: errorText(error, secrets) });
      }
    }
    deps.write(config.json ? `${JSON.stringify(output, null, 2)}\n` : _text(output));
    return output.connections.some((c) => "error" in c) ? EXIT.failed : EXIT.ok;
  } finally {
    await service.close();
  }
}

/** The report for a person: one paragraph per connection. */
function _text(output: DryRunOutput): string {
  const lines: string[] = [];
  for (const c of output.connections) {
    if ("error" in c) {
      lines.push(`${c.id}: cannot tell what a run would push: ${c.error}`);
      continue;
    }
    const send = c.new + c.changed + c.opted_out + (c.repush_pending ? c.unchanged : 0);
    lines.push(
      `${c.id}: a run would push ${send} record(s): ${c.new} new, ${c.changed} changed, ` +
        `${c.opted_out} opted out; ${c.unchanged} unchanged ${
          c.repush_pending ? "(sent too: a reset --repush is pending)" : "(not sent)"
        }; read ${c.read} member(s) ${
          c.since === null ? "(the whole list)" : `changed since ${c.since}`
        } in ${c.mailchimp_requests} Mailchimp request(s).`,
    );
    if (c.unreadable > 0) {
      lines.push(
        `  ${c.unreadable} member(s) would be held (malformed in Mailchimp or unmappable).`,
      );
    }
    if (c.quarantined > 0) {
      lines.push(`  ${c.quarantined} member(s) held in quarantine now are tried again by the run.`);
    }
    const e = c.examples;
    if (e.new.length > 0) lines.push(`  new: ${e.new.join(", ")}`);
    for (const x of e.changed) {
      lines.push(
        `  changed: ${x.id} (${x.cause.replaceAll("_", " ")}; sent version ${
          x.sent_version ?? "unknown"
        }, now ${x.version}${x.fields ? `; fields ${x.fields.join(", ")}` : ""})`,
      );
    }
    if (e.opted_out.length > 0) lines.push(`  opted out: ${e.opted_out.join(", ")}`);
    for (const x of e.unreadable) lines.push(`  held: ${x.id ?? "(no usable id)"}: ${x.reason}`);
  }
  if (output.connections.some((c) => !("error" in c) && c.changed > 0)) {
    lines.push(FIELDS_NOTE);
  }
  lines.push("Dry run: nothing was sent to Ometria and the state was not changed.");
  return lines.join("\n") + "\n";
}
