/**
 * Bench scenario 8 (`BENCH="scenarios=8 python=DIR"`): the original Python tool and this
 * build side by side in one run, on the same doubles: two lists of `pair` members (100,000
 * by default) synced at once from a fresh state, Mailchimp at 50 ms, Ometria at 20 ms and not
 * limiting (it takes the Python tool's 1000-record requests to its legacy `/record`; this
 * build sends its own ≤ 100 to `/v2/push`). With `distribution=bulk`, half the members come in
 * bulk imports of 1,500 sharing one `last_changed`.
 *
 * One pair swings by a fifth on a shared 2-core machine, so the scenario runs `rounds=N`
 * interleaved pairs (3 by default): each round runs both sides once, the Python tool first in
 * odd rounds and this build first in even ones, so neither side always runs on a machine
 * the other has just left (bench_rounds.ts holds the order and the median). Every run starts
 * on fresh simulators and a fresh state (a fresh copy of the tool for its `sync_jobs.json`, a
 * fresh state file for this build). Each round prints both sides' lines and its ratio; the
 * scenario ends with the median ratio over the pairs, every pair's ratio, and each side's
 * median seconds. It fails when a side failed, or this build left members missing, in any
 * round.
 *
 * `DIR` is a checkout of the original tool (github.com/ruipatcheco/data_sync). Nothing of it is
 * in this repository: the bench copies it to a temporary folder and points its two hard-coded
 * base URLs at the simulators, then runs `python3 syncModule.py <list ids>` (it needs Python 3
 * and `requests`, Debian's `python3-requests`). The tool never exits (it polls every 60 s):
 * its first round ends when it logs "Persisting sync jobs", and it is stopped there.
 *
 * Members/s counts members Ometria holds at the end over each process's wall time, start
 * included; a round's ratio is this build's members/s over the tool's. Each side's line also
 * gives the CPU the simulators took meanwhile: they share the machine's cores with the side
 * being measured (real APIs cost the client no CPU). The Python tool starts its pages at
 * offset `count` (page 1 × count), so it never sends each list's first 1000 members: its
 * count is what it delivered, and it is printed.
 *
 * @module
 */
import { collectionFor } from "../mapping/contact.ts";
import { compareCopies } from "../sim/compare.ts";
import { MailchimpSimulator } from "../sim/mailchimp_sim.ts";
import { OmetriaSimulator } from "../sim/ometria_sim.ts";
import {
  type BenchSide,
  roundRatio,
  type RoundResult,
  type SideResult,
  summarizeRounds,
} from "./bench_rounds.ts";
import type { VerifyBenchDeps } from "./bench_verify.ts";

/** What scenario 8 needs from the bench. */
export interface PythonBenchDeps {
  write: (text: string) => void;
  dir: string;
  /** The original tool's checkout. */
  pythonDir: string;
  members: number;
  bulkImports: { share: number; size: number } | undefined;
  /** PATH and HOME for the Python child. */
  baseEnv: Record<string, string>;
  /** Runs this build's CLI once against the simulators (bench.ts's measure). */
  measure: VerifyBenchDeps["measure"];
  /**
   * CPU seconds (user + system) this process has used so far: the simulators run in it, so
   * the difference over a side's run is what the doubles took of the machine's cores then.
   */
  cpuSeconds: () => number;
  /** This process's full garbage collection before the tool runs (bench.ts's option). */
  collectGarbage?: () => void;
  /** Each round's order of the two sides (bench_rounds.ts's `roundOrders`). */
  orders: readonly (readonly BenchSide[])[];
}

const MINUTE = 60_000;
const IDS = ["pycmp00001", "pycmp00002"];
/** The tool's lines that name the real APIs, and what the bench puts in their place. */
const MAILCHIMP_LINE =
  'MAILCHIMP_BASE_URL = "https://{}.api.mailchimp.com/3.0/".format(DATA_CENTER)';
const OMETRIA_LINE =
  'OMETRIA_BASE_URL = "https://api-demo-ingest.ew1-prod.ew1.prod.ometria.cloud/"';

