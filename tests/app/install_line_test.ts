/**
 * The README's install lines are the ones `.ci/run` runs on a machine without Deno, so every
 * clean machine CI meets checks them. These hold the copies equal and to what was measured
 * (README, "First five minutes"): `--allow-scripts=deno` so that npm 12 runs Deno's
 * postinstall, `--prefix` so that the script links the binary instead of leaving npm's Node
 * wrapper, and that prefix's `bin` on PATH.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url);

/** The `npm install -g … deno@…` line and the `export PATH=…` line after it, comments cut. */
function installLines(text: string, where: string): { install: string; path: string } {
  const lines = text.split("\n").map((l) => l.replace(/\s+#.*$/, "").trim());
  const at = lines.findIndex((l) => /^npm install -g .*\bdeno@\S+$/.test(l));
  assert.ok(at >= 0, `${where} has an npm install line for deno`);
  const path = lines.slice(at + 1).find((l) => l.startsWith("export PATH="));
  assert.ok(path, `${where} puts the install folder on PATH after installing`);
  return { install: lines[at]!, path };
}

Deno.test("the README's install lines are the ones .ci/run runs", async () => {
  const readme = installLines(await Deno.readTextFile(new URL("README.md", ROOT)), "README.md");
  const ci = installLines(await Deno.readTextFile(new URL(".ci/run", ROOT)), ".ci/run");
  assert.deepEqual(ci, readme);
});

Deno.test("the install line allows Deno's postinstall, names its prefix and puts its bin on PATH", async () => {
  const { install, path } = installLines(
    await Deno.readTextFile(new URL("README.md", ROOT)),
    "README.md",
  );
  assert.match(install, /\s--allow-scripts=deno\s/);
  const prefix = /\s--prefix (\S+)\s/.exec(install)?.[1];
  assert.ok(prefix, "an explicit --prefix (NPM_CONFIG_PREFIX alone keeps the Node wrapper)");
  const bin = `${prefix.replace(/^~\//, "$HOME/")}/bin`;
  assert.equal(path, `export PATH="${bin}:$PATH"`);
});

Deno.test("the README, .ci/run and the Dockerfile install one Deno version", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const version = /\bdeno@(\d+\.\d+\.\d+)\b/.exec(installLines(readme, "README.md").install)?.[1];
  const ci = await Deno.readTextFile(new URL(".ci/run", ROOT));
  const dockerfile = await Deno.readTextFile(new URL("Dockerfile", ROOT));
  assert.equal(/\bdeno@(\d+\.\d+\.\d+)\b/.exec(installLines(ci, ".ci/run").install)?.[1], version);
  assert.equal(/^ARG DENO_VERSION=(\S+)$/m.exec(dockerfile)?.[1], version);
});
