/**
 * `reset <ids…> [--repush]`: forgets watermarks and checkpoints, so the next run is a full
 * sync. The content ledger stays, so that run sends only members whose record differs from
 * what Ometria acknowledged (the others count as `unchanged`). With `--repush` the state
 * also remembers (`repush_pending`) that the next run must send every member: whichever
 * process runs the connection next (`--once`, the daemon, the Deploy cron) reads the flag
 * under the connection's lease, and the run that completes its window clears it.
 *
 * @module
 */
import type { Config } from "../../config/config.ts";
import { record } from "../../state/transitions.ts";
import { type CliDeps, EXIT } from "./cli_deps.ts";

/**
 * Resets every connection matching an id (connection or list id); returns 1 when an id had
 * no state (the known ones are still reset), else 0.
 */
export async function resetCommand(config: Config, deps: CliDeps): Promise<number> {
  const states = await deps.store.list();
  let missing = 0;
  for (const id of config.listIds) {
    const matches = states.filter((s) => s.id === id || s.list_id === id);
    if (matches.length === 0) {
      deps.write(`${id}: no state in ${deps.store.location}; nothing to reset.\n`);
      missing++;
      continue;
    }
    for (const s of matches) {
      // A reset is a write like any other: only under the connection's lease.
      const lease = await deps.store.acquire(s.id);
      if (!lease) {
        deps.write(`${s.id}: another process is running it now; try again when it is done.\n`);
        missing++;
        continue;
      }
      try {
        await record(
          deps.store,
          { id: s.id, listId: s.list_id },
          { type: "reset", repush: config.repush },
          lease.fence,
        );
      } finally {
        await lease.release();
      }
      deps.write(
        config.repush
          ? `${s.id}: watermark forgotten; the next run reads the whole list and sends every member (--repush).\n`
          : `${s.id}: watermark forgotten; the next run reads the whole list and sends the members whose record changed since Ometria acknowledged it (reset --repush sends all).\n`,
      );
    }
  }
  await deps.store.flush();
  // The known ones are reset; an unknown id is still a mistake worth a non-zero exit.
  return missing > 0 ? EXIT.failed : EXIT.ok;
}
