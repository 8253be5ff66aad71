/**
 * `BENCH="…"` words reach the bench intact: a V8 flag's own `=` is part of its value.
 */
import assert from "node:assert/strict";
import { parseBenchSpec } from "../../lib/app/bench.ts";
import { roundOrders } from "../../lib/app/bench_rounds.ts";

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

Deno.test("parseBenchSpec() reads rounds=N, scenario 8's interleaved pairs", () => {
  const spec = parseBenchSpec("scenarios=8 python=/tmp/data_sync rounds=5", COMMAND);
  assert.equal(spec.rounds, 5);
  assert.equal(roundOrders(spec.rounds).length, 5);
});

Deno.test("parseBenchSpec() without rounds leaves scenario 8 its 3 alternating pairs", () => {
  const spec = parseBenchSpec("scenarios=8 python=/tmp/data_sync", COMMAND);
  assert.equal(spec.rounds, undefined);
  assert.deepEqual(roundOrders(spec.rounds), [
    ["python", "ours"],
    ["ours", "python"],
    ["python", "ours"],
  ]);
});

Deno.test("parseBenchSpec() throws a TypeError saying what rounds must be", async (t) => {
  for (const bad of ["rounds=0", "rounds=x", "rounds=-2", "rounds=1.5", "rounds=", "rounds"]) {
    await t.step(bad, () => {
      assert.throws(() => parseBenchSpec(`scenarios=8 ${bad}`, COMMAND), {
        name: "TypeError",
        message: `Cannot read bench option '${bad}': rounds must be a whole number ≥ 1`,
      });
    });
  }
});
