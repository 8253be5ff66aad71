/**
 * `BENCH="…"` words reach the bench intact: a V8 flag's own `=` is part of its value.
 */
import assert from "node:assert/strict";
import { parseBenchSpec } from "../../lib/app/bench.ts";

const COMMAND = { executable: "deno", args: ["run", "main.ts"] };

Deno.test("parseBenchSpec() keeps every '=' of a v8flags value", () => {
  const spec = parseBenchSpec(
    "scenarios=1 members=200000 v8flags=--max-old-space-size=48,--max-semi-space-size=2",
    COMMAND,
  );
  assert.equal(spec.v8Flags, "--max-old-space-size=48,--max-semi-space-size=2");
  assert.deepEqual(spec.scenarios, [1]);
  assert.equal(spec.members, 200_000);
});

Deno.test("parseBenchSpec() throws a TypeError naming an unknown word", () => {
  assert.throws(() => parseBenchSpec("speed=9", COMMAND), TypeError);
});
