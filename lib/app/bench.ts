/**
 * `deno task bench`: measured numbers, not a test. The simulators run in this process with
 * 50 ms of Mailchimp latency; the sync runs as the real CLI in a child process, so its time,
 * peak memory (the child's VmHWM) and requests are the program's own, not the simulators'.
 *
 * 1. One 1,000,000-member list, Ometria not limiting: a full run (time, members/s, peak
 *    memory), then the requests of a run with nothing changed and of a run with 1% changed.
 * 2. 10,000 connections of 100 members each (a connections file, one key): a first tick, a
 *    tick with nothing changed, peak memory and requests per tick.
 * 3. Ometria at its ceiling: two lists of 10,000 members pushed to an account at Ometria's
 *    default 8 requests/s (800 records/s) with 20 ms of Ometria latency: the share of that
 *    ceiling the sync reaches (from process start to exit, and from the first push), the
 *    share of its requests answered 429, and its push requests beside the fewest that carry
 *    every record.
 * 4. Two lists of 100,000 members at once, Ometria not limiting: members/s (and the same
 *    with a baseline build, when one is given, for a before/after on one run).
 * 5. Crashes: a 50,000-member sync with file state, SIGKILLed 4 times mid-run and started
 *    again each time: records Ometria received ÷ 50,000 (1.0 is no resend at all).
 * 6. Deep reconcile of an unchanged list (1,000,000 members; `reconcile=N` in `BENCH`): the
 *    list is synced once, then `reconcile` reads every member, maps and hashes it against the
 *    content ledger: Mailchimp requests (about one per 1000 members), Ometria requests (0 is
 *    the target: nothing differs), wall time and peak memory. Not in the default set (it
 *    repeats scenario 1's full run first): `BENCH="scenarios=6"`.
 * 7. (optional, `scenarios=7 verify=N`) a full `verify` of 100,000 members at Ometria's
 *    Data API rate of 4 requests/s, then a 1,000-member sample (bench_verify.ts).
 * 8. (optional, `scenarios=8 python=DIR`) the original Python tool and this build side by
 *    side on scenario 4's two lists, in `rounds=N` interleaved pairs (3 by default; which
 *    side runs first alternates), each pair's ratio and the median (bench_python.ts).
 *
 * The child runs as users run it: plain `deno run`, no V8 flags (`v8Flags` sets some).
 * When the bundle is built (`deno task bench` builds it first), scenario 1's full run is
 * repeated with `deno run dist/mailchimp-ometria-sync.js`, and both peaks are reported.
 * With `distribution: "bulk"`, half the members of scenarios 1 and 4 come in bulk imports
 * of 1,500 sharing one `last_changed` (the simulator's `bulkImports`), and every scenario
 * reports Mailchimp members served per member and the most Mailchimp connections in use.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import {
  DEFAULT_OMETRIA_BATCH_SIZE,
  DEFAULT_OMETRIA_MAX_REQUESTS_PER_SECOND,
} from "../config/defaults.ts";
import { collectionFor } from "../mapping/contact.ts";
import { compareCopies } from "../sim/compare.ts";
import { MailchimpSimulator } from "../sim/mailchimp_sim.ts";
import { OmetriaSimulator } from "../sim/ometria_sim.ts";
import process from "node:process";
import { benchPython } from "./bench_python.ts";
import { roundOrders } from "./bench_rounds.ts";
import { benchVerify } from "./bench_verify.ts";

/** Options of {@linkcode runBench}. */
export interface BenchOptions {
  logger: Logger;
  write: (text: string) => void;
  /** The program to measure: `deno run … main.ts` as an argument list. */
  command: { executable: string; args: string[] };
  /** Environment the child needs besides the simulators' keys (PATH, HOME, DENO_DIR). */
  baseEnv: Record<string, string>;
  /** Members of scenario 1's list. @default {1_000_000} */
  members?: number;
  /** Connections of scenario 2. @default {10_000} */
  connections?: number;
  /**
   * Ometria requests per second allowed by the simulated account of scenario 1; 1000 (the
   * most the sync can be set to) or more means not limiting. @default {1000}
   */
  ometriaRate?: number;
  /** Which scenarios to run, by number (1 to 6). @default {[1, 2, 3, 4, 5]} */
  scenarios?: readonly number[];
  /** Members of each of scenario 3's two lists. @default {10_000} */
  ceilingMembers?: number;
  /** Members of each of scenario 4's two lists. @default {100_000} */
  pairMembers?: number;
  /** Members of scenario 5's list. @default {50_000} */
  crashMembers?: number;
  /** Members of scenario 6's list (deep reconcile, unchanged). @default {1_000_000} */
  reconcileMembers?: number;
  /** Members of scenario 7's list (a full verify at 4 requests/s). @default {100_000} */
  verifyMembers?: number;
  /** `--v8-flags` of the child (empty: none). @default {""} */
  v8Flags?: string;
  /**
   * A full garbage collection of this process, run before each measured child starts (and
   * before each run of the Python tool): the simulators of earlier runs are garbage, and
   * their collection (a heap of about 1 GB collected 48 s into scenario 8) otherwise lands
   * inside whichever run comes next, on the cores it shares. main.ts passes V8's `gc` when
   * the bench runs with `--v8-flags=--expose-gc` (`deno task bench` does); absent, none.
   */
  collectGarbage?: () => void;
  /**
   * How scenarios 1 and 4 spread `last_changed`: one by one, or half the members in bulk
   * imports of 1,500 sharing one second. @default {"independent"}
   */
  distribution?: "independent" | "bulk";
  /** A checkout of the original Python tool: scenario 8 runs it beside this build. */
  pythonDir?: string;
  /**
   * Interleaved pairs of scenario 8 (a whole number ≥ 1): each round runs both sides once on
   * fresh simulators, the Python tool first in odd rounds and this build first in even ones,
   * and the scenario reports the median ratio. @default {3}
   */
  rounds?: number;
  /**
   * The bundle (`deno task bundle` → dist/mailchimp-ometria-sync.js) as `deno run …` arguments:
   * scenario 1's full run is repeated with it, so both ways users run the product report
   * their peak RSS. Absent (not built): the bench says so.
   */
  bundle?: { executable: string; args: string[] };
  /** An earlier build to run scenario 4 with too (before/after on one run), and its name. */
  baseline?: { name: string; command: { executable: string; args: string[] } };
}

