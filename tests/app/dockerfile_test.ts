/** * The container image cannot be built here (no Docker engine), so its promises are checked
 * three ways: the Dockerfile's final stage says what it must (a listener for the health check,
 * no VOLUME, the state-volume check on, logs to standard error only, DENO_USE_CGROUPS), main.ts
 * run with that stage's environment behaves as the image must, and this Deno, where a memory
 * cgroup can be made, sizes V8's heap from the cgroup as the image's variable asks.
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

// Deno lets only --allow-all into /proc and /sys, so the cgroup is found, made and used by
// sh: the memory controller's folder of this process (cgroup v1 or v2) where a child group
// can be made and given a limit, or nothing (not Linux, not root, a read-only hierarchy).
const _PROBE = `
v1=$(grep -E '^[0-9]+:memory:' /proc/self/cgroup | cut -d: -f3)
v2=$(grep -E '^0::' /proc/self/cgroup | cut -d: -f3)
for c in "/sys/fs/cgroup/memory$v1:memory.limit_in_bytes" "/sys/fs/cgroup$v2:memory.max" \\
         "/sys/fs/cgroup/unified$v2:memory.max"; do
  dir="\${c%:*}"; file="\${c##*:}"; t="$dir/dockerfile_test_probe_$$"
  if mkdir "$t" 2>/dev/null; then
    ok=0; [ -f "$t/$file" ] && ok=1; rmdir "$t"
    [ $ok = 1 ] && { echo "$dir $file"; exit 0; }
  fi
done
exit 1`;

// Makes a child group of 256 MiB and prints V8's heap limit of `deno eval` in it, without
// and then with DENO_USE_CGROUPS set to the image's value; removes the group.
const _MEASURE = `
g="$1/dockerfile_test_$$"; mkdir "$g" || exit 3
echo 268435456 > "$g/$2"
a=$(sh -c 'echo $$ > "$0/cgroup.procs"; unset DENO_USE_CGROUPS; exec "$1" eval "$2"' "$g" "$3" "$4")
b=$(sh -c 'echo $$ > "$0/cgroup.procs"; DENO_USE_CGROUPS="$3"; export DENO_USE_CGROUPS; exec "$1" eval "$2"' "$g" "$3" "$4" "$5")
rmdir "$g"
echo "$a $b"`;

function _cgroup(): { dir: string; file: string } | string {
  if (Deno.build.os !== "linux") return "not Linux";
  try {
    const out = new Deno.Command("sh", { args: ["-c", _PROBE], stderr: "null" }).outputSync();
    const [dir, file] = new TextDecoder().decode(out.stdout).trim().split(" ");
    if (out.success && dir && file) return { dir, file };
  } catch {
    return "no sh";
  }
  return "no writable memory cgroup here (needs root and a writable cgroup hierarchy)";
}

const CGROUP = _cgroup();

// A fact about Deno the image relies on (README, "Container"), checked on this Deno: with the
// image's DENO_USE_CGROUPS, V8's heap is sized from the cgroup's memory limit (about 262 MiB
// of heap limit for a small one), not from the host's memory. A misspelt variable or a Deno
// that ignores it would leave a container's heap sized to the host, the OOM kill the image's
// ENV is there to avoid.
Deno.test({
  name: `the image's DENO_USE_CGROUPS sizes V8's heap to the container's memory limit${
    typeof CGROUP === "string" ? ` (ignored: ${CGROUP})` : ""
  }`,
  ignore: typeof CGROUP === "string",
  fn: async () => {
    const { dir, file } = CGROUP as { dir: string; file: string };
    assert.equal(imageEnv().DENO_USE_CGROUPS, "1");
    const script =
      'import("node:v8").then((v8) => console.log(v8.getHeapStatistics().heap_size_limit))';
    const out = await new Deno.Command("sh", {
      args: [
        "-c",
        _MEASURE,
        "sh",
        dir,
        file,
        Deno.execPath(),
        script,
        imageEnv().DENO_USE_CGROUPS!,
      ],
      env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "" },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const [host, contained] = new TextDecoder().decode(out.stdout).trim().split(" ")
      .map((bytes) => Math.round(Number(bytes) / 1048576));
    assert.ok(contained! <= 300, `heap limit in a 256 MiB cgroup: ${contained} MiB`); // Without it V8 takes about half the host's memory (4,192 MiB at most): more than twice the
    // contained limit on any host of 2 GiB or more.
    assert.ok(host! > 2 * contained!, `without it the heap is sized to the host: ${host} MiB`);
  },
});
