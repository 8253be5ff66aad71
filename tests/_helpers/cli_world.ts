/**
 * A world for the tests that run main.ts as a process: both simulators on 127.0.0.1, a
 * temporary folder for the state, and the environment that points the CLI at them.
 *
 * @module
 */
import { MailchimpSimulator, type MailchimpSimulatorOptions } from "../../lib/sim/mailchimp_sim.ts";
import { OmetriaSimulator, type OmetriaSimulatorOptions } from "../../lib/sim/ometria_sim.ts";
import { simulatorEnv } from "./cli.ts";

/** Everything a CLI test needs around the process it runs. */
export interface CliWorld {
  /** The Mailchimp simulator, on 127.0.0.1 (add lists to it before running the CLI). */
  mailchimp: MailchimpSimulator;
  /** The Ometria simulator, on 127.0.0.1. */
  ometria: OmetriaSimulator;
  /** The temporary folder, removed by `close`. */
  dir: string;
  /** A state file path in `dir` (`sync_jobs.json`, the default file name). */
  state: string;
  /** The simulators' keys and URLs, plus `env` of the options. */
  env: Record<string, string>;
  /** Stops both simulators and removes `dir`. */
  close(): Promise<void>;
}

/** Options of {@linkcode startCliWorld}. */
export interface CliWorldOptions {
  /** Prefix of the temporary folder's name (which test left it, if one does). */
  prefix: string;
  /** Options of the Mailchimp simulator (its clock, latency…). */
  mailchimp?: MailchimpSimulatorOptions;
  /** Merged over `{ maxRequestsPerSecond: 0 }`: Ometria's rate is not what these test. */
  ometria?: OmetriaSimulatorOptions;
  /** Variables added to the simulators' (a margin, a batch size…). */
  env?: Record<string, string>;
}

/**
 * Starts both simulators and makes the temporary folder. The simulators run on their own
 * clock (the real one unless `mailchimp.clock` says otherwise), as the process does.
 */
export async function startCliWorld(options: CliWorldOptions): Promise<CliWorld> {
  const mailchimp = await MailchimpSimulator.start(options.mailchimp);
  const ometria = await OmetriaSimulator.start({ maxRequestsPerSecond: 0, ...options.ometria });
  const dir = await Deno.makeTempDir({ prefix: options.prefix });
  return {
    mailchimp,
    ometria,
    dir,
    state: `${dir}/sync_jobs.json`,
    env: { ...simulatorEnv(mailchimp, ometria), ...options.env },
    async close() {
      await mailchimp.close();
      await ometria.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
