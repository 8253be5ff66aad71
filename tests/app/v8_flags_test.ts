/**
 * The V8 flags are written where TypeScript cannot reach them: deno.json's tasks, the
 * Dockerfile and the README's description of `deno task sync`. SYNC_V8_FLAGS is their one
 * source of truth, and these tests hold the copies to it.
 */
import assert from "node:assert/strict";
import { SYNC_V8_FLAGS } from "../../lib/app/v8_flags.ts";

const ROOT = new URL("../../", import.meta.url);

/** Every `--v8-flags=` value in `text`. */
function v8FlagsIn(text: string): string[] {
  return [...text.matchAll(/--v8-flags=([^\s`'"]+)/g)].map((m) => m[1]!);
}

Deno.test("deno.json's sync and compile tasks run with SYNC_V8_FLAGS", async () => {
  const tasks: Record<string, string> =
    JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks;
  for (const name of ["sync", "compile"]) {
    assert.deepEqual(v8FlagsIn(tasks[name] ?? ""), [SYNC_V8_FLAGS], `task ${name}`);
  }
});

Deno.test("the Dockerfile compiles the binary with SYNC_V8_FLAGS", async () => {
  const dockerfile = await Deno.readTextFile(new URL("Dockerfile", ROOT));
  assert.deepEqual(v8FlagsIn(dockerfile), [SYNC_V8_FLAGS]);
});

Deno.test("the README quotes SYNC_V8_FLAGS wherever it names the flags", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const quoted = v8FlagsIn(readme);
  assert.ok(quoted.length > 0, "the README names the flags");
  for (const flags of quoted) assert.equal(flags, SYNC_V8_FLAGS);
});
