/**
 * The tick schedule: a cron expression from `SYNC_SCHEDULE`, else derived from
 * `POLLING_TIME_IN_SECONDS`, validated in full (ranges included) with croner so that a
 * schedule `Deno.cron` would refuse is a configuration error, not a crash at start.
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";
import { Cron } from "croner";
import { DEFAULT_POLLING_SECONDS } from "./defaults.ts";

function _nearest(value: number, choices: readonly number[]): number {
  // Ties go up, like Math.round.
  return choices.reduce((best, c) => Math.abs(c - value) <= Math.abs(best - value) ? c : best);
}

/**
 * The cron expression that ticks every `seconds` as closely as cron can, and the interval
 * it really gives in minutes. Cron steps restart at every hour (or day), so only divisors of
 * 60 minutes (or 24 hours) give evenly spaced ticks; "*\/7" would tick at :56 and again at
 * :00. The nearest such interval is used (the caller warns when it differs).
 */
export function cronEvery(seconds: number): { minutes: number; cron: string } {
  const wanted = Math.max(1, seconds / 60);
  if (wanted < 45) {
    const minutes = _nearest(wanted, [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30]);
    return { minutes, cron: minutes === 1 ? "* * * * *" : `*/${minutes} * * * *` };
  }
  const hours = _nearest(wanted / 60, [1, 2, 3, 4, 6, 8, 12, 24]);
  const cron = hours === 1 ? "0 * * * *" : hours === 24 ? "0 0 * * *" : `0 */${hours} * * *`;
  return { minutes: hours * 60, cron };
}

// Deno.cron takes five fields of numbers, ranges, lists and steps (no names, no L/W/#):
// the shape is checked here, the ranges by croner.
const _CRON_FIELD = /^(\*|\d+(-\d+)?)(\/\d+)?(,(\*|\d+(-\d+)?)(\/\d+)?)*$/;

/**
 * What is wrong with a cron expression for `SYNC_SCHEDULE`, or undefined when `Deno.cron`
 * can run it: five fields (minute, hour, day, month, weekday) of numbers, ranges, lists and
 * steps, every value within its field's range.
 */
export function cronProblem(text: string): string | undefined {
  const fields = text.trim().split(/\s+/);
  const example = 'e.g. "*/5 * * * *" (minute, hour, day, month, weekday; UTC)';
  if (fields.length !== 5 || !fields.every((f) => _CRON_FIELD.test(f))) {
    return `SYNC_SCHEDULE must be a five-field cron expression of numbers, ranges, lists and steps, ${example}; it is "${text.trim()}".`;
  }
  try {
    new Cron(text.trim(), { paused: true }).stop();
  } catch (error) {
    const why = errorText(error)
      .replace(/^CronPattern:\s*/, "");
    return `SYNC_SCHEDULE "${text.trim()}" is not a valid cron expression (${why}); use ${example}.`;
  }
  return undefined;
}

/**
 * The cron schedule of the ticks from the environment alone (SYNC_SCHEDULE, else
 * POLLING_TIME_IN_SECONDS rounded to what cron can express). Synchronous, for Deno Deploy,
 * where a cron must be registered before anything is awaited.
 */
export function scheduleFromEnv(env: Record<string, string | undefined>): string {
  const explicit = env.SYNC_SCHEDULE?.trim();
  if (explicit) return explicit;
  const seconds = Number(env.POLLING_TIME_IN_SECONDS ?? DEFAULT_POLLING_SECONDS);
  return cronEvery(Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_POLLING_SECONDS)
    .cron;
}
