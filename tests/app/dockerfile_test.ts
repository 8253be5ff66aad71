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
