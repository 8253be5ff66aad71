/**
 * mailchimp-ometria-sync: keeps Ometria's contacts identical to Mailchimp audiences.
 *
 * The only module that touches the process: it reads `Deno.args` and `Deno.env`, installs
 * the signal handlers, wires the real fetch, clock, logger and store, and decides the exit
 * code (0 ok, 1 a list failed, 2 usage, configuration or state errors, 3 a `--once` run
 * stopped by a signal). The demo, the simulators and the benchmark are loaded with
 * `import()` only when chosen, so the production import graph holds production code only.
 * It is also the process side of the Deno Deploy entry ({@linkcode serveOnDeploy}, called by
 * `deploy.ts`), and runs only as the program's main module, so deploy.ts can import it.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { type Config, configSecrets, envSecrets, loadConfig } from "./lib/config/config.ts";
import { USAGE } from "./lib/config/usage.ts";
import { systemClock } from "./lib/clock/clock.ts";
import { LogFileError, logFileFailure, setupLogging, shutdownLogging } from "./lib/log/logging.ts";
import { DEFAULT_STATE_PATH, openStore } from "./lib/state/open_store.ts";
import { StateError, type StateStore } from "./lib/state/store.ts";
import { runCommand } from "./lib/app/cli.ts";
import { type CronFn, EXIT } from "./lib/app/commands/cli_deps.ts";
import { stateFailureAdvice, storageFailureAdvice } from "./lib/app/commands/shared.ts";
import { TerminalLine } from "./lib/app/progress.ts";
import { DEPLOY_GRACE_MS, isDeploy, startDeploy } from "./lib/app/deploy.ts";
import { signalKind } from "./lib/app/signal_kind.ts";
import { stateVolumeProblem } from "./lib/app/state_volume.ts";
import { errorText, redact } from "./lib/log/error_text.ts";
import { folderOf, permissionAdvice } from "./lib/config/permission_advice.ts";
import { isKvConnectUrl } from "./lib/state/kv_connect.ts";

const GRACE_MS = 8_000;

/** Writes `text` to standard output, synchronously (every command's output goes this way). */
function _writeStdout(text: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(text));
}

/** `Deno.cron` in the commands' {@linkcode CronFn} shape (a signal only when there is one). */
const _denoCron: CronFn = (name, schedule, options, handler) =>
  Deno.cron(name, schedule, options.signal ? { signal: options.signal } : {}, handler);

function canUseFiles(path: string): boolean {
  return _granted("read", path) && _granted("write", path);
}

/**
 * Why this process may not use the state `spec` names, or undefined when it may (or when
 * no file is involved: the default file falls back to memory, `memory:`, the platform's
 * `kv:`, a KV Connect URL). A file state keeps its lock, journal, temp file and ledger
 * beside it, and a Deno KV file its -wal and -shm, so the folder is what to grant; asked
 * here, before anything opens it, so that the answer names the flag instead of blaming the
 * folder's owner, and no prompt can wait for an answer.
 */
function _stateAccessProblem(
  spec: string | undefined,
  options: { readOnly: boolean; syncDir: string | undefined },
): string | undefined {
  if (spec === undefined || spec === "memory:" || spec === "kv:") return undefined;
  const kv = spec.startsWith("kv:");
  const file = kv ? spec.slice("kv:".length) : spec;
  if (kv && isKvConnectUrl(file)) return undefined;
  const wanted: ("read" | "write")[] = options.readOnly && !kv ? ["read"] : ["read", "write"];
  // Reading is asked of the folder (the lock, journal and ledger are read there), writing of
  // the file: a grant that leaves out the folder's other files is found when they are
  // written, with that file's name.
  const missing = wanted.filter((name) => !_granted(name, name === "read" ? folderOf(file) : file));
  if (missing.length === 0) return undefined;
  return permissionAdvice({
    what: kv
      ? `the Deno KV database ${file}`
      : `the state file ${file} (with its lock, journal and ledger beside it)`,
    file,
    missing,
    syncDir: options.syncDir,
  });
}

/**
 * With SYNC_REQUIRE_STATE_VOLUME (the container image), why the folder of a local state
 * (`--state <file>`, `kv:<path>`, or the default file) is not a place the state survives
 * the container in, or undefined (lib/app/state_volume.ts decides from the devices).
 */