const LATENCY_MS = 50;
/** Ometria's documented default rate and batch size: the ceiling of scenario 3. */
const CEILING_RATE = DEFAULT_OMETRIA_MAX_REQUESTS_PER_SECOND;
const CEILING_BATCH = DEFAULT_OMETRIA_BATCH_SIZE;
const OMETRIA_LATENCY_MS = 20;
/** The most requests/s the sync can be set to send to Ometria: "not limiting". */
const UNLIMITED = 1000;
const MINUTE = 60_000;

interface _Measured {
  code: number;
  seconds: number;
  peakRssBytes: number | undefined;
  mailchimpRequests: number;
  ometriaRequests: number;
  /** 429 answers among them (both APIs). */
  throttled: number;
  /** Seconds from the start to the first Ometria request seen (sampled every 100 ms). */
  firstPushSeconds: number | undefined;
  /** Mailchimp members served in full, and ids only. */
  membersServed: number;
  idsServed: number;
  /** Most Mailchimp requests in flight at once. */
  maxConnections: number;
  /** CPU seconds of this process (the simulators) while the child ran. */
  hostCpuSeconds: number;
}

/** The bulk-import distribution of the bench (see {@linkcode BenchOptions.distribution}). */
const _BULK = { share: 0.5, size: 1500 };

function _spread(options: BenchOptions) {
  return options.distribution === "bulk" ? { bulkImports: _BULK } : {};
}

/** "members served 1.02 (+0.10 ids) per member, at most 10 connections". */
function _reads(run: _Measured, members: number): string {
  return `Mailchimp served ${(run.membersServed / members).toFixed(2)} members (+${
    (run.idsServed / members).toFixed(2)
  } ids only) per member, at most ${run.maxConnections} connections`;
}

