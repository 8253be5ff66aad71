/**
 * What every command is handed and what it hands back: {@linkcode CliDeps} from the process
 * (`main.ts`, or a Deploy tick), and an {@linkcode EXIT} code instead of exiting. Its own
 * module so that the dispatcher (cli.ts) and each command import it without importing each
 * other.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../../clock/clock.ts";
import type { StateStore } from "../../state/store.ts";
import type { TerminalLine } from "../progress.ts";

/**
 * Exit codes: 0 all good, 1 a list failed (or is behind, for `status --check`), 2 usage,
 * configuration or state error, 3 a `--once` run stopped by SIGINT/SIGTERM before it
 * finished (its checkpoint is kept; the next run resumes), so a stopped run never reads as
 * "everything synced".
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 3 } as const;

/** A cron registration function with `Deno.cron`'s shape. */
export type CronFn = (
  name: string,
  schedule: string,
  options: { signal?: AbortSignal },
  handler: () => Promise<void>,
) => Promise<void>;

/** What the commands need from the process. */
export interface CliDeps {
  clock: Clock;
  logger: Logger;
  fetch: typeof globalThis.fetch;
  store: StateStore;
  /** Writes to standard output (status output, summaries). */
  write: (text: string) => void;
  /** Schedules ticks (Deno.cron). */
  cron: CronFn;
  /** Aborted on the first SIGINT/SIGTERM: start nothing new, finish what is in flight. */
  stop: AbortSignal;
  /** Aborted when the grace period is over: abandon requests in flight. */
  hardStop: AbortSignal;
  /**
   * The live line, when standard output and standard error are one terminal: `--once` then
   * draws its progress there (log lines are written around it).
   */
  terminal?: TerminalLine | undefined;
  /**
   * Every secret the process knows (the configured keys and tokens, and those in the
   * environment), taken out of what a command writes.
   * @default {[]}
   */
  secrets?: readonly string[] | undefined;
}