function _stateVolumeCheck(spec: string | undefined): string | undefined {
  if (spec === "memory:" || spec === "kv:") return undefined;
  const file = spec === undefined ? DEFAULT_STATE_PATH : spec.replace(/^kv:/, "");
  if (isKvConnectUrl(file)) return undefined;
  try {
    const folder = Deno.realPathSync(folderOf(file));
    return stateVolumeProblem({
      folder,
      folderDevice: Deno.statSync(folder).dev,
      rootDevice: Deno.statSync("/").dev,
    });
  } catch (error) {
    return `Cannot tell whether the folder of ${file} is on a mounted volume, as ` +
      `SYNC_REQUIRE_STATE_VOLUME=1 asks: ${errorText(error)}. The folder must exist, and it ` +
      `and / must be readable (--allow-read); or set SYNC_REQUIRE_STATE_VOLUME=0.`;
  }
}

/** Whether `name` access to `path` was granted; true where there is no permissions API. */
function _granted(name: "read" | "write", path: string): boolean {
  try {
    return Deno.permissions.querySync({ name, path }).state === "granted";
  } catch {
    return true;
  }
}

function envObject(): Record<string, string | undefined> {
  let granted = true;
  try {
    granted = Deno.permissions.querySync({ name: "env" }).state === "granted";
  } catch {
    // Deno Deploy has no permissions API, and grants the environment.
  }
  return granted ? Deno.env.toObject() : {};
}

async function main(args: string[], env: Record<string, string | undefined>): Promise<number> {
  const result = await loadConfig({
    env,
    args,
    readTextFile: (path) => Deno.readTextFile(path),
  });
  if (!result.ok) {
    if (result.help) {
      console.log(USAGE);
      return EXIT.ok;
    }
    console.error(
      `Cannot start:\n${result.errors.map((e) => `  - ${e}`).join("\n")}\n\n${USAGE}`,
    );
    return EXIT.usage;
  }
  const config = result.config;
  const secrets = [...configSecrets(config), ...envSecrets(env)];

  // One terminal on both outputs: a --once progress line lives there, log lines around it.
  const terminal = Deno.stdout.isTerminal() && Deno.stderr.isTerminal()
    ? new TerminalLine(_writeStdout, () => _terminalColumns())
    : undefined;
  const logger = await _startLogging(config, env, secrets, terminal);
  if (logger === undefined) return EXIT.usage;
  if (["sync", "reconcile", "webhooks", "erase", "explain", "verify"].includes(config.command)) {
    for (const warning of config.warnings) logger.warn(warning);
  }

  const stop = new AbortController();
  const hardStop = new AbortController();
  const removeSignalHandlers = _handleSignals(stop, hardStop, {
    graceMs: GRACE_MS,
    announce: (name) =>
      logger.info(
        "{signal} received: finishing batches in flight, then exiting (another SIGINT or " +
          "SIGTERM a second or more from now exits at once)",
        { signal: name },
      ),
    again: "exit",
    skipMissing: false,
  });

  try {
    const optional = await _optionalCommand(config, env, logger, stop.signal);
    if (optional !== undefined) return optional;
    // webhooks register/list, explain and sync --dry-run never write the state, and must work
    // beside a running daemon.
    const readOnly = config.command === "status" || config.command === "webhooks" ||
      config.command === "explain" || (config.command === "sync" && config.dryRun);
    const denied = _stateAccessProblem(config.state, { readOnly, syncDir: env.SYNC_DIR }) ??
      (config.requireStateVolume && !readOnly ? _stateVolumeCheck(config.state) : undefined);
    if (denied !== undefined) {
      logger.fatal(denied);
      return EXIT.usage;
    }
    let store: StateStore;
    try {
      store = await openStore(config.state, {
        clock: systemClock,
        logger,
        canUseFiles: canUseFiles(config.state ?? DEFAULT_STATE_PATH),
        readOnly,
        leaseMs: config.stateLeaseSeconds * 1000,
      });
    } catch (error) {
      const location = config.state ?? DEFAULT_STATE_PATH;
      const problem = error instanceof StateError
        ? error.message
        : storageFailureAdvice(error, location);
      if (problem === undefined) throw error;
      logger.fatal(redact(problem, secrets));
      return EXIT.usage;
    }
    let code: number;
    try {
      code = await runCommand(config, {
        clock: systemClock,
        logger,
        fetch: globalThis.fetch,
        store,
        write: _writeStdout,
        cron: _denoCron,
        stop: stop.signal,
        hardStop: hardStop.signal,
        terminal,
        secrets,
      });
    } catch (error) {
      // Not a list's failure (those are reported per list): the program itself could not go
      // on. What was saved before stays valid.
      const storage = storageFailureAdvice(error, store.location);
      if (error instanceof StateError || storage !== undefined) {
        logger.fatal(storage ?? stateFailureAdvice(error as StateError));
        code = EXIT.usage;
      } else {
        logger.fatal("Stopped: {error}", { error: errorText(error, secrets) });
        code = EXIT.failed;
      }
    }
    try {
      await store.close();
    } catch (error) {
      const storage = storageFailureAdvice(error, store.location);
      if (!(error instanceof StateError) && storage === undefined) throw error;
      // A write that failed during the command was reported (exit 2) already.
      if (code !== EXIT.usage) logger.fatal(storage ?? stateFailureAdvice(error as StateError));
      code = EXIT.usage;
    }
    // A log file that stopped taking lines was said once, when it did; like a state that
    // cannot be saved, it is the machine's problem to fix (exit 2).
    return logFileFailure() !== undefined && code === EXIT.ok ? EXIT.usage : code;
  } finally {
    removeSignalHandlers();
    await shutdownLogging();
  }
}

