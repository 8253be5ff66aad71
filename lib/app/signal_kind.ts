/**
 * Telling a user's second Ctrl-C from a second copy of the first. On Linux, Ctrl-C under
 * `deno task sync` reaches the program twice within a millisecond or so: the terminal
 * signals the whole foreground process group, and `deno task` forwards the SIGINT it got
 * to its child as well (denoland/deno#27141; measured: two deliveries 0.5–1.1 ms apart). A
 * person cannot press Ctrl-C twice that fast on purpose, so a signal that arrives within
 * {@linkcode DUPLICATE_SIGNAL_MS} of the first is the same event.
 *
 * @module
 */

/**
 * How long after the first signal another one still counts as a copy of it: far above the
 * milliseconds between the two deliveries, even on a loaded machine, and short enough
 * that a user who wants out at once hardly waits.
 */
export const DUPLICATE_SIGNAL_MS = 1_000;

/**
 * What a stop signal arriving at `now` is, given when the first one arrived (undefined
 * before any): `"first"`, a `"duplicate"` of it (to ignore), or a deliberate `"again"`.
 * Times are milliseconds on one monotonic clock.
 */
export function signalKind(
  firstAt: number | undefined,
  now: number,
): "first" | "duplicate" | "again" {
  if (firstAt === undefined) return "first";
  return now - firstAt < DUPLICATE_SIGNAL_MS ? "duplicate" : "again";
}
