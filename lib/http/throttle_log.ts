/**
 * One API's rate limiting (429 answers) told once, with counts, instead of a warning per
 * retry: a storm on ten connections in flight otherwise writes a hundred near-identical
 * lines in fifteen seconds, which hide everything else and say nothing the counts do not.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";

/** Options of {@linkcode ThrottleLog}. */
export interface ThrottleLogOptions {
  /** The API's name, first word of every line, e.g. `Mailchimp`. */
  api: string;
  logger: Logger;
  clock: Clock;
  /**
   * Time without a 429 after which an answer ends the storm (and its last line is logged).
   * @default {10_000}
   */
  quietMs?: number;
  /** Least time between two "still rate limiting" lines of one storm. @default {60_000} */
  reminderMs?: number;
}

/**
 * Follows one client's 429s: the first of a storm is a warning (what was throttled, how
 * long it waits, that the pace goes down), a long storm gets a reminder a minute with its
 * counts, and the first answer after a quiet spell ends it with the totals. One per client,
 * shared by all its requests.
 */
export class ThrottleLog {
  readonly #o: ThrottleLogOptions;
  #storm: { startedAt: number; lastAt: number; remindedAt: number; count: number } | undefined;

  constructor(options: ThrottleLogOptions) {
    this.#o = options;
  }

  /** Records a 429 answered to `endpoint`, retried after `delayMs`. */
  throttled(endpoint: string, delayMs: number): void {
    const { api, logger, clock } = this.#o;
    const now = clock.now();
    const storm = this.#storm;
    if (storm === undefined) {
      this.#storm = { startedAt: now, lastAt: now, remindedAt: now, count: 1 };
      logger.warn(
        "{api} is rate limiting requests (429 to {endpoint}): waiting {delayMs} ms and " +
          "slowing down; further 429s are counted, not logged one by one",
        { api, endpoint, delayMs, event: "throttle.started" },
      );
      return;
    }
    storm.count++;
    storm.lastAt = now;
    logger.debug("{api} {endpoint} rate limited again, retrying in {delayMs} ms", {
      api,
      endpoint,
      delayMs,
    });
    if (now - storm.remindedAt >= (this.#o.reminderMs ?? 60_000)) {
      storm.remindedAt = now;
      logger.warn("{api} is still rate limiting: {count} answers 429 in {seconds} s so far", {
        api,
        count: storm.count,
        seconds: Math.round((now - storm.startedAt) / 1000),
        event: "throttle.continues",
      });
    }
  }

  /** Records an answer that was not a 429; ends a storm that has been quiet long enough. */
  answered(): void {
    const storm = this.#storm;
    if (storm === undefined) return;
    const now = this.#o.clock.now();
    if (now - storm.lastAt < (this.#o.quietMs ?? 10_000)) return;
    this.#storm = undefined;
    this.#o.logger.info("{api} rate limiting is over: {count} answers 429 in {seconds} s", {
      api: this.#o.api,
      count: storm.count,
      seconds: Math.round((storm.lastAt - storm.startedAt) / 1000),
      event: "throttle.ended",
    });
  }
}
