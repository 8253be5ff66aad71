/**
 * The container image cannot be built here (no Docker engine), so its promises are checked
 * two ways: the Dockerfile's final stage says what it must (a listener for the health check,
 * no VOLUME, the state-volume check on, logs to standard error only), and main.ts run with
 * that stage's environment behaves as the image must.
 */
import assert from "node:assert/strict";
import { ROOT, runCli } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";

const DOCKERFILE = await Deno.readTextFile(`${ROOT}Dockerfile`);
/** The instructions after the last FROM: what the image runs with. */
const FINAL_STAGE = DOCKERFILE.slice(DOCKERFILE.lastIndexOf("\nFROM "));

/** The variables the final stage's ENV instructions set (`ENV A=b C="d"`). */
function imageEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [, line] of FINAL_STAGE.matchAll(/^ENV (.+)$/gm)) {
    for (const [, name, value] of line!.matchAll(/(\w+)=("[^"]*"|\S*)/g)) {
      env[name!] = value!.replace(/^"(.*)"$/, "$1");
    }
  }
  return env;
}

Deno.test("the image's health check always has a listener to ask", () => {
  assert.match(imageEnv().METRICS_PORT ?? "", /^\d+$/, "the image sets METRICS_PORT");
  assert.match(
    FINAL_STAGE,
    /^HEALTHCHECK .*\n\s+CMD \[".*mailchimp-ometria-sync", "healthcheck"\]/m,
  );
});

Deno.test("the image declares no VOLUME, requires one for its state, and logs to standard error only", () => {
  assert.doesNotMatch(DOCKERFILE, /^VOLUME/m, "no anonymous volume behind a forgotten -v");
  assert.equal(imageEnv().SYNC_REQUIRE_STATE_VOLUME, "1");
  assert.match(FINAL_STAGE, /^WORKDIR \/app$/m);
  assert.equal(imageEnv().LOG_FILE, "", "no log file growing in the volume");
});

Deno.test("main.ts with the image's environment refuses a state folder that is not a volume, and writes no log file", async (t) => {
  const w = await startCliWorld({ prefix: "dockerfile_test_" });
  try {
    w.mailchimp.addList("image00001", { members: 20, lastChangedTo: Date.now() - 600_000 });
    // The image's variables, and a free port instead of the image's 9464, which this machine
    // may be using. The working directory (the image's /app) is the state's folder.
    const env = { ...w.env, ...imageEnv(), METRICS_PORT: "0" };
    // Deno lets only --allow-all into /dev and /proc, so no mount of this machine can be
    // used as the volume: the temporary folder is on / here, as /app is in an image
    // without -v (the accepting side is in state_volume_test.ts).
    const onRoot = (await Deno.stat(w.dir)).dev === (await Deno.stat("/")).dev;
    await t.step("a folder on the root's filesystem: exit 2, nothing synced", async () => {
      const run = await runCli(["--once", "image00001"], env, { cwd: w.dir });
      if (!onRoot) return assert.equal(run.code, 0, `${w.dir} is a mount: ${run.stderr}`);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /The state folder \S+ is not on a mounted volume/);
      assert.equal(w.mailchimp.stats.requests, 0, "nothing ran");
    });
    await t.step("the same with SYNC_REQUIRE_STATE_VOLUME=0: it syncs", async () => {
      const run = await runCli(["--once", "image00001"], {
        ...env,
        SYNC_REQUIRE_STATE_VOLUME: "0",
      }, { cwd: w.dir });
      assert.equal(run.code, 0, run.stderr);
    });
    const files = [...Deno.readDirSync(w.dir)].map((e) => e.name);
    assert.ok(files.includes("sync_jobs.json"), files.join(" "));
    assert.ok(!files.some((name) => name.endsWith(".log")), `no log file: ${files.join(" ")}`);
  } finally {
    await w.close();
  }
});

/**
 * A memory cgroup this process may create children in, or why not: the test needs root and a
 * writable cgroup v1 `memory` or cgroup v2 hierarchy (a container's usually is read-only).
 */
function childCgroup(): { dir: string; limitFile: string } | string {
  let lines: string[];
  try {
    lines = Deno.readTextFileSync("/proc/self/cgroup").trim().split("\n");
  } catch {
    return "no /proc/self/cgroup (not Linux)";
  }
  const v1 = lines.find((l) => l.split(":")[1] === "memory");
  const v2 = lines.find((l) => l.startsWith("0::"));
  const candidates = [
    ...(v1
      ? [{ root: "/sys/fs/cgroup/memory", path: v1.split(":")[2]!, file: "memory.limit_in_bytes" }]
      : []),
    ...(v2
      ? ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].map((root) => ({
        root,
        path: v2.slice(3),
        file: "memory.max",
      }))
      : []),
  ];
  for (const c of candidates) {
    const dir = `${c.root}${c.path === "/" ? "" : c.path}/dockerfile_test_${Deno.pid}`;
    try {
      Deno.mkdirSync(dir);
    } catch {
      continue;
    }
    // A probe only: the test makes it again, so a filtered run leaves nothing behind.
    let usable = false;
    try {
      usable = Deno.statSync(`${dir}/${c.file}`).isFile;
    } catch {
      // Not a memory controller's folder.
    }
    Deno.removeSync(dir);
    if (usable) return { dir, limitFile: `${dir}/${c.file}` };
  }
  return "no writable memory cgroup here (needs root and a writable cgroup hierarchy)";
}

const CGROUP = Deno.build.os === "linux" ? childCgroup() : "not Linux";

/** V8's heap limit in MiB of `deno eval` run inside `cgroup` (or outside, when undefined). */
async function heapLimitMiB(env: Record<string, string>, cgroup?: string): Promise<number> {
  const script =
    'import("node:v8").then((v8) => console.log(v8.getHeapStatistics().heap_size_limit))';
  const deno = Deno.execPath();
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      cgroup ? `echo $$ > ${cgroup}/cgroup.procs && exec "$0" eval "$1"` : `exec "$0" eval "$1"`,
      deno,
      script,
    ],
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return Math.round(Number(new TextDecoder().decode(out.stdout).trim()) / 1048576);
}

// A fact about Deno the image relies on (README, "Container"), checked on this Deno: with the
// image's DENO_USE_CGROUPS, V8's heap is sized from the cgroup's memory limit (at least
// 256 MiB of heap limit for a small one), not from the host's memory. A misspelt variable or a
// Deno that ignores it would leave a container's heap sized to the host, the OOM kill the
// image's ENV is there to avoid.
Deno.test({
  name: `the image's DENO_USE_CGROUPS sizes V8's heap to the container's memory limit${
    typeof CGROUP === "string" ? ` (ignored: ${CGROUP})` : ""
  }`,
  ignore: typeof CGROUP === "string",
  fn: async () => {
    const { dir, limitFile } = CGROUP as { dir: string; limitFile: string };
    Deno.mkdirSync(dir);
    try {
      Deno.writeTextFileSync(limitFile, String(256 * 1048576));
      const base = { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "" };
      const set = imageEnv().DENO_USE_CGROUPS;
      const image = set === undefined ? base : { ...base, DENO_USE_CGROUPS: set };
      const host = await heapLimitMiB(base, dir);
      const contained = await heapLimitMiB(image, dir);
      assert.equal(imageEnv().DENO_USE_CGROUPS, "1");
      assert.ok(contained <= 300, `heap limit in a 256 MiB cgroup: ${contained} MiB`);
      assert.ok(host > contained, `without it the heap is sized to the host: ${host} MiB`);
    } finally {
      // The children have exited, so the cgroup is empty and can go.
      Deno.removeSync(dir);
    }
  },
});