/**
 * Sets up logging for `config` (console, and `LOG_FILE` when this process may write it), or
 * says in one line why `LOG_FILE` cannot be written and resolves undefined (exit 2): a log
 * file that fails on every line would print a stack trace each time.
 */
async function _startLogging(
  config: Config,
  env: Record<string, string | undefined>,
  secrets: readonly string[],
  terminal: TerminalLine | undefined,
): Promise<Logger | undefined> {
  const logFileAllowed = config.logFile !== undefined && canUseFiles(config.logFile);
  let logger: Logger;
  try {
    logger = await setupLogging({
      level: config.logLevel,
      file: logFileAllowed ? config.logFile : undefined,
      format: config.logFormat,
      secrets,
      aroundConsole: terminal ? (write) => terminal.interject(write) : undefined,
    });
  } catch (error) {
    if (!(error instanceof LogFileError)) throw error;
    console.error(redact(error.message, secrets));
    return undefined;
  }
  if (config.logFile !== undefined && !logFileAllowed && env.LOG_FILE !== undefined) {
    logger.warn(
      permissionAdvice({
        what: `LOG_FILE=${config.logFile} (the log goes to standard error only)`,
        file: config.logFile,
        missing: ["read", "write"],
        syncDir: env.SYNC_DIR,
      }),
    );
  }
  return logger;
}

/** The terminal's width in columns, for the live progress line (80 when it cannot be read). */
function _terminalColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 80;
  }
}

/**
 * Runs demo, simulate, healthcheck or bench when the config names one, each loaded with
 * `import()` only then, so the production import graph never holds them; resolves
 * undefined for every other command.
 */
