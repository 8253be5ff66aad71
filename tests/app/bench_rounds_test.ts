/**
 * Bench scenario 8's rounds: the order alternates, the median is the middle (or the mean of
 * the two middle values), and the summary reports the median ratio with every pair's.
 */
import assert from "node:assert/strict";
import { median, roundOrders, roundRatio, summarizeRounds } from "../../lib/app/bench_rounds.ts";

Deno.test("roundOrders() alternates which side runs first, the Python tool in round 1", () => {
  assert.deepEqual(roundOrders(4), [
    ["python", "ours"],
    ["ours", "python"],
    ["python", "ours"],
    ["ours", "python"],
  ]);
  assert.deepEqual(roundOrders(1), [["python", "ours"]]);
  assert.equal(roundOrders().length, 3);
});

Deno.test("roundOrders() throws a RangeError for a count that is not a whole number ≥ 1", async (t) => {
  for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    await t.step(String(bad), () => {
      assert.throws(() => roundOrders(bad), RangeError);
    });
  }
});

Deno.test("median() takes the middle value, or the mean of the two middle values", () => {
  assert.equal(median([2.03, 1.88, 1.94]), 1.94);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.equal(median([1, 2]), 1.5);
  assert.throws(() => median([]), RangeError);
});

Deno.test("median() leaves its argument's order alone", () => {
  const values = [3, 1, 2];
  median(values);
  assert.deepEqual(values, [3, 1, 2]);
});

Deno.test("roundRatio() is members/s of this build over the tool's; undefined without both", () => {
  const python = { seconds: 10, held: 198_000 };
  const ours = { seconds: 5, held: 200_000 };
  assert.equal(roundRatio({ python, ours }), (200_000 / 5) / (198_000 / 10));
  assert.equal(roundRatio({ python }), undefined);
  assert.equal(roundRatio({ ours }), undefined);
});

/** A round where the tool delivered 100 members in `py` s and this build 100 in `our` s. */
const round = (py: number, our: number) => ({
  python: { seconds: py, held: 100 },
  ours: { seconds: our, held: 100 },
});

Deno.test("summarizeRounds() gives the median ratio, every pair's (smallest first) and median seconds", () => {
  assert.deepEqual(summarizeRounds([round(9.744, 4.8), round(9.4, 5), round(9.7, 5)]), [
    "  members/s, this build ÷ Python tool: median 1.94× over 3 interleaved pairs (1.88×, 1.94×, 2.03×)",
    "  median seconds: Python tool 9.7 s, this build 5.0 s",
  ]);
  assert.deepEqual(summarizeRounds([round(10, 5), round(9, 5)]), [
    "  members/s, this build ÷ Python tool: median 1.90× over 2 interleaved pairs (1.80×, 2.00×)",
    "  median seconds: Python tool 9.5 s, this build 5.0 s",
  ]);
});

Deno.test("summarizeRounds() leaves out a round whose side failed, and says so", () => {
  const failed = { ours: { seconds: 6, held: 100 } };
  assert.deepEqual(summarizeRounds([round(10, 5), failed, round(8, 5)]), [
    "  members/s, this build ÷ Python tool: median 1.80× over 2 interleaved pairs (1.60×, 2.00×); 1 of 3 rounds left out, a side failed",
    "  median seconds: Python tool 9.0 s (2 of 3 runs), this build 5.0 s",
  ]);
  assert.deepEqual(summarizeRounds([{}]), []);
});
