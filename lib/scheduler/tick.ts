/**
 * One tick: decide which connections are due, then run them, closest to their threshold
 * first, at most `concurrency` at a time. Knows nothing about HTTP: the caller hands in how
 * to count changes and how to run one connection.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import type { RunResult } from "../engine/run_connection.ts";
import type { ConnectionState } from "../state/schema.ts";
import type { StateStore } from "../state/store.ts";
import { deadlineOf, decideDue, type DueDecision } from "./due.ts";
import { errorText } from "../log/error_text.ts";

/** A connection as the scheduler sees it. */
export interface ScheduledConnection {
  id: string;
  listId: string;
  thresholdSeconds: number;
}

/** Options of {@linkcode tick}. */
export interface TickOptions<C extends ScheduledConnection> {
  connections: readonly C[];
  store: StateStore;
  clock: Clock;
  logger: Logger;
  /** Runs at once (MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS). */
  concurrency: number;
  /** BULK_MEMBER_COUNT: more changes than this make a list due. */
  bulkMemberCount: number;
  minutesPerBulk: number;
  tickSeconds: number;
  /** `--force`: ignore the rules this tick. */
  force?: boolean;
  /** Counts members changed since a Mailchimp time. */
  countChanged(connection: C, sinceMs: number, signal?: AbortSignal): Promise<number>;
  /**
   * Runs one connection (the engine, through the connection's writer, which claims its
   * lease); undefined when another process holds the connection.
   */
  run(connection: C): Promise<RunResult | undefined>;
  /** The store's states as listed at the start of the tick (listed here when absent). */
  states?: readonly ConnectionState[];
  /** Stops starting new runs (graceful shutdown). */
  signal?: AbortSignal;
  /**
   * When each connection's changes were last counted; updated by the tick. Counting starts
   * with the connections counted longest ago, so when there are more of them than one tick
   * can count, every connection still gets its turn.
   */
  checkedAt?: Map<string, number>;
  /**
   * Time a tick may spend counting changes before it leaves the rest for the next tick, in
   * milliseconds. Counting costs one Mailchimp request per connection; with thousands of
   * connections on one key it must not make a tick overrun its interval.
   * @default {tickSeconds * 500} (half the interval)
   */
  checkBudgetMs?: number;
}

/** What one connection did in a tick. */
export type TickEntry =
  | { id: string; ran: true; reason: string; result: RunResult }
  | { id: string; ran: false; reason: string; error?: string };

/** What a tick did, per connection. */
export interface TickResult {
  entries: TickEntry[];
  /** True when any run failed or any due check failed. */
  failed: boolean;
}

async function _pool<T>(
  items: readonly T[],
  concurrency: number,
  signal: AbortSignal | undefined,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length && !signal?.aborted) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Why an idle connection did not run: counted in the tick's line, never a line each. */
const _IDLE = new Set(["fresh", "backoff", "check-deferred", "stopped"]);

