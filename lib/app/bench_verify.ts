/**
 * Bench scenario 7 (`BENCH="scenarios=7 verify=100000"`): a full `verify` of one synced list
 * against an Ometria account whose Data API allows its documented 4 requests/s (the
 * simulator's default), so reading the collection back is the bottleneck: the requests, wall
 * time and peak memory of the verify child, then of a 1,000-member sampled verify. Optional
 * (not in the default scenarios): 100,000 members take about four minutes at 4 requests/s.
 *
 * @module
 */
import { OmetriaSimulator } from "../sim/ometria_sim.ts";
import { MailchimpSimulator } from "../sim/mailchimp_sim.ts";

/** One measured child run, as bench.ts measures it. */
export interface VerifyBenchRun {
  code: number;
  seconds: number;
  peakRssBytes: number | undefined;
  mailchimpRequests: number;
  ometriaRequests: number;
  throttled: number;
  /**
   * CPU seconds this process (the simulators) used while the child ran, from after the
   * garbage collection that precedes each run (see `BenchOptions.collectGarbage`).
   */
  hostCpuSeconds: number;
}

/** What scenario 7 needs from the bench: how to run and measure the CLI, how to print. */
export interface VerifyBenchDeps {
  write: (text: string) => void;
  dir: string;
  members: number;
  measure: (
    sims: { mailchimp: MailchimpSimulator; ometria: OmetriaSimulator },
    args: string[],
    env: Record<string, string>,
  ) => Promise<VerifyBenchRun>;
}

const MINUTE = 60_000;

/** Runs scenario 7; false when a child failed or the verify did not find the copy equal. */
export async function benchVerify(deps: VerifyBenchDeps): Promise<boolean> {
  const { write, members } = deps;
  const mailchimp = await MailchimpSimulator.start({ latencyMs: 50 });
  // Pushes not limiting; the Data API (contacts) at Ometria's 4 requests/s.
  const ometria = await OmetriaSimulator.start({
    maxRequestsPerSecond: 0,
    maxDataApiRequestsPerSecond: 4,
    queueLimit: 100_000_000,
    ingestPerSecond: 100_000_000,
  });
  const sims = { mailchimp, ometria };
  try {
    const id = "verify0001";
    mailchimp.addList(id, { members, seed: 61, lastChangedTo: Date.now() - MINUTE });
    const env = {
      MAILCHIMP_API_KEY: mailchimp.apiKey,
      MAILCHIMP_BASE_URL: mailchimp.url,
      OMETRIA_API_KEY: ometria.apiKey,
      OMETRIA_BASE_URL: ometria.url,
      OMETRIA_MAX_REQUESTS_PER_SECOND: "1000",
      MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
      LOGGING_LEVEL: "ERROR",
      LOG_FILE: "",
    };
    const state = `${deps.dir}/verify.json`;
    const sync = await deps.measure(sims, ["--once", "--force", "--state", state, id], env);
    const full = await deps.measure(sims, ["verify", "--state", state, id], env);
    const sample = await deps.measure(
      sims,
      ["verify", "--sample", "1000", "--state", state, id],
      env,
    );
    const mib = (b: number | undefined) =>
      b === undefined ? "n/a" : `${(b / 1048576).toFixed(0)} MiB`;
    write(
      `Scenario 7: verify of ${
        members.toLocaleString("en-US")
      } members, Ometria's Data API at 4 req/s`,
    );
    write(`  sync first:      ${sync.seconds.toFixed(1)} s (exit ${sync.code})`);
    for (const [name, run] of [["full verify:", full], ["sample of 1,000:", sample]] as const) {
      write(
        `  ${name.padEnd(16)} ${
          run.seconds.toFixed(1)
        } s (process start included), ${run.ometriaRequests} Ometria + ${run.mailchimpRequests} Mailchimp requests (${run.throttled} answered 429), ${
          (run.ometriaRequests / run.seconds).toFixed(2)
        } Ometria req/s, peak RSS ${mib(run.peakRssBytes)}, exit ${run.code}`,
      );
    }
    write("");
    return sync.code === 0 && full.code === 0 && sample.code === 0;
  } finally {
    await mailchimp.close();
    await ometria.close();
  }
}
