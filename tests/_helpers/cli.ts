/** Runs main.ts as a subprocess, the way users run it. */

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Permissions the CLI is run with in tests (what `deno task sync` grants, plus temp dirs). */
export const CLI_PERMISSIONS = [
  "--allow-net=127.0.0.1",
  "--allow-env",
  "--allow-read",
  "--allow-write",
];

/** What a finished CLI process did. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * What a child Deno needs from our environment: where it lives and caches, and how this
 * machine reaches the registry (certificates, proxies) in case it must download something.
 */
export const PASSED_THROUGH = [
  "PATH",
  "HOME",
  "DENO_DIR",
  "TMPDIR",
  "DENO_CERT",
  "DENO_TLS_CA_STORE",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "NODE_EXTRA_CA_CERTS",
  "NPM_CONFIG_REGISTRY",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
];

/** The environment a CLI subprocess gets: nothing from ours but what Deno needs. */
export function cliEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1", LOG_FILE: "", LOGGING_LEVEL: "INFO" };
  for (const name of PASSED_THROUGH) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...extra };
}

/** Starts the CLI; the caller waits for it, reads it or kills it. */
export function spawnCli(
  args: string[],
  env: Record<string, string>,
  options: { cwd?: string; permissions?: string[] } = {},
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...(options.permissions ?? CLI_PERMISSIONS), MAIN, ...args],
    env: cliEnv(env),
    clearEnv: true,
    ...(options.cwd ? { cwd: options.cwd } : {}),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Runs the CLI to completion. */
export async function runCli(
  args: string[],
  env: Record<string, string>,
  options: { cwd?: string; permissions?: string[] } = {},
): Promise<CliResult> {
  const output = await spawnCli(args, env, options).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The variables that point the CLI at a pair of simulators. */
export function simulatorEnv(
  mailchimp: { apiKey: string; url: string },
  ometria: { apiKey: string; url: string },
): Record<string, string> {
  return {
    MAILCHIMP_API_KEY: mailchimp.apiKey,
    MAILCHIMP_BASE_URL: mailchimp.url,
    OMETRIA_API_KEY: ometria.apiKey,
    OMETRIA_BASE_URL: ometria.url,
  };
}