async function _sims(deps: PythonBenchDeps) {
  const mailchimp = await MailchimpSimulator.start({ latencyMs: 50 });
  const ometria = await OmetriaSimulator.start({
    maxRequestsPerSecond: 0,
    maxBatchRecords: 1000,
    queueLimit: 100_000_000,
    ingestPerSecond: 100_000_000,
    latencyMs: 20,
  });
  IDS.forEach((id, j) =>
    mailchimp.addList(id, {
      members: deps.members,
      seed: 81 + j,
      lastChangedTo: Date.now() - MINUTE,
      ...(deps.bulkImports ? { bulkImports: deps.bulkImports } : {}),
    })
  );
  return { mailchimp, ometria };
}

/** Copies the tool to `to` with its base URLs on the simulators; a clear error if it can't. */
async function _copyTool(from: string, to: string, urls: { mailchimp: string; ometria: string }) {
  await Deno.mkdir(to, { recursive: true });
  for (const sub of ["api", "classes", "logger", "utils"]) {
    await Deno.mkdir(`${to}/${sub}`, { recursive: true });
    for await (const entry of Deno.readDir(`${from}/${sub}`)) {
      if (entry.isFile && entry.name.endsWith(".py")) {
        await Deno.copyFile(`${from}/${sub}/${entry.name}`, `${to}/${sub}/${entry.name}`);
      }
    }
  }
  await Deno.copyFile(`${from}/syncModule.py`, `${to}/syncModule.py`);
  const patch = async (file: string, line: string, url: string) => {
    const text = await Deno.readTextFile(`${to}/${file}`);
    if (!text.includes(line)) {
      throw new Error(`${from}/${file} has no line '${line}': is it the original tool?`);
    }
    await Deno.writeTextFile(
      `${to}/${file}`,
      text.replace(line, line.split(" = ")[0] + ` = "${url}/"`),
    );
  };
  await patch("api/mailchimpAPIModule.py", MAILCHIMP_LINE, urls.mailchimp);
  await patch("api/ometriaAPIModule.py", OMETRIA_LINE, urls.ometria);
}