async function _optionalCommand(
  config: Config,
  env: Record<string, string | undefined>,
  logger: Logger,
  signal: AbortSignal,
): Promise<number | undefined> {
  if (config.command === "demo") {
    const { runDemo } = await import("./lib/app/demo.ts");
    return await runDemo({
      logger,
      clock: systemClock,
      write: _writeStdout,
      isTerminal: Deno.stdout.isTerminal(),
      signal,
    });
  }
  if (config.command === "simulate") {
    const { runSimulate } = await import("./lib/app/simulate.ts");
    return await runSimulate({
      logger,
      write: (t) => console.log(t),
      writeError: (t) => console.error(t),
      signal,
      mailchimpPort: config.mailchimpPort,
      ometriaPort: config.ometriaPort,
    });
  }
  if (config.command === "healthcheck") {
    const { runHealthcheck } = await import("./lib/app/healthcheck.ts");
    return await runHealthcheck({
      fetch: globalThis.fetch,
      port: config.metricsPort,
      host: config.metricsHost,
      write: (t) => console.error(t),
    });
  }
  if (config.command === "bench") {
    const self = _sourceEntryPoint();
    if (self === undefined) {
      console.error(
        "bench runs the sync as `deno run main.ts` in child processes, so it needs the deno " +
          "executable and the repository's main.ts; this compiled binary or bundle has " +
          "neither. Run `deno task bench` in a checkout of the repository instead.",
      );
      return EXIT.usage;
    }
    const { runBench, parseBenchSpec, BenchSpecError } = await import("./lib/app/bench.ts");
    const baseEnv: Record<string, string> = {};
    for (
      const name of ["PATH", "HOME", "DENO_DIR", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR"]
    ) {
      if (env[name] !== undefined) baseEnv[name] = env[name]!;
    }
    const command = {
      executable: Deno.execPath(),
      args: ["run", "--allow-net=127.0.0.1", "--allow-env", "--allow-read", "--allow-write", self],
    };
    let spec: ReturnType<typeof parseBenchSpec>;
    try {
      // BENCH="scenarios=4 distribution=bulk baseline=…/main.ts": see parseBenchSpec.
      spec = parseBenchSpec(env.BENCH ?? "", command);
    } catch (error) {
      if (!(error instanceof BenchSpecError)) throw error;
      console.error(`BENCH="${env.BENCH}": ${error.message}.`);
      return EXIT.usage;
    }
    // The bundle, when `deno task bundle` built it: run as its README line runs it.
    const bundlePath = new URL("./dist/mailchimp-ometria-sync.js", import.meta.url).pathname;
    const bundle = await Deno.stat(bundlePath).then(() => ({
      executable: Deno.execPath(),
      args: [
        "run",
        "--unstable-cron",
        "--unstable-kv",
        "--allow-net=127.0.0.1",
        "--allow-env",
        "--allow-read",
        "--allow-write",
        bundlePath,
      ],
    }), () => undefined);
    return await runBench({
      logger,
      write: (t) => console.log(t),
      baseEnv,
      command,
      ...(bundle ? { bundle } : {}),
      // V8's own collector, present when the bench runs with --v8-flags=--expose-gc.
      ...(typeof (globalThis as { gc?: unknown }).gc === "function"
        ? { collectGarbage: (globalThis as unknown as { gc: () => void }).gc }
        : {}),
      ...spec,
    });
  }
  return undefined;
}

/**
 * The path of this program's main.ts when it runs from source with the deno executable;
 * undefined in a compiled binary (whose executable is not deno) or a bundle (which is not
 * main.ts), where `deno run main.ts` cannot be spawned.
 */
function _sourceEntryPoint(): string | undefined {
  const url = new URL(import.meta.url);
  const executable = Deno.execPath().split(/[\\/]/).pop() ?? "";
  if (url.protocol !== "file:" || !url.pathname.endsWith("/main.ts")) return undefined;
  if (!/^deno(\.exe)?$/.test(executable)) return undefined;
  return url.pathname;
}

/** What differs between the signals of a CLI process and those of the Deploy entry. */
interface _SignalPolicy {
  /** From the first signal to abandoning requests in flight (`hardStop`). */
  graceMs: number;
  /** Says that the first signal came and the program is stopping. */
  announce: (name: Deno.Signal) => void;
  /**
   * What a second signal does. `"exit"`: leave at once with 130 (the state file is only ever
   * replaced atomically, so leaving keeps it valid). `"hard-stop"`: abort `hardStop` now, so
   * runs still save their checkpoints and give their leases back (Deploy kills the instance
   * 5 s after its SIGINT whatever we do).
   */
  again: "exit" | "hard-stop";
  /** Skips a signal this platform does not have (it never sends it) instead of failing. */
  skipMissing: boolean;
}

/**
 * The one SIGINT/SIGTERM handler, installed for both signals: the first signal aborts
 * `stop` (nothing new starts; batches in flight finish) and `graceMs` later `hardStop`; one
 * within a second of it is the same Ctrl-C delivered twice (by the terminal and by
 * `deno task`: see lib/app/signal_kind.ts) and is ignored; a later one does what
 * `policy.again` says. Returns what removes the listeners.
 */
function _handleSignals(
  stop: AbortController,
  hardStop: AbortController,
  policy: _SignalPolicy,
): () => void {
  let firstAt: number | undefined;
  const handler = (name: Deno.Signal) => () => {
    const now = performance.now();
    const kind = signalKind(firstAt, now);
    if (kind === "duplicate") return;
    if (kind === "again") {
      if (policy.again === "hard-stop") return hardStop.abort(new Error(`${name} received again`));
      console.error(`${name} received again: exiting now.`);
      Deno.exit(130);
    }
    firstAt = now;
    policy.announce(name);
    stop.abort(new Error(`${name} received`));
    Deno.unrefTimer(
      setTimeout(() => hardStop.abort(new Error("grace period over")), policy.graceMs),
    );
  };
  const installed: [Deno.Signal, () => void][] = [];
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    const listener = handler(name);
    try {
      Deno.addSignalListener(name, listener);
    } catch (error) {
      if (!policy.skipMissing) throw error;
      continue;
    }
    installed.push([name, listener]);
  }
  return () => {
    for (const [name, listener] of installed) Deno.removeSignalListener(name, listener);
  };
}

