/** Runs main.ts as a subprocess, the way users run it. */

/** The repository's root, where `deno task` finds deno.json. */
export const ROOT = new URL("../../", import.meta.url).pathname;

const MAIN = `${ROOT}main.ts`;

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

/**
 * Starts the CLI (or `options.entry`, a path from the repository's root, such as the Deno
 * Deploy entry); the caller waits for it, reads it or kills it.
 */
export function spawnCli(
  args: string[],
  env: Record<string, string>,
  options: { cwd?: string; permissions?: string[]; entry?: string } = {},
): Deno.ChildProcess {
  const entry = options.entry === undefined ? MAIN : `${ROOT}${options.entry}`;
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...(options.permissions ?? CLI_PERMISSIONS), entry, ...args],
    env: cliEnv(env),
    clearEnv: true,
    ...(options.cwd ? { cwd: options.cwd } : {}),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * How {@linkcode spawnTask} starts `deno task`: as it is; under `setsid`, so that the task
 * and its child are a process group of their own, as a terminal's foreground job is (signal
 * it with `Deno.kill(-child.pid, …)`); or under `script`, on a terminal of its own, where
 * Deno would show a permission prompt (the child's stdout is then the terminal's output).
 */
export type TaskWrapper = "none" | "setsid" | "pty";

/**
 * Starts `deno task <args…>` in the repository, the way a user types it (e.g. `["sync",
 * "--once", …]`), with the environment {@linkcode cliEnv} builds. Its stdin is a pipe nobody
 * writes, so that a prompt would wait rather than read an end of file: close it (and read or
 * cancel both outputs) when done.
 */
export function spawnTask(
  args: string[],
  env: Record<string, string>,
  options: { wrapper?: TaskWrapper } = {},
): Deno.ChildProcess {
  const task = [Deno.execPath(), "task", ...args];
  const wrapper = options.wrapper ?? "none";
  if (wrapper === "pty" && !task.every((word) => /^[\w@%+=:,./-]+$/.test(word))) {
    throw new TypeError(`Cannot pass ${JSON.stringify(task)} to script -c unquoted`);
  }
  const [command, ...rest] = wrapper === "setsid"
    ? ["setsid", ...task]
    : wrapper === "pty"
    ? ["script", "-qec", task.join(" "), "/dev/null"]
    : task;
  return new Deno.Command(command!, {
    args: rest,
    env: cliEnv(env),
    clearEnv: true,
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** What a finished (or timed-out) `deno task` did. */
export interface TaskResult extends CliResult {
  /** True when it was still running after the timeout and was killed. */
  timedOut: boolean;
}

/**
 * Runs `deno task <args…>` to completion (see {@linkcode spawnTask}), killing it once
 * `timeoutMs` of real time have passed: a run that waits at a prompt ends as `timedOut`.
 */
export async function runTask(
  args: string[],
  env: Record<string, string>,
  options: { wrapper?: TaskWrapper; timeoutMs?: number } = {},
): Promise<TaskResult> {
  const child = spawnTask(args, env, options);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, options.timeoutMs ?? 30_000);
  try {
    const [stdout, stderr] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    const status = await child.status;
    return { code: status.code, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
    await child.stdin.close().catch(() => {});
  }
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
