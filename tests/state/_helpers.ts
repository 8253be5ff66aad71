/**
 * Shared pieces of the state tests: a temporary folder and a logger whose records the test
 * can read.
 *
 * @module
 */
import { configure, getLogger, type Logger, type LogRecord, reset } from "@logtape/logtape";
import { newConnectionState } from "../../lib/state/schema.ts";
import type { ConnectionState } from "../../lib/state/schema.ts";
import type { StateStore } from "../../lib/state/store.ts";

/** Stores `state` as it is (test set-up; the program itself only applies transitions). */
export function put(store: StateStore, state: ConnectionState): Promise<unknown> {
  return store.update(state.id, () => state);
}

/** Runs `fn` with a fresh temporary folder, removed afterwards. */
export async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "state_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `fn` with a real logtape logger whose records are collected into `records`. */
export async function withLogger(
  fn: (logger: Logger, records: LogRecord[]) => Promise<void>,
): Promise<void> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { collect: (record) => records.push(record) },
    loggers: [
      { category: ["state-test"], sinks: ["collect"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  try {
    await fn(getLogger(["state-test"]), records);
  } finally {
    await reset();
  }
}

/** The text of a log record with its properties filled in. */
export function renderRecord(record: LogRecord): string {
  return record.message.map((part) => String(part)).join("");
}

/** A connection state with a few fields set, for round trips. */
export function sampleState(id: string, watermark = "2026-01-01T00:00:00+00:00"): ConnectionState {
  return {
    ...newConnectionState(id, `list-${id}`),
    watermark,
    fresh_as_of: watermark,
    status: "ok",
    run: {
      upper: "2026-01-01T01:00:00+00:00",
      cursor: watermark,
      started_at: "2026-01-01T01:00:05.000Z",
      read: 10,
      pushed: 9,
      rejected: 1,
    },
  };
}

/**
 * A seeded generator of numbers in [0, 1) (mulberry32), for property tests: a failure names
 * its seed, so the same sequence can be run again.
 */
export function seededRandom(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
