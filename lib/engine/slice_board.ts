/**
 * Where the readers of one window stand, and how far the cursor may go. The window's main
 * pass is read in slices [start, end) that tile it (plan_slices.ts cuts a large range after its
 * first page); each slice is read by one reader and acknowledged, in `last_changed` order,
 * up to its `reach`. The cursor is the end of the contiguous acknowledged prefix of the whole
 * window: it stops in the first slice not yet done, whatever later slices have acknowledged,
 * and while archived members are read by a pass of their own it is also capped by how far
 * that pass has had them acknowledged. So every member of the window before the cursor is in
 * Ometria (or held in quarantine), which is what a checkpoint records.
 *
 * @module
 */

/** One slice of the main pass. */
export interface Slice {
  /** First `last_changed` of the slice (undefined: the list's beginning). */
  start: number | undefined;
  /** Exclusive end; undefined until known (the first slice's is U or where it was cut). */
  end: number | undefined;
  /** Every member of the slice before this is acknowledged (undefined: none yet). */
  reach: number | undefined;
  started: boolean;
}

/** The slices of one window and its cursor. */
export class SliceBoard {
  /** Every window member with `last_changed` before this is acknowledged (undefined: none). */
  cursor: number | undefined;
  readonly slices: Slice[];
  /**
   * While the archived pass runs beside the main pass: how far it has had every archived
   * member acknowledged (-Infinity: nothing yet). Null: no archived pass is running.
   */
  #archivedCap: number | null = null;

  constructor(cursor: number | undefined) {
    this.cursor = cursor;
    this.slices = [{ start: cursor, end: undefined, reach: undefined, started: false }];
  }

  /** The main pass starts where the cursor is now (a clock step may have lowered it). */
  restart(): void {
    const first = this.slices[0]!;
    if (!first.started) first.start = this.cursor;
  }

  /** Lowers where the window starts (Mailchimp's clock stepped back) before anything is read. */
  rewind(to: number): void {
    if (this.cursor !== undefined && to < this.cursor) this.cursor = to;
    const first = this.slices[0]!;
    if (first.reach === undefined) first.start = to;
  }

  /** The first slice nobody reads yet, now taken; undefined when every slice is taken. */
  take(): Slice | undefined {
    const slice = this.slices.find((s) => !s.started);
    if (slice) slice.started = true;
    return slice;
  }

  /** Slices not taken yet. */
  get waiting(): number {
    return this.slices.filter((s) => !s.started).length;
  }

  /** Cuts `slice` at `edges` (increasing, inside it) before `end`; returns its new end. */
  cut(slice: Slice, edges: readonly number[], end: number): number {
    const bounds = [...edges, end];
    const added = edges.map((start, i): Slice => ({
      start,
      end: bounds[i + 1]!,
      reach: undefined,
      started: false,
    }));
    slice.end = edges[0]!;
    this.slices.splice(this.slices.indexOf(slice) + 1, 0, ...added);
    return slice.end;
  }

  /** Slice `slice` has everything before `reach` acknowledged. */
  reached(slice: Slice, reach: number): void {
    // -Infinity: a part that proved nothing (members past U from a torn answer).
    if (reach === -Infinity) return;
    if (slice.reach === undefined || reach > slice.reach) slice.reach = reach;
    this.#move();
  }

  /** The archived pass starts beside the main pass: the cursor waits for it. */
  startArchivedPass(): void {
    this.#archivedCap = -Infinity;
  }

  /** The archived pass has had every archived member before `reach` acknowledged. */
  archivedReached(reach: number): void {
    if (this.#archivedCap !== null && reach > this.#archivedCap) this.#archivedCap = reach;
    this.#move();
  }

  /** The archived pass is done: it caps the cursor no more. */
  archivedDone(): void {
    this.#archivedCap = null;
    this.#move();
  }

  #move(): void {
    let reach: number | undefined;
    for (const s of this.slices) {
      const r = s.reach ?? s.start;
      if (r !== undefined && (reach === undefined || r > reach)) reach = r;
      if (s.end === undefined || r === undefined || r < s.end) break;
    }
    const cap = this.#archivedCap;
    if (reach !== undefined && cap !== null && reach > cap) reach = cap;
    if (
      reach !== undefined && reach !== -Infinity &&
      (this.cursor === undefined || reach > this.cursor)
    ) {
      this.cursor = reach;
    }
  }
}
