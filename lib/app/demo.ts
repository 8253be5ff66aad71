/**
 * `deno task demo`: the whole sync on a machine with no Mailchimp or Ometria account. Both
 * simulators run in-process; a 50,000-member list is synced in full, 1% of its members
 * change, a second (incremental) run follows, and the demo proves that the simulated
 * Ometria holds exactly what the simulated Mailchimp holds.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { DEFAULT_PUSH_CONCURRENCY } from "../config/defaults.ts";
import { collectionFor } from "../mapping/contact.ts";
import { compareCopies } from "../sim/compare.ts";
import { MailchimpSimulator } from "../sim/mailchimp_sim.ts";
import { OmetriaSimulator } from "../sim/ometria_sim.ts";
import { MemoryStore } from "../state/memory_store.ts";
import { SyncService } from "./sync_service.ts";
import { serveWebhooks } from "../webhooks/receiver.ts";
import { startWebhooks } from "../webhooks/setup.ts";

/** Options of {@linkcode runDemo}. */
export interface DemoOptions {
  logger: Logger;
  clock: Clock;
  write: (text: string) => void;
  /** Draw a progress line in place (a terminal) instead of periodic log lines. */
  isTerminal: boolean;
  signal?: AbortSignal;
  /** Members of the demo list. @default {50_000} */
  members?: number;
}

const LIST_ID = "demo000001";
/** The simulated Ometria account's request rate (Ometria adjusts it per account). */
const OMETRIA_RATE = 60;

/** Runs the demo; returns 0 when Ometria ends up identical to Mailchimp, 1 otherwise. */
export async function runDemo(options: DemoOptions): Promise<number> {
  const { logger, clock, write } = options;
  const total = options.members ?? 50_000;
  const fmt = new Intl.NumberFormat("en-US");
  const mailchimp = await MailchimpSimulator.start({ clock });
  const ometria = await OmetriaSimulator.start({
    clock,
    maxRequestsPerSecond: OMETRIA_RATE,
    queueLimit: 10_000_000,
    ingestPerSecond: 10_000_000,
  });
  try {
    write(`Simulated Mailchimp at ${mailchimp.url}, simulated Ometria at ${ometria.url}\n`);
    mailchimp.addList(LIST_ID, {
      name: "Demo audience",
      members: total,
      seed: 42,
      profile: "retail",
    });
    write(
      `List ${LIST_ID}: ${fmt.format(total)} members (every status, Unicode names, phone, ` +
        `birthday, address, tags, interests)\n\n`,
    );

    let phase = "";
    let started = clock.now();
    let expected = total;
    let lastLine = 0;
    const connection = {
      id: LIST_ID,
      listId: LIST_ID,
      mailchimp: { apiKey: mailchimp.apiKey, baseUrl: mailchimp.url },
      ometria: { apiKey: ometria.apiKey, baseUrl: ometria.url, endpoint: "push" as const },
      thresholdSeconds: 7200,
      webhookSecret: crypto.randomUUID(),
    };
    const store = new MemoryStore();
    const service = new SyncService({
      connections: [connection],
      store,
      clock,
      logger: logger.getChild("demo"),
      ometriaMaxRequestsPerSecond: OMETRIA_RATE,
      pushConcurrency: DEFAULT_PUSH_CONCURRENCY,
      // One clock (the simulator's) stamps members and answers Date: the smallest margin
      // the engine accepts is enough.
      marginSeconds: 2,
      onProgress: (_id, p) => {
        const now = clock.now();
        const seconds = ((now - started) / 1000).toFixed(1);
        const done = p.pushed + (p.unchanged ?? 0);
        const pct = Math.min(100, Math.floor((done / Math.max(1, expected)) * 100));
        if (options.isTerminal) {
          const width = 30;
          const bar = "█".repeat(Math.round((pct / 100) * width)).padEnd(width, "░");
          write(
            `\r${phase} ${bar} ${fmt.format(done)}/${fmt.format(expected)} (${pct}%) ${seconds}s`,
          );
        } else if (now - lastLine >= 2000) {
          lastLine = now;
          logger.info("{phase}: {done} of {expected} done ({pct}%) after {seconds}s", {
            phase,
            done,
            expected,
            pct,
            seconds,
          });
        }
      },
    });

    const run = async (name: string) => {
      phase = name;
      started = clock.now();
      const result = await service.runOnce(LIST_ID, options.signal);
      if (options.isTerminal) write("\n");
      write(
        `${name}: ${result.outcome}, read ${fmt.format(result.read)}, pushed ${
          fmt.format(result.pushed)
        }, unchanged ${fmt.format(result.unchanged)}, ` +
          `rejected ${result.rejected} in ${_took(result.durationMs, result.pushed, fmt)} (` +
          `${result.mailchimpRequests} Mailchimp + ${result.ometriaRequests} Ometria requests)\n`,
      );
      return result;
    };

    const first = await run("Full sync");
    if (first.outcome !== "ok") return 1;

    const changed = mailchimp.changeMembers(LIST_ID, Math.round(total / 100), 7);
    write(`\n${fmt.format(changed.length)} members changed in Mailchimp (1%)\n`);
    expected = changed.length;
    // A run covers changes older than its safety margin (2 s here), as it would in real life.
    await clock.sleep(3000, options.signal);
    const second = await run("Incremental sync");
    if (second.outcome !== "ok") return 1;

    if (!await _webhookStep(options, { mailchimp, ometria, store, connection, service })) {
      return 1;
    }

    // Gone from Mailchimp: polling cannot see it; reconciliation opts the contacts out.
    const truth = mailchimp.truth(LIST_ID);
    for (const m of truth.slice(100, 103)) mailchimp.deleteMember(LIST_ID, m.email_address);
    for (const [i, m] of truth.slice(200, 202).entries()) {
      mailchimp.changeEmail(LIST_ID, m.email_address, `moved.${i}@example.com`);
    }
    write("\n3 members deleted for good and 2 emails changed in Mailchimp\n");
    await clock.sleep(3000, options.signal);
    phase = "Incremental sync";
    // The two new ids, and the member the webhook step changed (polling sees it too).
    expected = 3;
    await run("Incremental sync");
    const [reconciled] = await service.reconcile([LIST_ID], options.signal);
    const found = reconciled?.summary;
    write(
      `Reconciliation: ${fmt.format(found?.mailchimp_members ?? 0)} members in Mailchimp ` +
        `compared with what Ometria was sent, ${found?.orphans ?? "?"} gone from it opted out ` +
        `in Ometria, ${found?.missing ?? "?"} missed, ${found?.stale ?? "?"} stale (` +
        `${reconciled?.mailchimpRequests ?? 0} Mailchimp + ${
          reconciled?.ometriaRequests ?? 0
        } Ometria requests)\n`,
    );

    const ok = _reportCopy(write, fmt, mailchimp, ometria);
    await service.close();
    return ok ? 0 : 1;
  } finally {
    await mailchimp.close();
    await ometria.close();
  }
}

