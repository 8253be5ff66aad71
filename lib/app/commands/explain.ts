/**
 * `explain <email|subscriber-hash> [--connection id] [--ometria] [--json]`: what this
 * program knows about one member, per connection (engine/explain.ts), read without writing
 * anything (main.ts opens a state file read-only). The address given is never logged and is
 * shown masked; what the command says names the member by its subscriber hash.
 *
 * @module
 */
import { type Config, configSecrets } from "../../config/config.ts";
import { explainMember, type Explanation } from "../../engine/explain.ts";
import { errorText } from "../../log/error_text.ts";
import { type CliDeps, EXIT } from "./cli_deps.ts";
import { serviceFor } from "./shared.ts";

/**
 * Explains the member on every chosen connection and writes the result. Exit 0 when it
 * could be explained on each, 1 when Mailchimp (or the state) could not be read for one, 3
 * when stopped by a signal. Bad input is the config's (exit 2).
 */
export async function explainCommand(config: Config, deps: CliDeps): Promise<number> {
  const request = config.explain;
  if (request === undefined) throw new RangeError("Cannot run explain without a member");
  const secrets = [
    ...configSecrets(config),
    ...(deps.secrets ?? []),
    ...(request.email ? [request.email] : []),
  ];
  const service = serviceFor(config, deps);
  const results: (Explanation | { connection: string; error: string })[] = [];
  try {
    for (const c of config.connections) {
      if (deps.stop.aborted) return EXIT.interrupted;
      try {
        const state = await deps.store.get(c.id);
        const ledger = deps.store.ledger(c.id).load();
        results.push(
          await explainMember({
            reader: service.reader(c.id, () => ledger, deps.stop),
            state,
            table: await ledger,
            memberId: request.memberId,
            email: request.email,
            ometria: request.ometria,
            signal: deps.stop,
          }),
        );
      } catch (error) {
        if (deps.stop.aborted) return EXIT.interrupted;
        results.push({ connection: c.id, error: errorText(error, secrets) });
      }
    }
  } finally {
    await service.close();
  }
  deps.write(
    config.json
      ? `${JSON.stringify({ member_id: request.memberId, connections: results }, null, 2)}\n`
      : results.map((r) =>
        "error" in r ? `${r.connection}: cannot explain: ${r.error}\n` : _text(r)
      )
        .join("\n"),
  );
  return results.some((r) => "error" in r) ? EXIT.failed : EXIT.ok;
}

/** One connection's explanation, for a person. */
function _text(e: Explanation): string {
  const lines = [`${e.connection} (list ${e.list_id}), member ${e.member_id}`];
  const m = e.mailchimp;
  if (m.found) {
    lines.push(
      `  Mailchimp: ${m.member.status}, ${m.member.email_address}, last changed ` +
        `${m.member.last_changed} (read at ${m.read_at ?? "an unknown time"})`,
    );
    lines.push(`    merge fields: ${JSON.stringify(m.member.merge_fields)}`);
  } else {
    lines.push(
      m.reason === "gone"
        ? "  Mailchimp: no such member (404): never on this list, deleted permanently, or its address changed"
        : `  Mailchimp: served malformed: ${m.detail}`,
    );
  }
  if (e.mapped.record !== null) {
    lines.push(
      `  Record a run would send (hash ${e.mapped.hash}): ${JSON.stringify(e.mapped.record)}`,
    );
  } else if (e.mapped.unmappable !== null) {
    lines.push(`  Record: cannot be mapped (a run holds the member): ${e.mapped.unmappable}`);
  }
  lines.push(`  Ledger: ${_ledgerText(e)}`);
  const q = e.quarantine;
  lines.push(
    q === null
      ? "  Quarantine: not held"
      : `  Quarantine: held since ${q.first_seen_at}, tried ${q.attempts} time(s), last ${q.last_tried_at}: ${q.reason}`,
  );
  lines.push(
    e.erasure === "unknown"
      ? "  Erasure: give the address instead of the hash to look it up (erasures are kept under a salted hash of it)"
      : e.erasure === null
      ? "  Erasure: none open"
      : `  Erasure ${e.erasure.label}: ${e.erasure.status}, filed ${e.erasure.filed_at}, request ${
        e.erasure.request_id ?? e.erasure.api_request_id ?? "unnamed"
      }, Mailchimp ${e.erasure.mailchimp}`,
  );
  if (e.ometria !== undefined) lines.push(`  Ometria: ${_ometriaText(e.ometria)}`);
  return lines.join("\n") + "\n";
}

function _ometriaText(o: NonNullable<Explanation["ometria"]>): string {
  if (!o.available) return o.note;
  if (o.record === null) return "holds no such contact in the collection (missing)";
  const same = o.differ.length === 0 && o.absent.length === 0
    ? "equal to the record a run would send"
    : [
      o.differ.length > 0 ? `differs in ${o.differ.join(", ")}` : "",
      o.absent.length > 0 ? `does not show ${o.absent.join(", ")}` : "",
    ].filter((t) => t !== "").join("; ") + " (verify --repair sends the record again)";
  return `holds ${JSON.stringify(o.record)}: ${same}`;
}

function _ledgerText(e: Explanation): string {
  const l = e.ledger;
  if (l === null) return "never sent to Ometria by this program (no entry)";
  const what = l.gone ? "the opt-out of a member gone from Mailchimp" : "the record";
  const said = `sent ${what} of version ${l.sent_version ?? "unknown"} (hash ${
    l.hash || "unknown"
  }), ${l.acked ? "acknowledged by Ometria" : "NOT acknowledged by Ometria"}`;
  if (l.same_as_now === null) return said;
  return `${said}; ${
    l.same_as_now ? "equal to" : `different from (${l.cause?.replaceAll("_", " ")})`
  } the record now, so the next run that reads the member ${
    l.next_run === "unchanged" ? "skips it (unchanged)" : "sends it"
  }`;
}
