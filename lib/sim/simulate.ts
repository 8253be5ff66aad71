/**
 * `deno task simulate`: both simulators as standalone servers, for trying a configuration
 * safely. Prints their URLs, keys and a command line to sync against them, then serves
 * until interrupted.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { MailchimpSimulator } from "./mailchimp_sim.ts";
import { OmetriaSimulator } from "./ometria_sim.ts";

/** Options of {@linkcode runSimulate}. */
export interface SimulateOptions {
  logger: Logger;
  write: (text: string) => void;
  /** Stops the servers. */
  signal: AbortSignal;
  /** Port of the Mailchimp simulator. @default {8081} */
  mailchimpPort?: number;
  /** Port of the Ometria simulator. @default {8082} */
  ometriaPort?: number;
  /** Members of each simulated list. @default {10_000} */
  members?: number;
}

/** The lists the simulated Mailchimp account has. */
export const SIMULATED_LISTS = ["list000001", "list000002"] as const;

/** Starts both simulators and serves until `signal` aborts; returns the exit code. */
export async function runSimulate(options: SimulateOptions): Promise<number> {
  const mailchimp = await MailchimpSimulator.start({ port: options.mailchimpPort ?? 8081 });
  const ometria = await OmetriaSimulator.start({ port: options.ometriaPort ?? 8082 });
  try {
    SIMULATED_LISTS.forEach((id, i) =>
      mailchimp.addList(id, { members: options.members ?? 10_000, seed: i + 1 })
    );
    options.write(
      [
        `Simulated Mailchimp: ${mailchimp.url}   key: ${mailchimp.apiKey}`,
        `Simulated Ometria:   ${ometria.url}   key: ${ometria.apiKey}`,
        `Lists: ${SIMULATED_LISTS.join(", ")} (${options.members ?? 10_000} members each)`,
        "",
        "Sync against them from another terminal:",
        `  MAILCHIMP_BASE_URL=${mailchimp.url} MAILCHIMP_API_KEY=${mailchimp.apiKey} \\`,
        `  OMETRIA_BASE_URL=${ometria.url} OMETRIA_API_KEY=${ometria.apiKey} \\`,
        `  deno task sync --once --state ./sim_state.json ${SIMULATED_LISTS.join(" ")}`,
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
    await mailchimp.close();
    await ometria.close();
  }
}