const mib = (bytes: number | undefined) =>
  bytes === undefined ? "n/a" : `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
const n = (value: number) => value.toLocaleString("en-US");

/**
 * The child's resident memory in bytes, from `ps` (Deno only lets a fully privileged
 * process read another process's /proc files); sampled, so a peak between samples is missed.
 */
async function _rss(pid: number): Promise<number | undefined> {
  try {
    const out = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(pid)] }).output();
    const kb = Number(new TextDecoder().decode(out.stdout).trim());
    return Number.isFinite(kb) && kb > 0 ? kb * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Runs the CLI once, sampling its peak memory until it exits. */
async function _measure(
  options: BenchOptions,
  sims: { mailchimp: MailchimpSimulator; ometria: OmetriaSimulator },
  args: string[],
  env: Record<string, string>,
  command = options.command,
): Promise<_Measured> {
  options.collectGarbage?.();
  sims.mailchimp.resetStats();
  sims.ometria.resetStats();
  const cpuBefore = _cpuSeconds();
  const started = performance.now();
  const child = new Deno.Command(command.executable, {
    args: [..._withFlags(command.args, options.v8Flags ?? ""), ...args],
    env: { ...options.baseEnv, ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let peak: number | undefined;
  let finished = false;
  const status = child.status.finally(() => finished = true);
  const errors = new Response(child.stderr).text();
  let firstPush: number | undefined;
  while (!finished) {
    if (firstPush === undefined && sims.ometria.stats.requests > 0) firstPush = performance.now();
    const sample = await _rss(child.pid);
    if (sample !== undefined) peak = Math.max(peak ?? 0, sample);
    await Promise.race([status, new Promise((r) => setTimeout(r, 100))]);
  }
  const { code } = await status;
  const hostCpuSeconds = _cpuSeconds() - cpuBefore;
  const stderr = await errors;
  if (code !== 0) options.write(`  (exit ${code}) ${stderr.split("\n").slice(-4).join(" | ")}`);
  return {
    code,
    seconds: (performance.now() - started) / 1000,
    peakRssBytes: peak,
    mailchimpRequests: sims.mailchimp.stats.requests,
    ometriaRequests: sims.ometria.stats.requests,
    throttled: sims.mailchimp.stats.status429 + sims.ometria.stats.status429,
    firstPushSeconds: firstPush === undefined ? undefined : (firstPush - started) / 1000,
    membersServed: sims.mailchimp.stats.membersServed,
    idsServed: sims.mailchimp.stats.idsServed,
    maxConnections: sims.mailchimp.stats.maxInFlight,
    hostCpuSeconds,
  };
}

/** `deno run …` with `--v8-flags=<flags>` after `run` (unless empty or already there). */
function _withFlags(args: readonly string[], flags: string): string[] {
  if (flags === "" || args[0] !== "run" || args.some((a) => a.startsWith("--v8-flags"))) {
    return [...args];
  }
  return ["run", `--v8-flags=${flags}`, ...args.slice(1)];
}

async function _sims(ometriaRate: number, ometriaLatencyMs = 0) {
  const mailchimp = await MailchimpSimulator.start({ latencyMs: LATENCY_MS });
  const ometria = await OmetriaSimulator.start({
    // At the sync's own maximum the simulated account does not limit at all.
    maxRequestsPerSecond: ometriaRate >= UNLIMITED ? 0 : ometriaRate,
    queueLimit: 100_000_000,
    ingestPerSecond: 100_000_000,
    latencyMs: ometriaLatencyMs,
  });
  return { mailchimp, ometria };
}

/** CPU seconds (user + system) of this process so far: the simulators' share of the machine. */
function _cpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** Runs both scenarios and prints their numbers; returns 0, or 1 if anything failed. */
export async function runBench(options: BenchOptions): Promise<number> {
  const { write } = options;
  const rate = options.ometriaRate ?? UNLIMITED;
  const members = options.members ?? 1_000_000;
  const count = options.connections ?? 10_000;
  const scenarios = new Set(options.scenarios ?? [1, 2, 3, 4, 5]);
  let ok = true;
  const dir = await Deno.makeTempDir({ prefix: "bench_" });
  write(`deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores`);
  write(
    `Simulators in-process with ${LATENCY_MS} ms Mailchimp latency; the sync runs as the CLI in a child process (--v8-flags=${
      options.v8Flags ?? ""
    }); ${
      options.collectGarbage
        ? "the simulators' process collects its garbage before each measured run"
        : "the simulators' process cannot collect its garbage between runs (run it with --v8-flags=--expose-gc, as deno task bench does)"
    }\n`,
  );
  try {
    // Scenario 1: one big list.
    if (scenarios.has(1)) {
      const sims = await _sims(rate);
      try {
        const id = "bench00001";
        sims.mailchimp.addList(id, {
          members,
          seed: 11,
          lastChangedTo: Date.now() - MINUTE,
          ..._spread(options),
        });
        const env = {
          MAILCHIMP_API_KEY: sims.mailchimp.apiKey,
          MAILCHIMP_BASE_URL: sims.mailchimp.url,
          OMETRIA_API_KEY: sims.ometria.apiKey,
          OMETRIA_BASE_URL: sims.ometria.url,
          OMETRIA_MAX_REQUESTS_PER_SECOND: String(rate),
          MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
          LOGGING_LEVEL: "INFO",
          LOG_FILE: "",
        };
        const args = ["--once", "--force", "--state", `${dir}/one.json`, id];
        const full = await _measure(options, sims, args, env);
        write(
          `Scenario 1: one list of ${n(members)} members (Ometria account: ${
            rate >= UNLIMITED ? "not limiting" : `${rate} req/s`
          })`,
        );
        write(
          `  full run:        ${full.seconds.toFixed(1)} s, ${
            n(Math.round(members / full.seconds))
          } members/s, peak RSS ${
            mib(full.peakRssBytes)
          }, ${full.mailchimpRequests} Mailchimp + ${full.ometriaRequests} Ometria requests (${full.throttled} answered 429)`,
        );
        write(`                   ${_reads(full, members)}`);
        if (options.bundle) {
          const bundled = await _measure(
            options,
            sims,
            ["--once", "--force", "--state", `${dir}/one_bundle.json`, id],
            env,
            options.bundle,
          );
          write(
            `  bundle, full:    ${bundled.seconds.toFixed(1)} s, ${
              n(Math.round(members / bundled.seconds))
            } members/s, peak RSS ${mib(bundled.peakRssBytes)} (exit ${bundled.code})`,
          );
          ok &&= bundled.code === 0;
        } else write("  bundle:          not built (deno task bundle), not measured");
        const idle = await _measure(options, sims, args, env);
        write(
          `  nothing changed: ${idle.mailchimpRequests} Mailchimp + ${idle.ometriaRequests} Ometria requests, ${
            idle.seconds.toFixed(1)
          } s (process start included)`,
        );
        sims.mailchimp.changeMembers(id, Math.round(members / 100), 3);
        await new Promise((r) => setTimeout(r, 3_000)); // past the 2-second margin
        const some = await _measure(options, sims, args, env);
        write(
          `  1% changed:      ${some.mailchimpRequests} Mailchimp + ${some.ometriaRequests} Ometria requests, ${
            some.seconds.toFixed(1)
          } s`,
        );
        const c = compareCopies(
          sims.mailchimp.truth(id),
          sims.ometria.contacts(collectionFor(id)),
          id,
        );
        write(
          `  copy: ${c.missing.length} missing, ${c.stale.length} stale, ${c.extra.length} extra\n`,
        );
        ok &&= full.code === 0 && idle.code === 0 && some.code === 0 &&
          c.missing.length + c.stale.length === 0;
      } finally {
        await sims.mailchimp.close();
        await sims.ometria.close();
      }
    }

    // Scenario 2: many small connections on one Mailchimp key and one Ometria account.
    if (scenarios.has(2)) {
      const manyRate = Math.max(rate, 1000);
      const sims = await _sims(manyRate);
      try {
        const entries = [];
        for (let i = 0; i < count; i++) {
          const id = `conn${String(i).padStart(6, "0")}`;
          sims.mailchimp.addList(id, {
            members: 100,
            seed: 1000 + i,
            lastChangedTo: Date.now() - MINUTE,
          });
          entries.push({
            id,
            list_id: id,
            mailchimp_api_key_env: "MAILCHIMP_API_KEY",
            ometria_api_key_env: "OMETRIA_API_KEY",
          });
        }
        const file = `${dir}/connections.json`;
        await Deno.writeTextFile(file, JSON.stringify({ connections: entries }));
        const env = {
          MAILCHIMP_API_KEY: sims.mailchimp.apiKey,
          MAILCHIMP_BASE_URL: sims.mailchimp.url,
          OMETRIA_API_KEY: sims.ometria.apiKey,
          OMETRIA_BASE_URL: sims.ometria.url,
          OMETRIA_MAX_REQUESTS_PER_SECOND: String(manyRate),
          MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS: "20",
          LOGGING_LEVEL: "WARNING",
          LOG_FILE: "",
        };
        const args = ["--once", "--connections", file, "--state", `${dir}/many.json`];
        const first = await _measure(options, sims, args, env);
        write(
          `Scenario 2: ${
            n(count)
          } connections of 100 members (one key; 20 lists at once; Ometria ${manyRate} req/s)`,
        );
        write(
          `  first tick:      ${first.seconds.toFixed(1)} s, ${
            n(first.mailchimpRequests)
          } Mailchimp + ${n(first.ometriaRequests)} Ometria requests, peak RSS ${
            mib(first.peakRssBytes)
          }`,
        );
        const idle = await _measure(options, sims, args, env);
        write(
          `  nothing changed: ${idle.seconds.toFixed(1)} s, ${
            n(idle.mailchimpRequests)
          } Mailchimp + ${n(idle.ometriaRequests)} Ometria requests, peak RSS ${
            mib(idle.peakRssBytes)
          }`,
        );
        ok &&= first.code === 0 && idle.code === 0;
      } finally {
        await sims.mailchimp.close();
        await sims.ometria.close();
      }
    }

    if (scenarios.has(3)) ok = await _ceiling(options, dir) && ok;
    if (scenarios.has(4)) ok = await _pair(options, dir) && ok;
    if (scenarios.has(5)) ok = await _crashes(options, dir) && ok;
    if (scenarios.has(6)) ok = await _deepReconcile(options, dir) && ok;
    if (scenarios.has(7)) {
      ok = await benchVerify({
        write,
        dir,
        members: options.verifyMembers ?? 100_000,
        measure: (sims, args, env) => _measure(options, sims, args, env),
      }) && ok;
    }
    if (scenarios.has(8)) {
      if (options.pythonDir === undefined) {
        write("Scenario 8 needs python=DIR: a checkout of github.com/ruipatcheco/data_sync");
        ok = false;
      } else {
        ok = await benchPython({
          write,
          dir,
          pythonDir: options.pythonDir,
          members: options.pairMembers ?? 100_000,
          bulkImports: options.distribution === "bulk" ? _BULK : undefined,
          baseEnv: options.baseEnv,
          measure: (sims, args, env) => _measure(options, sims, args, env),
          cpuSeconds: _cpuSeconds,
          ...(options.collectGarbage ? { collectGarbage: options.collectGarbage } : {}),
          orders: roundOrders(options.rounds),
        }) && ok;
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return ok ? 0 : 1;
}

/**
 * Scenario 3: how close the sync comes to Ometria's ceiling. Two lists are synced at once
 * (the default two runs), both into one account limited to 8 requests/s, so pushing is the
 * bottleneck: records/s over 800 is the utilisation, and 429s are requests wasted.
 */
async function _ceiling(options: BenchOptions, dir: string): Promise<boolean> {
  const { write } = options;
  const members = options.ceilingMembers ?? 10_000;
  const sims = await _sims(CEILING_RATE, OMETRIA_LATENCY_MS);
  try {
    const ids = ["ceiling001", "ceiling002"];
    ids.forEach((id, i) =>
      sims.mailchimp.addList(id, { members, seed: 21 + i, lastChangedTo: Date.now() - MINUTE })
    );
    const env = {
      MAILCHIMP_API_KEY: sims.mailchimp.apiKey,
      MAILCHIMP_BASE_URL: sims.mailchimp.url,
      OMETRIA_API_KEY: sims.ometria.apiKey,
      OMETRIA_BASE_URL: sims.ometria.url,
      OMETRIA_MAX_REQUESTS_PER_SECOND: String(CEILING_RATE),
      MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
      LOGGING_LEVEL: "ERROR",
      LOG_FILE: "",
    };
    const run = await _measure(
      options,
      sims,
      ["--once", "--force", "--state", `${dir}/ceiling.json`, ...ids],
      env,
    );
    const records = sims.ometria.stats.recordsAccepted;
    const ceiling = CEILING_RATE * CEILING_BATCH;
    const perSecond = records / run.seconds;
    // The process's start and first Mailchimp page are not pushing time.
    const pushing = run.seconds - (run.firstPushSeconds ?? 0);
    const perPushingSecond = records / pushing;
    const pushes = sims.ometria.stats.requests;
    // What the ceiling is counted in: push requests (the rest, `_errors`, has a limit of its own).
    const pushRequests = sims.ometria.stats.pushRequests;
    const fewest = Math.ceil(records / CEILING_BATCH);
    write(
      `Scenario 3: Ometria at its ceiling, 2 lists × ${
        n(members)
      } members, ${CEILING_RATE} req/s × ${CEILING_BATCH} records (${ceiling} records/s), ` +
        `${LATENCY_MS} ms Mailchimp and ${OMETRIA_LATENCY_MS} ms Ometria latency`,
    );
    write(
      `  full run:        ${run.seconds.toFixed(1)} s (process start included), ${
        n(Math.round(perSecond))
      } records/s = ${
        (100 * perSecond / ceiling).toFixed(1)
      }% of the ceiling; ${pushes} Ometria requests, ${run.throttled} answered 429 (${
        (100 * run.throttled / Math.max(1, pushes)).toFixed(1)
      }%)`,
    );
    write(
      `  while pushing:   ${pushing.toFixed(1)} s from the first push to the exit, ${
        n(Math.round(perPushingSecond))
      } records/s = ${(100 * perPushingSecond / ceiling).toFixed(1)}% of the ceiling`,
    );
    write(
      `  pushes:          ${pushRequests} (${fewest} whole batches carry every record), ${
        pushes - pushRequests
      } other Ometria requests`,
    );
    const missing = ids.reduce(
      (sum, id) =>
        sum +
        compareCopies(sims.mailchimp.truth(id), sims.ometria.contacts(collectionFor(id)), id)
          .missing.length,
      0,
    );
    write(`  copy: ${missing} missing\n`);
    return run.code === 0 && missing === 0;
  } finally {
    await sims.mailchimp.close();
    await sims.ometria.close();
  }
}

function _env(sims: { mailchimp: MailchimpSimulator; ometria: OmetriaSimulator }, rate: number) {
  return {
    MAILCHIMP_API_KEY: sims.mailchimp.apiKey,
    MAILCHIMP_BASE_URL: sims.mailchimp.url,
    OMETRIA_API_KEY: sims.ometria.apiKey,
    OMETRIA_BASE_URL: sims.ometria.url,
    OMETRIA_MAX_REQUESTS_PER_SECOND: String(rate),
    MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
    LOGGING_LEVEL: "ERROR",
    LOG_FILE: "",
  };
}

/**
 * Scenario 4: two 100,000-member lists at once (the default two runs), Ometria not
 * limiting: members/s of this build and, when given, of a baseline build on the same run.
 */
async function _pair(options: BenchOptions, dir: string): Promise<boolean> {
  const { write } = options;
  const members = options.pairMembers ?? 100_000;
  const ids = ["pair000001", "pair000002"];
  const builds = [
    { name: "this build", command: options.command },
    ...(options.baseline ? [options.baseline] : []),
  ];
  write(
    `Scenario 4: 2 lists × ${
      n(members)
    } members at once, Ometria not limiting, ${LATENCY_MS} ms Mailchimp latency`,
  );
  let ok = true;
  for (const [i, build] of builds.entries()) {
    const sims = await _sims(UNLIMITED);
    try {
      ids.forEach((id, j) =>
        sims.mailchimp.addList(id, {
          members,
          seed: 41 + j,
          lastChangedTo: Date.now() - MINUTE,
          ..._spread(options),
        })
      );
      const run = await _measure(
        options,
        sims,
        ["--once", "--force", "--state", `${dir}/pair${i}.json`, ...ids],
        _env(sims, UNLIMITED),
        build.command,
      );
      const missing = ids.reduce(
        (sum, id) =>
          sum +
          compareCopies(sims.mailchimp.truth(id), sims.ometria.contacts(collectionFor(id)), id)
            .missing.length,
        0,
      );
      write(
        `  ${build.name.padEnd(16)} ${run.seconds.toFixed(1)} s (process start included), ${
          n(Math.round(2 * members / run.seconds))
        } members/s, peak RSS ${
          mib(run.peakRssBytes)
        }, ${run.mailchimpRequests} Mailchimp + ${run.ometriaRequests} Ometria requests; ${missing} missing`,
      );
      write(`  ${"".padEnd(16)} ${_reads(run, 2 * members)}`);
      ok &&= run.code === 0 && missing === 0;
    } finally {
      await sims.mailchimp.close();
      await sims.ometria.close();
    }
  }
  write("");
  return ok;
}

/**
 * Scenario 5: what a crash costs. A file-state `--once` child syncing one list is killed
 * with SIGKILL 4 times, each after about a fifth of the list more reached Ometria, and
 * started again each time; the last start finishes. Every record Ometria received beyond
 * the list's size was sent again because of a crash.
 */
async function _crashes(options: BenchOptions, dir: string): Promise<boolean> {
  const { write } = options;
  const members = options.crashMembers ?? 50_000;
  const kills = 4;
  const id = "crash00001";
  // 100 requests/s: the run lasts seconds, so every kill lands mid-run.
  const sims = await _sims(100);
  try {
    sims.mailchimp.addList(id, { members, seed: 51, lastChangedTo: Date.now() - MINUTE });
    const env = { ...options.baseEnv, ..._env(sims, 100) };
    const args = [
      ..._withFlags(options.command.args, options.v8Flags ?? ""),
      "--once",
      "--state",
      `${dir}/crash.json`,
      id,
    ];
    let killed = 0;
    for (let i = 0; i <= kills; i++) {
      const child = new Deno.Command(options.command.executable, {
        args,
        env,
        clearEnv: true,
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      let exited = false;
      const status = child.status.finally(() => exited = true);
      if (i < kills) {
        const target = sims.ometria.stats.recordsReceived + members / (kills + 1);
        while (!exited && sims.ometria.stats.recordsReceived < target) {
          await new Promise((r) => setTimeout(r, 5));
        }
        if (!exited) {
          child.kill("SIGKILL");
          killed++;
        }
      }
      await status;
    }
    const received = sims.ometria.stats.recordsReceived;
    const c = compareCopies(sims.mailchimp.truth(id), sims.ometria.contacts(collectionFor(id)), id);
    write(
      `Scenario 5: ${
        n(members)
      } members, file state, ${killed} SIGKILLs mid-run (Ometria 100 req/s)`,
    );
    write(
      `  records received ${n(received)} = ${(received / members).toFixed(3)}× the list; ` +
        `${
          n(Math.round((received - members) / Math.max(1, killed)))
        } re-sent per crash; copy: ${c.missing.length} missing, ${c.stale.length} stale\n`,
    );
    return c.missing.length + c.stale.length === 0;
  } finally {
    await sims.mailchimp.close();
    await sims.ometria.close();
  }
}

/**
 * Scenario 6: the cost of a deep reconcile of a list where nothing changed. One full run
 * builds the content ledger; then `reconcile` reads every member (1000 a page), maps and
 * hashes each, and finds every hash equal to the acknowledged one: it should send Ometria
 * nothing at all.
 */
async function _deepReconcile(options: BenchOptions, dir: string): Promise<boolean> {
  const { write } = options;
  const members = options.reconcileMembers ?? 1_000_000;
  const id = "deeprec001";
  const sims = await _sims(UNLIMITED);
  try {
    sims.mailchimp.addList(id, {
      members,
      seed: 61,
      lastChangedTo: Date.now() - MINUTE,
      ..._spread(options),
    });
    const env = { ..._env(sims, UNLIMITED), LOGGING_LEVEL: "INFO" };
    const state = `${dir}/deep.json`;
    const full = await _measure(options, sims, ["--once", "--force", "--state", state, id], env);
    const rec = await _measure(options, sims, ["reconcile", "--state", state, id], env);
    const pushed = sims.ometria.stats.recordsReceived;
    write(`Scenario 6: deep reconcile of ${n(members)} unchanged members (file state)`);
    write(
      `  full run first:  ${full.seconds.toFixed(1)} s, ${full.mailchimpRequests} Mailchimp + ` +
        `${full.ometriaRequests} Ometria requests, peak RSS ${mib(full.peakRssBytes)}`,
    );
    write(
      `  reconcile:       ${rec.seconds.toFixed(1)} s (process start included), ${
        n(Math.round(members / rec.seconds))
      } members/s, ${n(rec.mailchimpRequests)} Mailchimp + ${rec.ometriaRequests} Ometria ` +
        `requests (${pushed} records sent), peak RSS ${mib(rec.peakRssBytes)}\n`,
    );
    return full.code === 0 && rec.code === 0 && rec.ometriaRequests === 0;
  } finally {
    await sims.mailchimp.close();
    await sims.ometria.close();
  }
}

/**
 * Reads bench options from words like `scenarios=1,4 members=200000 distribution=bulk
 * baseline=/path/to/main.ts v8flags=…` or `scenarios=8 python=DIR rounds=5` (main.ts passes
 * its `BENCH` variable). A word it cannot read throws a {@linkcode BenchSpecError} naming it and
 * what it takes: an unknown word, a count that is not a whole number ≥ 1, a scenario outside 1
 * to 8, an empty `python=` or `baseline=`. main.ts prints it and exits 2.
 */
export function parseBenchSpec(
  spec: string,
  command: BenchOptions["command"],
): Partial<BenchOptions> {
  const out: Partial<BenchOptions> = {};
  for (const word of spec.split(/\s+/).filter((w) => w !== "")) {
    // At the first "=" only: a value may hold more (`v8flags=--max-old-space-size=48`).
    const at = word.indexOf("=");
    const key = at < 0 ? word : word.slice(0, at);
    const value = at < 0 ? "" : word.slice(at + 1);
    // Own keys only: `constructor=5` must not find Object.prototype's.
    const count = Object.hasOwn(_COUNT_WORDS, key) ? _COUNT_WORDS[key] : undefined;
    if (count !== undefined) out[count] = _wholeNumber(word, key, value);
    else if (key === "scenarios") out.scenarios = _scenarios(word, value);
    else if (key === "distribution" && (value === "bulk" || value === "independent")) {
      out.distribution = value;
    } else if (key === "v8flags") out.v8Flags = value;
    else if (key === "python" && value !== "") out.pythonDir = value;
    else if (key === "baseline" && value !== "") {
      const args = [...command.args];
      args[args.length - 1] = value;
      out.baseline = { name: "baseline", command: { executable: command.executable, args } };
    } else {
      throw new BenchSpecError(
        `Cannot read bench option '${word}': the words are ${_WORDS} (README, "Simulators, demo and benchmark")`,
      );
    }
  }
  return out;
}

/** A `BENCH` word the bench cannot read; its message says which and what it takes. */
export class BenchSpecError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = "BenchSpecError";
  }
}

/** The words that take a count (a whole number ≥ 1), and the option each sets. */
const _COUNT_WORDS: Record<
  string,
  | "members"
  | "pairMembers"
  | "ceilingMembers"
  | "crashMembers"
  | "reconcileMembers"
  | "verifyMembers"
  | "connections"
  | "rounds"
> = {
  members: "members",
  pair: "pairMembers",
  ceiling: "ceilingMembers",
  crash: "crashMembers",
  reconcile: "reconcileMembers",
  verify: "verifyMembers",
  connections: "connections",
  rounds: "rounds",
};
const _WORDS = `scenarios=1,…,8, ${
  Object.keys(_COUNT_WORDS).map((k) => `${k}=N`).join(", ")
}, distribution=bulk|independent, v8flags=…, python=DIR, baseline=…/main.ts`;

function _wholeNumber(word: string, key: string, value: string): number {
  const num = Number(value);
  // Number("") is 0 and Number("x") NaN: both fail here, as do 0, negatives and fractions.
  if (value === "" || !Number.isSafeInteger(num) || num < 1) {
    throw new BenchSpecError(
      `Cannot read bench option '${word}': ${key} must be a whole number ≥ 1`,
    );
  }
  return num;
}

function _scenarios(word: string, value: string): number[] {
  const list = value.split(",").map(Number);
  if (value === "" || list.some((n) => !Number.isInteger(n) || n < 1 || n > 8)) {
    throw new BenchSpecError(
      `Cannot read bench option '${word}': scenarios are numbers from 1 to 8, separated by commas`,
    );
  }
  return list;
}
