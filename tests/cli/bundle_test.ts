/**
 * `deno compile` needs a runtime download our machines cannot make; the single-file bundle
 * is what can be checked here: it is built and runs a real sync.
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { compareCopies } from "../../lib/sim/compare.ts";
import { cliEnv } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("the deno bundle output runs a sync on its own", async () => {
  const w = await startCliWorld({ prefix: "bundle_test_" });
  const { mailchimp, ometria, dir } = w;
  try {
    const bundle = `${dir}/mailchimp-ometria-sync.js`;
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "deno", "-o", bundle, "main.ts"],
      cwd: ROOT,
      env: cliEnv({}),
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));

    mailchimp.addList("bundle0001", { members: 250, lastChangedTo: Date.now() - 600_000 });
    // Run from the temporary folder: nothing of the repository (deno.json, node_modules) helps.
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--unstable-cron",
        "--unstable-kv",
        "--allow-net=127.0.0.1",
        "--allow-env",
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        bundle,
        "--once",
        "bundle0001",
      ],
      cwd: dir,
      env: cliEnv({
        MAILCHIMP_API_KEY: mailchimp.apiKey,
        MAILCHIMP_BASE_URL: mailchimp.url,
        OMETRIA_API_KEY: ometria.apiKey,
        OMETRIA_BASE_URL: ometria.url,
      }),
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 0, stderr);
    const c = compareCopies(
      mailchimp.truth("bundle0001"),
      ometria.contacts(collectionFor("bundle0001")),
      "bundle0001",
    );
    assert.deepEqual([c.missing.length, c.stale.length], [0, 0]);
    assert.ok((await Deno.stat(`${dir}/sync_jobs.json`)).isFile, "state in the working folder");

    // bench spawns `deno run main.ts`, which a bundle cannot: it says so instead of failing.
    const bench = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--unstable-cron", "--unstable-kv", "--allow-env", bundle, "bench"],
      cwd: dir,
      env: cliEnv({}),
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const benchErr = new TextDecoder().decode(bench.stderr);
    assert.equal(bench.code, 2, benchErr);
    assert.match(benchErr, /deno task bench/);
    assert.doesNotMatch(benchErr, /Uncaught|^\s+at /m);
  } finally {
    await w.close();
  }
});
