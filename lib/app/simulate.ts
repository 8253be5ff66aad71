/**
 * `deno task simulate`: both simulators as standalone servers, for trying a configuration
 * safely. Prints their URLs, keys and the commands to sync against them and to see the
 * result, then serves until interrupted.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { DEFAULT_MAILCHIMP_SIM_PORT, DEFAULT_OMETRIA_SIM_PORT } from "../config/defaults.ts";
import { MailchimpSimulator } from "../sim/mailchimp_sim.ts";
import { OmetriaSimulator } from "../sim/ometria_sim.ts";

/** Options of {@linkcode runSimulate}. */
export interface SimulateOptions {
  logger: Logger;
  write: (text: string) => void;
  /** Writes a problem for the user (standard error). */
  writeError: (text: string) => void;
  /** Stops the servers. */
  signal: AbortSignal;
  /** Port of the Mailchimp simulator (0 picks a free one). @default {8081} */
  mailchimpPort?: number;
  /** Port of the Ometria simulator (0 picks a free one). @default {8082} */
  ometriaPort?: number;
  /** Members of each simulated list. @default {10_000} */
  members?: number;
}

/** The lists the simulated Mailchimp account has. */
const SIMULATED_LISTS = ["list000001", "list000002"] as const;

/** The state file the printed commands use (listed in .gitignore). */
const SIMULATED_STATE = "./sim_state.json";

/**
 * Starts both simulators and serves until `signal` aborts; returns the exit code: 0, or 2
 * when a port is taken (said in one line naming the port and the flag to change).
 */
export async function runSimulate(options: SimulateOptions): Promise<number> {
  const mailchimpPort = options.mailchimpPort ?? DEFAULT_MAILCHIMP_SIM_PORT;
  const ometriaPort = options.ometriaPort ?? DEFAULT_OMETRIA_SIM_PORT;
  const members = options.members ?? 10_000;
  let mailchimp: MailchimpSimulator | undefined;
  let ometria: OmetriaSimulator | undefined;
  try {
    try {
      mailchimp = await MailchimpSimulator.start({ port: mailchimpPort });
    } catch (error) {
      return _busy(error, options, "Mailchimp", mailchimpPort, "--mailchimp-port");
    }
    try {
      ometria = await OmetriaSimulator.start({ port: ometriaPort });
    } catch (error) {
      return _busy(error, options, "Ometria", ometriaPort, "--ometria-port");
    }
    SIMULATED_LISTS.forEach((id, i) => mailchimp!.addList(id, { members, seed: i + 1 }));
    options.write(
      [
        `Simulated Mailchimp: ${mailchimp.url}   key: ${mailchimp.apiKey}`,
        `Simulated Ometria:   ${ometria.url}   key: ${ometria.apiKey}`,
        `Lists: ${SIMULATED_LISTS.join(", ")} (${members} members each)`,
        "",
        "Sync against them from another terminal, in this folder:",
        `  MAILCHIMP_BASE_URL=${mailchimp.url} MAILCHIMP_API_KEY=${mailchimp.apiKey} \\`,
        `  OMETRIA_BASE_URL=${ometria.url} OMETRIA_API_KEY=${ometria.apiKey} \\`,
        `  deno task sync --once --state ${SIMULATED_STATE} ${SIMULATED_LISTS.join(" ")}`,
        "",
        "Then see each list's freshness:",
        `  deno task sync status --state ${SIMULATED_STATE}`,
        "",
        "Press Ctrl+C to stop.",
      ].join("\n"),
    );
    await new Promise<void>((resolve) => {
      if (options.signal.aborted) resolve();
      options.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    options.logger.info("Simulators stopped");
    return 0;
  } finally {
    await mailchimp?.close();
    await ometria?.close();
  }
}

function _busy(
  error: unknown,
  options: SimulateOptions,
  which: string,
  port: number,
  flag: string,
): number {
  if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  options.writeError(
    `Cannot start the ${which} simulator: port ${port} on 127.0.0.1 is in use. Stop what uses it or pass ${flag} <free port>.`,
  );
  return 2;
}
