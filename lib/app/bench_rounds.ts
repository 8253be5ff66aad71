/**
 * The arithmetic of bench scenario 8's interleaved rounds, kept apart from the processes it
 * times so it can be tested: which side runs first in each round, the median, and the lines
 * that sum the rounds up. One pair on a shared 2-core machine swings by a fifth either way,
 * so the scenario runs several pairs, alternates which side goes first (the second side of a
 * round runs on a machine the first has just warmed, or just loaded), and reports the median
 * ratio of the pairs beside every pair's own.
 *
 * @module
 */

/** One side of scenario 8: the original Python tool, or this build. */
export type BenchSide = "python" | "ours";

/** Rounds of scenario 8 when `rounds=N` is not given. */
export const DEFAULT_BENCH_ROUNDS = 3;

/**
 * The order of the two sides in each round: round 1 runs the Python tool first, round 2
 * this build first, and so on alternately, so neither side always runs first.
 *
 * @param rounds How many rounds (a whole number ≥ 1). @default {3}
 * @throws {RangeError} When `rounds` is not a whole number ≥ 1.
 */
export function roundOrders(rounds: number = DEFAULT_BENCH_ROUNDS): BenchSide[][] {
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new RangeError(
      `Cannot plan bench rounds as 'rounds' must be a whole number ≥ 1: current value ${rounds}`,
    );
  }
  return Array.from(
    { length: rounds },
    (_, i): BenchSide[] => i % 2 === 0 ? ["python", "ours"] : ["ours", "python"],
  );
}

/**
 * The median of `values`: the middle one of an odd count, the mean of the two middle ones
 * of an even count.
 *
 * @throws {RangeError} When `values` is empty.
 */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError("Cannot take the median of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** What one side of a round measured: its wall time and the members Ometria held after it. */
export interface SideResult {
  seconds: number;
  held: number;
}

/** One round of scenario 8: a side is absent when it failed. */
export interface RoundResult {
  python?: SideResult;
  ours?: SideResult;
}

/** Members/s of this build ÷ the Python tool's in one round; undefined when a side failed. */
export function roundRatio(round: RoundResult): number | undefined {
  if (round.python === undefined || round.ours === undefined) return undefined;
  return (round.ours.held / round.ours.seconds) / (round.python.held / round.python.seconds);
}

/**
 * The lines that end scenario 8: the median ratio over the rounds where both sides ran, with
 * each of those ratios (smallest first), and each side's median seconds over its own runs
 * that succeeded. No line for what has no value (a side that failed every round).
 */
export function summarizeRounds(rounds: readonly RoundResult[]): string[] {
  const ratios = rounds.map(roundRatio).filter((r): r is number => r !== undefined);
  const lines: string[] = [];
  if (ratios.length > 0) {
    const left = rounds.length - ratios.length;
    lines.push(
      `  members/s, this build ÷ Python tool: median ${
        median(ratios).toFixed(2)
      }× over ${ratios.length} interleaved pair${ratios.length === 1 ? "" : "s"} (${
        [...ratios].sort((a, b) => a - b).map((r) => `${r.toFixed(2)}×`).join(", ")
      })${left === 0 ? "" : `; ${left} of ${rounds.length} rounds left out, a side failed`}`,
    );
  }
  const seconds = (side: BenchSide, name: string) => {
    const runs = rounds.flatMap((r) => r[side] === undefined ? [] : [r[side].seconds]);
    return runs.length === 0
      ? undefined
      : `${name} ${median(runs).toFixed(1)} s${
        runs.length === rounds.length ? "" : ` (${runs.length} of ${rounds.length} runs)`
      }`;
  };
  const sides = [seconds("python", "Python tool"), seconds("ours", "this build")]
    .filter((s) => s !== undefined);
  if (sides.length > 0) lines.push(`  median seconds: ${sides.join(", ")}`);
  return lines;
}
