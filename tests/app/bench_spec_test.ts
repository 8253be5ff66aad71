/**
 * `BENCH="…"` words reach the bench intact: a V8 flag's own `=` is part of its value.
 */
import assert from "node:assert/strict";
import { parseBenchSpec } from "../../lib/app/bench.ts";
import { runCli } from "../_helpers/cli.ts";
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
  // Not even one Object.prototype has: those were taken for counts.
  for (
    const word of ["constructor=5", "toString=1", "hasOwnProperty=3", "valueOf=2", "__proto__=1"]
  ) {
    assert.throws(() => parseBenchSpec(word, COMMAND), {
      name: "BenchSpecError",
      message: new RegExp(`^Cannot read bench option '${word}': the words are scenarios=`),
    }, word);
  }
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

Deno.test("parseBenchSpec() throws a BenchSpecError saying what rounds must be", async (t) => {
  for (const bad of ["rounds=0", "rounds=x", "rounds=-2", "rounds=1.5", "rounds=", "rounds"]) {
    await t.step(bad, () => {
      assert.throws(() => parseBenchSpec(`scenarios=8 ${bad}`, COMMAND), {
        name: "BenchSpecError",
        message: `Cannot read bench option '${bad}': rounds must be a whole number ≥ 1`,
      });
    });
  }
});

Deno.test("parseBenchSpec() refuses a count that is not a whole number ≥ 1, naming the word", async (t) => {
  // Each once became NaN or 0 and ran a bench of no members, or of NaN.
  for (const key of ["members", "pair", "ceiling", "crash", "reconcile", "verify", "connections"]) {
    for (const bad of [`${key}=x`, `${key}=0`, `${key}=`, `${key}=2.5`]) {
      await t.step(bad, () => {
        assert.throws(() => parseBenchSpec(bad, COMMAND), {
          name: "BenchSpecError",
          message: `Cannot read bench option '${bad}': ${key} must be a whole number ≥ 1`,
        });
      });
    }
  }
  assert.equal(parseBenchSpec("pair=20000", COMMAND).pairMembers, 20_000);
});

Deno.test("parseBenchSpec() refuses a scenario that does not exist", () => {
  for (const bad of ["scenarios=9", "scenarios=", "scenarios=1,,3", "scenarios=one"]) {
    assert.throws(() => parseBenchSpec(bad, COMMAND), {
      name: "BenchSpecError",
      message:
        `Cannot read bench option '${bad}': scenarios are numbers from 1 to 8, separated by commas`,
    });
  }
  assert.deepEqual(parseBenchSpec("scenarios=1,3,8", COMMAND).scenarios, [1, 3, 8]);
});

Deno.test("an unreadable BENCH word stops `main.ts bench` with its message and exit 2, not as a bug", async () => {
  const run = await runCli(["bench"], { BENCH: "scenarios=8 rounds=0" });
  assert.equal(run.code, 2, run.stderr);
  assert.equal(
    run.stderr.trim(),
    `BENCH="scenarios=8 rounds=0": Cannot read bench option 'rounds=0': rounds must be a whole number ≥ 1.`,
  );
  const unknown = await runCli(["bench"], { BENCH: "speed=9" });
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /Cannot read bench option 'speed=9': the words are scenarios=/);
  assert.doesNotMatch(unknown.stderr, /bug|at .*\.ts:\d+/);
});