/**
 * `main` for the process: whatever escapes it is reported in one line without a stack
 * trace (with every key redacted) and exits 1, so no failure reaches a user as
 * "Uncaught (in promise)".
 */
async function guardedMain(
  args: string[],
  env: Record<string, string | undefined>,
): Promise<number> {
  try {
    return await main(args, env);
  } catch (error) {
    const secrets = envSecrets(env);
    if (error instanceof Deno.errors.NotCapable) {
      // An access no check above foresaw: Deno's message names the resource and the flag.
      console.error(
        `Stopped: ${
          redact(error.message, secrets).replace(/\.?$/, ".")
        } This process was started without ` +
          `that permission (README, "Permissions and why").`,
      );
      return EXIT.usage;
    }
    if (error instanceof StateError) {
      console.error(redact(stateFailureAdvice(error), secrets));
      return EXIT.usage;
    }
    const storage = storageFailureAdvice(error, "the working folder");
    if (storage !== undefined) {
      console.error(redact(storage, secrets));
      return EXIT.usage;
    }
    console.error(
      `Stopped by an unexpected error: ${errorText(error, secrets)}. ` +
        "This is a bug; please report it with the log.",
    );
    return EXIT.failed;
  }
}

/**
 * The Deno Deploy entry, called by `deploy.ts` at its top level: reads the environment,
 * installs the signal handler, registers the cron and starts serving, and returns without
 * awaiting anything, so that the cron is registered before `Deno.serve` starts, where
 * Deploy looks for it (docs.deno.com/deploy/reference/cron/). Every tick is one `--once`
 * run configured from the environment (lib/app/deploy.ts).
 */
export function serveOnDeploy(): void {
  _serveOnDeploy(envObject());
}

function _serveOnDeploy(env: Record<string, string | undefined>): void {
  // Deploy sends SIGINT and kills 5 s later: the first signal stops new runs, and
  // DEPLOY_GRACE_MS later requests in flight are abandoned, so runs save their checkpoints
  // and give their KV leases back before the kill.
  const stop = new AbortController();
  const hardStop = new AbortController();
  const removeSignalHandlers = _handleSignals(stop, hardStop, {
    graceMs: DEPLOY_GRACE_MS,
    announce: (name) =>
      console.error(`${name} received: finishing batches in flight, then stopping`),
    again: "hard-stop",
    skipMissing: true,
  });
  // PORT is for running the Deploy entry locally (tests); Deploy routes to its own port.
  const listen = env.PORT === undefined ? {} : { port: Number(env.PORT) };
  startDeploy({
    env,
    clock: systemClock,
    fetch: globalThis.fetch,
    readTextFile: (path) => Deno.readTextFile(path),
    cron: _denoCron,
    serve: (handler) =>
      Deno.serve({
        ...listen,
        onListen: ({ hostname, port }) =>
          console.error(`Serving /healthz, /status.json and /metrics on ${hostname}:${port}`),
      }, handler),
    stop: stop.signal,
    hardStop: hardStop.signal,
    writeError: (line) => console.error(line),
  }).finished.finally(removeSignalHandlers).then(() => {
    // Everything is saved and given back; what may still be open is the cron's socket to the
    // platform, which would keep the process alive until Deploy's kill.
    Deno.exit();
  });
}

if (import.meta.main) {
  const env = envObject();
  if (isDeploy(env)) {
    // Registered here only because the environment says Deploy, which Deploy may not say
    // where it reads a revision's crons; deploy.ts registers whatever the environment.
    console.error(
      "main.ts is the command line; on Deno Deploy make deploy.ts the entrypoint (deno.json's " +
        "deploy.runtime.entrypoint), which registers its cron whatever the environment.",
    );
    _serveOnDeploy(env);
  } else {
    Deno.exitCode = await guardedMain(Deno.args, env);
  }
}
