/**
 * A handful of connections in every state the status page distinguishes (fresh, nearly late,
 * behind and failing, failing since its first run, holding members, never run, receiving
 * webhooks), written into a store through the real transitions. The browser test and
 * `deno task screenshot` show this state.
 *
 * @module
 */
import { FakeClock } from "../_helpers/fake_clock.ts";
import { failedRun } from "../_helpers/run_events.ts";
import type { ConnectionConfig } from "../../lib/config/config.ts";
import type { StatusRow } from "../../lib/freshness/status_report.ts";
import { Metrics, type MetricsServer, serveMetrics } from "../../lib/metrics/metrics.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import { record } from "../../lib/state/transitions.ts";

/** The sample: its store, a clock standing at "now", and the status rows it gives. */
export interface StatusPageSample {
  store: MemoryStore;
  clock: FakeClock;
  /** The configured connections (in configuration order) with their stored state. */
  rows(): Promise<StatusRow[]>;
}

const _MIN = 60_000;

/** The connections of the sample, in configuration order: id, list id, threshold (s). */
export const SAMPLE_CONNECTIONS = [
  { id: "shop-uk", listId: "a1b2c3d4e5", threshold: 7200 },
  { id: "shop-eu", listId: "f6g7h8i9j0", threshold: 7200 },
  { id: "outlet", listId: "k1l2m3n4o5", threshold: 3600 },
  { id: "newsletter", listId: "p6q7r8s9t0", threshold: 7200 },
  { id: "vip-club", listId: "u1v2w3x4y5", threshold: 1800 },
  { id: "shop-de", listId: "z9y8x7w6v5", threshold: 7200 },
] as const;

/** The sample's connections as a config holds them (with keys that reach nothing). */
export function sampleConnectionConfigs(): ConnectionConfig[] {
  return SAMPLE_CONNECTIONS.map((c) => ({
    id: c.id,
    listId: c.listId,
    mailchimp: { apiKey: "mc-key-us9", baseUrl: "http://127.0.0.1:1/3.0" },
    ometria: { apiKey: "om-key", baseUrl: "http://127.0.0.1:2", endpoint: "push" as const },
    thresholdSeconds: c.threshold,
  }));
}

/** Builds the sample at `nowMs`; `shop-eu` is the one behind (its runs fail). */
export async function statusPageSample(
  nowMs = Date.UTC(2026, 0, 1, 12),
): Promise<StatusPageSample> {
  const store = new MemoryStore();
  const clock = new FakeClock(nowMs);
  const [uk, eu, outlet, _newsletter, vip, de] = SAMPLE_CONNECTIONS.map((c) => ({
    id: c.id,
    listId: c.listId,
    threshold: c.threshold,
  }));
  const ok = async (
    c: typeof uk,
    freshMinutesAgo: number,
    read: number,
    pushed: number,
    rejected = 0,
  ) => {
    const started = nowMs - (freshMinutesAgo - 1) * _MIN;
    await record(store, c!, {
      type: "run-started",
      at: nowMs - 7 * 24 * 60 * _MIN,
      thresholdSeconds: c!.threshold,
    });
    await record(store, c!, {
      type: "run-completed",
      upperMs: nowMs - freshMinutesAgo * _MIN,
      error: null,
      summary: {
        started_at: new Date(started).toISOString(),
        finished_at: new Date(started + 4_200).toISOString(),
        outcome: "ok",
        read,
        pushed,
        rejected,
        duration_ms: 4_200,
        mailchimp_requests: 3,
        ometria_requests: 2,
      },
    });
  };
  await ok(uk, 3, 1_204, 1_204);
  await record(store, uk!, {
    type: "webhook",
    at: nowMs - 20_000,
    firedAt: nowMs - 20_800,
    eventType: "profile",
  });

  await ok(eu, 190, 52_310, 52_310);
  await record(store, eu!, {
    type: "run-failed",
    at: nowMs - 4 * _MIN,
    run: null,
    error: "Mailchimp answered 503 Service Unavailable 5 times (GET /3.0/lists/f6g7h8i9j0/members)",
    summary: {
      started_at: new Date(nowMs - 5 * _MIN).toISOString(),
      finished_at: new Date(nowMs - 4 * _MIN).toISOString(),
      outcome: "failed",
      read: 0,
      pushed: 0,
      rejected: 0,
      duration_ms: 61_000,
      mailchimp_requests: 5,
      ometria_requests: 0,
    },
  });

  await ok(outlet, 50, 880, 877, 3);
  await record(store, outlet!, {
    type: "quarantine",
    at: nowMs - 50 * _MIN,
    add: [
      { id: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", reason: "Ometria rejected it: invalid email" },
      { id: "1a2b3c4d5e6f708192a3b4c5d6e7f809", reason: "record over 60 KB" },
      { id: null, reason: "Mailchimp served a member without an id" },
    ],
    release: [],
  });
  await record(store, outlet!, {
    type: "reconciled",
    summary: {
      at: new Date(nowMs - 6 * 60 * _MIN).toISOString(),
      mailchimp_members: 40_112,
      ledger_members: 40_124,
      orphans: 12,
      missing: 0,
      stale: 0,
      ahead: 0,
      adopted: 0,
      repaired: 12,
      orphan_ids: [],
    },
  });

  await ok(vip, 8, 96, 96);
  await record(store, vip!, {
    type: "webhook",
    at: nowMs - 3 * _MIN,
    firedAt: nowMs - 3 * _MIN - 2_400,
    eventType: "subscribe",
  });

  // Its first sync has failed since a new key was pasted: nothing of it is in Ometria yet.
  await record(store, de!, {
    type: "run-started",
    at: nowMs - 25 * _MIN,
    thresholdSeconds: de!.threshold,
  });
  await record(
    store,
    de!,
    failedRun(
      nowMs - 3 * _MIN,
      nowMs - 2 * _MIN,
      "Mailchimp rejected the API key (401): API Key Invalid. Check MAILCHIMP_KEY_DE",
    ),
  );

  return {
    store,
    clock,
    async rows() {
      const byId = new Map((await store.list()).map((s) => [s.id, s]));
      return SAMPLE_CONNECTIONS.map((c) => ({
        id: c.id,
        list_id: c.listId,
        threshold_seconds: c.threshold,
        state: byId.get(c.id),
      }));
    },
  };
}

/**
 * Serves the sample on a real metrics listener (port 0 on 127.0.0.1), as the daemon serves its
 * state: the status page, `/status.json` and `/metrics` with `metrics`' counters.
 */
export function serveSample(sample: StatusPageSample, metrics = new Metrics()): MetricsServer {
  return serveMetrics({
    metrics,
    port: 0,
    health: () => ({ ok: true }),
    status: { rows: () => sample.rows(), clock: sample.clock },
  });
}