/**
 * Real time: the simulated Mailchimp sends its webhook to the receiver, which fetches the
 * member and pushes it, with no polling run in between. True when it arrived within 2 s.
 */
async function _webhookStep(
  options: DemoOptions,
  world: {
    mailchimp: MailchimpSimulator;
    ometria: OmetriaSimulator;
    store: MemoryStore;
    connection: Parameters<typeof startWebhooks>[0]["connections"][number];
    service: SyncService;
  },
): Promise<boolean> {
  const { clock, logger, write } = options;
  const { mailchimp, ometria, store, connection, service } = world;
  const handler = startWebhooks({
    connections: [connection],
    store,
    clock,
    logger: logger.getChild("demo"),
  });
  const server = serveWebhooks({ handler, port: 0 });
  try {
    mailchimp.webhooks.sendTo(
      LIST_ID,
      `${server.url}/webhooks/mailchimp/${LIST_ID}/${connection.webhookSecret}`,
    );
    const member = mailchimp.truth(LIST_ID).find((m) => m.status === "subscribed")!;
    const sent = clock.now();
    mailchimp.upsertMember(LIST_ID, { email: member.email_address, FNAME: "Realtime" });
    await mailchimp.webhooks.settle();
    await service.idle();
    const took = clock.now() - sent;
    const arrived =
      ometria.contacts(collectionFor(LIST_ID)).get(member.id)?.firstname === "Realtime";
    write(
      `\nWebhook: a profile change ${arrived ? "reached" : "did NOT reach"} Ometria in ${
        Math.round(took)
      } ms (${took < 2000 ? "under" : "NOT under"} 2 s), without a polling run\n`,
    );
    if (!arrived || took >= 2000) return false;
  } finally {
    await server.close();
  }
  return true;
}

/** Prints how Ometria's copy compares with Mailchimp's; true when it is exact. */
function _reportCopy(
  write: (text: string) => void,
  fmt: Intl.NumberFormat,
  mailchimp: MailchimpSimulator,
  ometria: OmetriaSimulator,
): boolean {
  const comparison = compareCopies(
    mailchimp.truth(LIST_ID),
    ometria.contacts(collectionFor(LIST_ID)),
    LIST_ID,
    "push",
    { defaultFields: mailchimp.fieldDefinitions(LIST_ID) },
  );
  const ok = comparison.missing.length === 0 && comparison.stale.length === 0 &&
    comparison.extraNotOptedOut.length === 0;
  write(
    `\n${ok ? "✔" : "✘"} Ometria ${
      ok ? "holds exactly" : "does NOT hold"
    } what Mailchimp holds, mapped fields included: ` +
      `${fmt.format(comparison.expected)} members, ${comparison.missing.length} missing, ` +
      `${comparison.stale.length} stale, ${comparison.extraOptedOut.length} gone and opted ` +
      `out, ${comparison.extraNotOptedOut.length} gone but still opted in\n`,
  );
  return ok;
}

/**
 * How long a run took, for the summary. A rate is only meaningful over a second or more:
 * 500 members pushed in 6 ms are not "83,333 members/s".
 */
function _took(durationMs: number, pushed: number, fmt: Intl.NumberFormat): string {
  if (durationMs < 1000) return `${Math.round(durationMs)} ms`;
  const rate = fmt.format(Math.round(pushed / (durationMs / 1000)));
  return `${(durationMs / 1000).toFixed(1)}s, ${rate} members/s`;
}
