import assert from "node:assert/strict";
import { SliceBoard } from "../../lib/engine/slice_board.ts";

const S = 1000;

Deno.test("SliceBoard moves the cursor over the contiguous acknowledged prefix only", () => {
  const board = new SliceBoard(0);
  const first = board.take()!;
  const end = board.cut(first, [10 * S, 20 * S], 30 * S);
  assert.equal(end, 10 * S);
  const second = board.take()!;
  const third = board.take()!;
  assert.equal(board.take(), undefined);
  board.reached(third, 30 * S); // a later slice done first moves nothing
  assert.equal(board.cursor, 0);
  board.reached(first, 4 * S);
  assert.equal(board.cursor, 4 * S);
  board.reached(first, 10 * S);
  assert.equal(board.cursor, 10 * S, "stops at the first slice not done");
  board.reached(second, 20 * S);
  assert.equal(board.cursor, 30 * S, "then jumps over the slice done before");
});

Deno.test("SliceBoard caps the cursor by the archived pass while it runs", () => {
  const board = new SliceBoard(0);
  board.startArchivedPass();
  const main = board.take()!;
  main.end = 50 * S;
  board.reached(main, 50 * S);
  assert.equal(board.cursor, 0, "nothing archived acknowledged yet");
  board.archivedReached(20 * S);
  assert.equal(board.cursor, 20 * S);
  board.archivedDone();
  assert.equal(board.cursor, 50 * S);
});

Deno.test("SliceBoard rewinds the window's start before anything is read", () => {
  const board = new SliceBoard(100 * S);
  board.rewind(40 * S);
  assert.equal(board.cursor, 40 * S);
  assert.equal(board.take()!.start, 40 * S);
});
