/**
 * `erase <email…> [--connection id] [--mailchimp]` and `erase --status`: data-protection
 * erasures (engine/erasure.ts). The addresses live in memory only: what is written names each
 * by its place on the command line and its erasure's label (a salted hash's first digits).
 *
 * @module
 */
import { type Config, configSecrets } from "../../config/config.ts";
import { erasureLabel, isOverdue } from "../../engine/erasure.ts";
import type { EraseResult } from "../../engine/erasure.ts";
import { errorText } from "../../log/error_text.ts";
import type { ConnectionState } from "../../state/schema.ts";
import { type CliDeps, EXIT } from "./cli_deps.ts";
import { serviceFor } from "./shared.ts";

/**
 * Files the erasures asked for (each address on every chosen connection) and writes a line
 * for each, or lists the open erasures with `--status` (after asking Ometria when the keys
 * are there). Exit 0 when every erasure was filed (or, with `--status`, none is overdue), 1
 * otherwise, 3 when stopped by a signal.
 */
export async function eraseCommand(config: Config, deps: CliDeps): Promise<number> {
  const request = config.erase;
  if (request === undefined) throw new RangeError("Cannot run erase without an erase request");
  const secrets = [...configSecrets(config), ...(deps.secrets ?? []), ...request.emails];
  const service = serviceFor(config, deps);
  const ids = config.connections.map((c) => c.id);
  try {
    if (request.status) {
      if (ids.length > 0 && config.connections.every((c) => c.ometria.apiKey !== "")) {
        await service.checkErasures(ids, deps.stop);
      }
      return _listErasures(await deps.store.list(), new Set(ids), deps);
    }
    let failed = false;
    try {
      const outcomes = await service.erase(request.emails, {
        ids,
        mailchimp: request.mailchimp,
        signal: deps.stop,
      });
      for (const outcome of outcomes) {
        if (outcome.held) {
          failed = true;
          deps.write(
            `${outcome.id}: another process is running it now; try again when it is done.\n`,
          );
          continue;
        }
        for (const [i, r] of outcome.results.entries()) {
          failed ||= r.ometria === "failed";
          deps.write(`${outcome.id}: address ${i + 1}: ${_said(r)}\n`);
        }
      }
    } catch (error) {
      if (deps.stop.aborted) return EXIT.interrupted;
      deps.write(
        `erase failed: ${errorText(error, secrets)}. Run it again: what was done stays done.\n`,
      );
      return EXIT.failed;
    }
    if (deps.stop.aborted) return EXIT.interrupted;
    return failed ? EXIT.failed : EXIT.ok;
  } finally {
    await service.close();
    await deps.store.flush();
  }
}

/** One erasure's line. */
function _said(r: EraseResult): string {
  const label = `erasure ${erasureLabel(r.identity)}`;
  if (r.ometria === "failed") {
    return `${label}: Ometria did not take the deletion request (${r.error}); run erase again for this address.`;
  }
  const request = r.filed?.id ?? r.filed?.apiRequestId ?? "unnamed";
  const member = r.mailchimp === "deleted"
    ? "Mailchimp member deleted permanently"
    : r.mailchimp === "not_found"
    ? "no Mailchimp member"
    : "the Mailchimp member is still there (without --mailchimp): the sync copies it to Ometria again at its next change or reconciliation, unless it is deleted in Mailchimp";
  return `${label} filed with Ometria (request ${request}, done within 14 days); ${member}; ` +
    "removed from the ledger.";
}

/** `erase --status`: every open erasure of the connections (all stored ones when none named). */
function _listErasures(
  states: readonly ConnectionState[],
  ids: ReadonlySet<string>,
  deps: CliDeps,
): number {
  const now = deps.clock.now();
  let overdue = 0;
  let shown = 0;
  for (const s of states) {
    if (ids.size > 0 && !ids.has(s.id)) continue;
    const e = s.erasures;
    if (e.open.length === 0 && e.completed === 0) continue;
    shown++;
    deps.write(
      `${s.id}: ${e.open.length} open erasure(s), ${e.completed} completed; ` +
        `last checked with Ometria ${e.checked_at ?? "never"}\n`,
    );
    for (const r of e.open) {
      const days = Math.floor((now - Date.parse(r.filed_at)) / 86_400_000);
      const late = isOverdue(r, now);
      if (late) overdue++;
      deps.write(
        `  ${erasureLabel(r.identity)}  ${r.status}  filed ${r.filed_at} (${days} day(s)${
          late ? ", OVERDUE" : ""
        })  request ${r.request_id ?? r.api_request_id ?? "unnamed"}  Mailchimp ${r.mailchimp}${
          r.error ? `  error: ${r.error}` : ""
        }\n`,
      );
    }
  }
  if (shown === 0) deps.write(`No erasure in ${deps.store.location}.\n`);
  return overdue > 0 ? EXIT.failed : EXIT.ok;
}