/** Runs one tick over every connection; never throws for a single connection's failure. */
export async function tick<C extends ScheduledConnection>(
  options: TickOptions<C>,
): Promise<TickResult> {
  const { connections, store, clock, logger, signal } = options;
  const states = new Map((options.states ?? await store.list()).map((s) => [s.id, s]));
  const now = clock.now();
  const entries: TickEntry[] = [];
  const due: { connection: C; reason: string; deadline: number }[] = [];
  const checks: { connection: C; sinceMs: number }[] = [];

  for (const connection of connections) {
    const state = states.get(connection.id);
    const decision: DueDecision = decideDue(state, now, {
      thresholdSeconds: connection.thresholdSeconds,
      minutesPerBulk: options.minutesPerBulk,
      tickSeconds: options.tickSeconds,
    }, options.force);
    if (decision.kind === "due") {
      due.push({
        connection,
        reason: decision.reason,
        deadline: deadlineOf(state, connection.thresholdSeconds),
      });
    } else if (decision.kind === "check") {
      checks.push({ connection, sinceMs: decision.sinceMs });
    } else {
      entries.push({ id: connection.id, ran: false, reason: decision.reason });
    }
  }

  let failed = false;
  // Counting changes is one small Mailchimp request per connection; the per-key limiter in
  // the client keeps these within Mailchimp's connection limit.
  const checkedAt = options.checkedAt ?? new Map<string, number>();
  checks.sort((a, b) =>
    (checkedAt.get(a.connection.id) ?? -Infinity) - (checkedAt.get(b.connection.id) ?? -Infinity)
  );
  const checkDeadline = now + (options.checkBudgetMs ?? options.tickSeconds * 500);
  await _pool(checks, 10 * Math.max(1, options.concurrency), signal, async (check) => {
    if (clock.now() > checkDeadline) {
      entries.push({ id: check.connection.id, ran: false, reason: "check-deferred" });
      return;
    }
    checkedAt.set(check.connection.id, clock.now());
    try {
      const changed = await options.countChanged(check.connection, check.sinceMs, signal);
      if (changed > options.bulkMemberCount) {
        due.push({
          connection: check.connection,
          reason: "bulk",
          deadline: deadlineOf(states.get(check.connection.id), check.connection.thresholdSeconds),
        });
      } else {
        entries.push({ id: check.connection.id, ran: false, reason: "fresh" });
      }
    } catch (error) {
      failed = true;
      const message = errorText(error);
      logger.warning("Could not count changes of {connection}: {error}", {
        connection: check.connection.id,
        error: message,
      });
      entries.push({ id: check.connection.id, ran: false, reason: "check-failed", error: message });
    }
  });

  due.sort((a, b) => a.deadline - b.deadline);
  await _pool(due, options.concurrency, signal, async ({ connection, reason }) => {
    // One connection's trouble (even a store that refuses a write) never ends the tick for
    // the others.
    try {
      logger.debug("Starting a run of {connection} ({reason})", {
        connection: connection.id,
        reason,
      });
      // The run records its own outcome, backoff included (state/transitions.ts).
      const result = await options.run(connection);
      if (result === undefined) {
        entries.push({ id: connection.id, ran: false, reason: "held-elsewhere" });
        return;
      }
      if (result.outcome === "failed") failed = true;
      entries.push({ id: connection.id, ran: true, reason, result });
    } catch (error) {
      failed = true;
      logger.error("The run of {connection} could not finish: {error}", {
        connection: connection.id,
        error: errorText(error),
      });
      entries.push({
        id: connection.id,
        ran: false,
        reason: "run-crashed",
        error: errorText(error),
      });
    }
  });
  await store.flush();
  // A stop signal ends both pools before they reach every connection: those never got an
  // entry, and without one the summary would call them none ("0 not run").
  const seen = new Set(entries.map((e) => e.id));
  for (const c of connections) {
    if (!seen.has(c.id)) entries.push({ id: c.id, ran: false, reason: "stopped" });
  }
  const ran = entries.filter((e) => e.ran);
  // One line per tick, however many connections: an idle daemon with many lists would
  // otherwise write a line per list per minute. Why the others did not run is counted.
  const notRun = new Map<string, number>();
  for (const e of entries) if (!e.ran) notRun.set(e.reason, (notRun.get(e.reason) ?? 0) + 1);
  logger.info(
    "Tick: {ran} run(s) ({failedRuns} failed) of {total} connection(s); {waiting} not run{why}",
    {
      ran: ran.length,
      failedRuns: ran.filter((e) => e.ran && e.result.outcome === "failed").length,
      total: connections.length,
      waiting: entries.length - ran.length,
      why: notRun.size === 0
        ? ""
        : ` (${[...notRun].map(([reason, count]) => `${reason}: ${count}`).join(", ")})`,
      not_run: Object.fromEntries(notRun),
    },
  );
  for (const e of entries) {
    // The unusual reasons, one line each: another process holding a list is worth seeing.
    if (!e.ran && !_IDLE.has(e.reason)) {
      logger.debug("{connection} not run: {reason}", { connection: e.id, reason: e.reason });
    }
  }
  return { entries, failed };
}