/** Runs the tool until its first round is persisted; its wall time in seconds. */
async function _runPython(deps: PythonBenchDeps, tool: string, env: Record<string, string>) {
  const started = performance.now();
  const child = new Deno.Command("python3", {
    args: ["syncModule.py", ...IDS],
    cwd: tool,
    env: { ...deps.baseEnv, ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let tail = "";
  let seconds: number | undefined;
  const decoder = new TextDecoder();
  for await (const chunk of child.stderr) {
    tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4000);
    if (tail.includes("Persisting sync jobs")) {
      seconds = (performance.now() - started) / 1000;
      break;
    }
  }
  try {
    child.kill("SIGKILL");
  } catch {
    // It exited by itself: a failure, reported below.
  }
  await child.status;
  if (seconds === undefined) throw new Error(`the Python tool stopped early: ${tail.slice(-400)}`);
  return seconds;
}

function _cpu(seconds: number): string {
  return `the simulators took ${seconds.toFixed(1)} s of CPU meanwhile`;
}

const _message = (error: unknown) => error instanceof Error ? error.message : String(error);

/**
 * The Python tool once, on fresh simulators and a fresh copy of the tool (its
 * `sync_jobs.json` lands in the copy: an earlier round's would make it sync only what
 * changed since). Writes its line; undefined when it failed.
 */
async function _pythonSide(
  deps: PythonBenchDeps,
  round: number,
  label: string,
): Promise<SideResult | undefined> {
  const sims = await _sims(deps);
  try {
    const tool = `${deps.dir}/python-tool-${round}`;
    await _copyTool(deps.pythonDir, tool, {
      mailchimp: sims.mailchimp.url,
      ometria: sims.ometria.url,
    });
    deps.collectGarbage?.();
    const cpuBefore = deps.cpuSeconds();
    const seconds = await _runPython(deps, tool, {
      // The tool sends the key as Basic's whole value: "user:key" in base64 is what it needs.
      MAILCHIMP_API_KEY: btoa(`python:${sims.mailchimp.apiKey}`),
      OMETRIA_API_KEY: sims.ometria.apiKey,
      BULK_MEMBER_COUNT: "1000",
      MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS: "2",
      LOGGING_LEVEL: "INFO",
      LOG_FILE: `${deps.dir}/python-${round}.log`,
    });
    const doublesCpu = deps.cpuSeconds() - cpuBefore;
    const held = sims.ometria.legacyRecords().size;
    deps.write(
      `${label}Python tool      ${seconds.toFixed(1)} s, ${held.toLocaleString("en-US")} of ${
        (2 * deps.members).toLocaleString("en-US")
      } members delivered, ${
        Math.round(held / seconds).toLocaleString("en-US")
      } members/s; ${sims.mailchimp.stats.requests} Mailchimp + ${sims.ometria.stats.requests} Ometria requests; ${
        _cpu(doublesCpu)
      }`,
    );
    return { seconds, held };
  } catch (error) {
    deps.write(`${label}Python tool      failed: ${_message(error)}`);
    return undefined;
  } finally {
    await sims.mailchimp.close();
    await sims.ometria.close();
  }
}

/**
 * This build once, on fresh simulators and a fresh state file (an earlier round's would
 * make it sync only what changed since). Writes its line; `result` is undefined when the
 * run failed, and `missing` counts members Ometria lacks at the end.
 */
async function _ourSide(
  deps: PythonBenchDeps,
  round: number,
  label: string,
): Promise<{ result: SideResult | undefined; missing: number }> {
  const sims = await _sims(deps);
  try {
    const run = await deps.measure(
      sims,
      ["--once", "--state", `${deps.dir}/pycmp-${round}.json`, ...IDS],
      {
        MAILCHIMP_API_KEY: sims.mailchimp.apiKey,
        MAILCHIMP_BASE_URL: sims.mailchimp.url,
        OMETRIA_API_KEY: sims.ometria.apiKey,
        OMETRIA_BASE_URL: sims.ometria.url,
        OMETRIA_MAX_REQUESTS_PER_SECOND: "1000",
        MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
        LOGGING_LEVEL: "ERROR",
        LOG_FILE: "",
      },
    );
    const doublesCpu = run.hostCpuSeconds;
    let held = 0;
    let missing = 0;
    for (const id of IDS) {
      const copy = sims.ometria.contacts(collectionFor(id));
      held += copy.size;
      missing += compareCopies(sims.mailchimp.truth(id), copy, id).missing.length;
    }
    deps.write(
      `${label}this build       ${run.seconds.toFixed(1)} s, ${held.toLocaleString("en-US")} of ${
        (2 * deps.members).toLocaleString("en-US")
      } members delivered (${missing} missing), ${
        Math.round(held / run.seconds).toLocaleString("en-US")
      } members/s; ${run.mailchimpRequests} Mailchimp + ${run.ometriaRequests} Ometria requests; peak RSS ${
        run.peakRssBytes === undefined ? "n/a" : `${Math.round(run.peakRssBytes / 1048576)} MiB`
      }; ${_cpu(doublesCpu)}${run.code === 0 ? "" : `; exit code ${run.code}`}`,
    );
    return { result: run.code === 0 ? { seconds: run.seconds, held } : undefined, missing };
  } finally {
    await sims.mailchimp.close();
    await sims.ometria.close();
  }
}

/**
 * Runs scenario 8: `deps.orders`' rounds, each side once per round in the round's order.
 * False when a side failed in any round or this build left members missing in any round.
 */
export async function benchPython(deps: PythonBenchDeps): Promise<boolean> {
  const { write, members, orders } = deps;
  write(
    `Scenario 8: the original Python tool beside this build, 2 lists × ${
      members.toLocaleString("en-US")
    } members${
      deps.bulkImports ? " (half in bulk imports of 1,500)" : ""
    }, Mailchimp 50 ms, Ometria 20 ms; ${orders.length} interleaved round${
      orders.length === 1 ? "" : "s"
    }, the Python tool first in odd rounds and this build first in even ones, fresh simulators for every run`,
  );
  let ok = true;
  const rounds: RoundResult[] = [];
  const width = String(orders.length).length;
  for (const [i, order] of orders.entries()) {
    const round = i + 1;
    const label = `  round ${String(round).padStart(width)}  `;
    const result: RoundResult = {};
    for (const side of order) {
      if (side === "python") {
        const python = await _pythonSide(deps, round, label);
        if (python) result.python = python;
        else ok = false;
      } else {
        const ours = await _ourSide(deps, round, label);
        if (ours.result) result.ours = ours.result;
        ok &&= ours.result !== undefined && ours.missing === 0;
      }
    }
    const ratio = roundRatio(result);
    if (ratio !== undefined) {
      write(`${label}members/s, this build ÷ Python tool: ${ratio.toFixed(2)}×`);
    }
    rounds.push(result);
  }
  for (const line of summarizeRounds(rounds)) write(line);
  write("");
  return ok;
}
