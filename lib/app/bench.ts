/**
 * `deno task bench`: measured numbers, not a test. Two scenarios against the in-process
 * simulators with 50 ms of Mailchimp latency:
 *
 * 1. one 100,000-member list: a full run (time, members/s, peak memory), then the requests
 *    of a run with nothing changed and of a run with 1% changed;
 * 2. 10,000 connections of 100 members each: a first tick, a tick with nothing changed,
 *    peak memory and requests per tick.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { systemClock } from "../clock/clock.ts";
import type { ConnectionConfig } from "../config/config.ts";
import { collectionFor } from "../mapping/contact.ts";
import { compareCopies } from "../sim/compare.ts";
import { MailchimpSimulator } from "../sim/mailchimp_sim.ts";
import { OmetriaSimulator } from "../sim/ometria_sim.ts";
import { MemoryStore } from "../state/memory_store.ts";
import { SyncService } from "./sync_service.ts";

/** Options of {@linkcode runBench}. */
export interface BenchOptions {
  logger: Logger;
  write: (text: string) => void;
  signal?: AbortSignal;
  /** Members of scenario 1's list. @default {100_000} */
  members?: number;
  /** Connections of scenario 2. @default {10_000} */
  connections?: number;
  /** Ometria requests per second allowed by the simulated account. @default {100} */
  ometriaRate?: number;
}

const LATENCY_MS = 50;

class _PeakMemory {
  peak = 0;
  #id: ReturnType<typeof setInterval>;
  constructor() {
    this.sample();
    this.#id = setInterval(() => this.sample(), 50);
  }
  sample() {
    this.peak = Math.max(this.peak, Deno.memoryUsage().rss);
  }
  stop(): number {
    clearInterval(this.#id);
    this.sample();
    return this.peak;
  }
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

async function _sims(ometriaRate: number) {
  const mailchimp = await MailchimpSimulator.start({ latencyMs: LATENCY_MS });
  const ometria = await OmetriaSimulator.start({
    maxRequestsPerSecond: ometriaRate,
    queueLimit: 100_000_000,
    ingestPerSecond: 100_000_000,
  });
  return { mailchimp, ometria };
}

function _connection(
  id: string,
  mailchimp: MailchimpSimulator,
  ometria: OmetriaSimulator,
): ConnectionConfig {
  return {
    id,
    listId: id,
    mailchimp: { apiKey: mailchimp.apiKey, baseUrl: mailchimp.url },
    ometria: { apiKey: ometria.apiKey, baseUrl: ometria.url, endpoint: "push" },
    thresholdSeconds: 7200,
  };
}

/** Runs both scenarios and prints their numbers; returns 0, or 1 if a copy was wrong. */
export async function runBench(options: BenchOptions): Promise<number> {
  const { write, logger } = options;
  const rate = options.ometriaRate ?? 100;
  const members = options.members ?? 100_000;
  const count = options.connections ?? 10_000;
  let ok = true;
  write(`deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores`);
  write(
    `Simulators in-process; Mailchimp latency ${LATENCY_MS} ms; Ometria account limit ${rate} req/s\n`,
  );

  // Scenario 1: one big list.
  {
    const { mailchimp, ometria } = await _sims(rate);
    try {
      const id = "bench00001";
      mailchimp.addList(id, { members, seed: 11 });
      const service = new SyncService({
        connections: [_connection(id, mailchimp, ometria)],
        store: new MemoryStore(),
        clock: systemClock,
        logger,
        ometriaMaxRequestsPerSecond: rate,
        pushConcurrency: 8,
        marginSeconds: 2,
      });
      const memory = new _PeakMemory();
      const full = await service.runOnce(id, options.signal);
      const peak = memory.stop();
      const seconds = full.durationMs / 1000;
      write(`Scenario 1: one list of ${members.toLocaleString("en-US")} members`);
      write(
        `  full run: ${seconds.toFixed(1)} s, ${
          Math.round(full.pushed / seconds).toLocaleString("en-US")
        } members/s, peak RSS ${
          mib(peak)
        }, ${full.mailchimpRequests} Mailchimp + ${full.ometriaRequests} Ometria requests (${full.outcome})`,
      );
      write(
        `  (Ometria's default limit of 8 req/s would bound a full run at ${
          Math.round(members / 800)
        } s: 100 records × 8 requests per second)`,
      );

      await systemClock.sleep(1100);
      mailchimp.resetStats();
      ometria.resetStats();
      const idle = await service.runOnce(id, options.signal);
      write(
        `  nothing changed: ${mailchimp.stats.requests} Mailchimp + ${ometria.stats.requests} Ometria requests, ${idle.durationMs} ms`,
      );

      mailchimp.changeMembers(id, Math.round(members / 100), 3);
      await systemClock.sleep(3000);
      mailchimp.resetStats();
      ometria.resetStats();
      const some = await service.runOnce(id, options.signal);
      write(
        `  1% changed (${some.read} members): ${mailchimp.stats.requests} Mailchimp + ${ometria.stats.requests} Ometria requests, ${some.durationMs} ms`,
      );
      const c = compareCopies(mailchimp.truth(id), ometria.contacts(collectionFor(id)), id);
      write(
        `  copy: ${c.missing.length} missing, ${c.stale.length} stale, ${c.extra.length} extra\n`,
      );
      ok &&= c.missing.length === 0 && c.stale.length === 0;
    } finally {
      await mailchimp.close();
      await ometria.close();
    }
  }

  // Scenario 2: many small connections.
  {
    const { mailchimp, ometria } = await _sims(Math.max(rate, 1000));
    try {
      const connections: ConnectionConfig[] = [];
      for (let i = 0; i < count; i++) {
        const id = `conn${String(i).padStart(6, "0")}`;
        mailchimp.addList(id, { members: 100, seed: 1000 + i });
        connections.push(_connection(id, mailchimp, ometria));
      }
      const store = new MemoryStore();
      const service = new SyncService({
        connections,
        store,
        clock: systemClock,
        logger,
        maxConcurrentRuns: 10,
        ometriaMaxRequestsPerSecond: Math.max(rate, 1000),
        marginSeconds: 2,
      });
      const memory = new _PeakMemory();
      let t0 = performance.now();
      const first = await service.tick({ ...(options.signal ? { signal: options.signal } : {}) });
      const firstMs = performance.now() - t0;
      const firstMc = mailchimp.stats.requests;
      const firstOm = ometria.stats.requests;
      mailchimp.resetStats();
      ometria.resetStats();
      t0 = performance.now();
      const idle = await service.tick({ ...(options.signal ? { signal: options.signal } : {}) });
      const idleMs = performance.now() - t0;
      const peak = memory.stop();
      const ran = first.entries.filter((e) => e.ran).length;
      write(`Scenario 2: ${count.toLocaleString("en-US")} connections of 100 members`);
      write(
        `  first tick: ${
          (firstMs / 1000).toFixed(1)
        } s, ${ran} runs, ${firstMc} Mailchimp + ${firstOm} Ometria requests${
          first.failed ? " (some failed)" : ""
        }`,
      );
      write(
        `  nothing changed: ${(idleMs / 1000).toFixed(1)} s, ${
          idle.entries.filter((e) => e.ran).length
        } runs, ${mailchimp.stats.requests} Mailchimp + ${ometria.stats.requests} Ometria requests`,
      );
      write(`  peak RSS ${mib(peak)}`);
      ok &&= !first.failed;
    } finally {
      await mailchimp.close();
      await ometria.close();
    }
  }
  return ok ? 0 : 1;
}
