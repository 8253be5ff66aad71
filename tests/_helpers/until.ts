/**
 * Waiting, in the tests that have to, for something the fake clock does not move: a
 * subprocess's output, a simulator's counters over real HTTP, a daemon's first tick.
 *
 * @module
 */

/** Options of {@linkcode until}. */
export interface UntilOptions {
  /** Real time after which the wait fails. @default {20_000} */
  timeoutMs?: number;
  /** Real time between two looks at the condition. @default {10} */
  intervalMs?: number;
  /** What else the failure should show (a child's standard error so far, say). */
  detail?: () => string;
}

/**
 * Resolves once `condition` holds, looking again every `intervalMs` of real time, and throws
 * `timed out waiting for <what>` (with the detail, if any) once `timeoutMs` has passed. Only
 * for waits on real processes and sockets: what a fake clock can move, the test moves.
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  options: UntilOptions = {},
): Promise<void> {
  const { timeoutMs = 20_000, intervalMs = 10, detail } = options;
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${detail ? `:\n${detail()}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
