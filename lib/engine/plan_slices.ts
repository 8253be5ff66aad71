/**
 * Where to cut what is left of a range after its first full page, so that several readers
 * can page through it at once. Only a plan: each slice is still read to its own proof of
 * completeness (window_reader.ts), so a wrong guess costs speed, never members.
 *
 * @module
 */
import type { FirstPage } from "./window_reader.ts";
import { DEFAULT_SLICE_MEMBERS } from "../config/defaults.ts";

const SECOND = 1000;

/** Options of {@linkcode planSlices}. */
export interface PlanSlicesOptions {
  /**
   * Members one slice should hold; a range is cut only when it is guessed to hold at least
   * twice this many, so a small list is read by one reader. @default {20_000}
   */
  sliceMembers?: number;
  /** Most slices one range is cut into. @default {32} */
  maxSlices?: number;
}

/**
 * The edges cutting [`first.from`, `first.end`) into slices of about `sliceMembers` members:
 * whole seconds, strictly increasing, strictly inside the range (empty: do not cut). The
 * number of members left is guessed from `total_items` (a count of the range's request:
 * a hint that may be wrong either way) less the page, or, when that says nothing is left
 * although the page was full, from the page's members per second of `last_changed`. The
 * cuts are evenly spaced in time; a slice that turns out large is cut again by its own first
 * page, so an uneven spread of changes over time still ends up shared.
 */
export function planSlices(first: FirstPage, options: PlanSlicesOptions = {}): number[] {
  const sliceMembers = options.sliceMembers ?? DEFAULT_SLICE_MEMBERS;
  const maxSlices = options.maxSlices ?? 32;
  if (!(sliceMembers >= 1)) {
    throw new RangeError(
      `Cannot plan slices as 'sliceMembers' must be >= 1: current value ${sliceMembers}`,
    );
  }
  const from = Math.ceil(first.from / SECOND) * SECOND;
  const seconds = Math.floor((first.end - from) / SECOND);
  if (seconds < 2) return [];
  let left = first.totalItems - first.size;
  if (!(left > 0)) {
    const spread = Math.max(SECOND, first.lastMs - first.firstMs + SECOND);
    left = first.size / spread * (first.end - from);
  }
  const count = Math.min(maxSlices, seconds, Math.ceil(left / sliceMembers));
  if (!(count >= 2)) return [];
  const edges: number[] = [];
  for (let i = 1; i < count; i++) {
    const edge = from + Math.round(seconds * i / count) * SECOND;
    if (edge > (edges[edges.length - 1] ?? from) && edge < first.end) edges.push(edge);
  }
  return edges;
}
