import assert from "node:assert/strict";
import { QuarantineBook, type QuarantineWrite } from "../../lib/engine/quarantine_book.ts";
import type { QuarantineEntry } from "../../lib/state/schema.ts";

const ID = (n: number) => n.toString(16).padStart(32, "0");
const AT = "2026-11-01T12:00:00.000Z";
const held = (id: string | null, reason = "bad"): QuarantineEntry => ({
  id,
  reason,
  first_seen_at: AT,
  last_tried_at: AT,
  attempts: 1,
});

/** A book whose writes land in `written`, failing while `failing` is set. */
function book(entries: QuarantineEntry[] = [], limit?: number) {
  const written: QuarantineWrite[] = [];
  const state = { failing: false };
  const b = new QuarantineBook({
    entries,
    listId: "list1",
    ...(limit !== undefined ? { limit } : {}),
    write: (change) => {
      if (state.failing) return Promise.reject(new Error("disk full"));
      written.push(change);
      return Promise.resolve();
    },
  });
  return { b, written, state };
}

Deno.test("QuarantineBook holds a member once per run, and takes holds with releases at one instant", async () => {
  const { b, written } = book();
  b.hold([{ id: ID(1), reason: "bad" }]);
  b.hold([{ id: ID(1), reason: "bad" }]); // met again at a page edge
  b.release([ID(2)]);
  assert.equal(b.pending, true);
  const taken = b.take();
  assert.deepEqual(taken, { add: [{ id: ID(1), reason: "bad" }], release: [ID(2)] });
  assert.equal(b.pending, false);
  await b.write(taken);
  assert.equal(written.length, 1);
});

Deno.test("QuarantineBook never releases a member held again in the same write", () => {
  const { b } = book([held(ID(3))]);
  b.release([ID(3)]);
  b.hold([{ id: ID(3), reason: "still bad" }]);
  assert.deepEqual(b.take().release, []);
});

Deno.test("QuarantineBook keeps what a failed write took for the next write", async () => {
  const { b, written, state } = book();
  b.hold([{ id: ID(4), reason: "bad" }]);
  b.release([ID(5)]);
  state.failing = true;
  await assert.rejects(() => b.flush(), /disk full/);
  assert.equal(b.pending, true, "nothing is lost when the write fails");
  state.failing = false;
  await b.flush();
  assert.deepEqual(written, [{ add: [{ id: ID(4), reason: "bad" }], release: [ID(5)] }]);
});

Deno.test("QuarantineBook refuses a member it has no room for, so the cursor cannot pass it", () => {
  const { b } = book([held(ID(6)), held(ID(7))], 2);
  b.hold([{ id: ID(6), reason: "again" }]); // already held: room is not needed
  assert.throws(() => b.hold([{ id: ID(8), reason: "new" }]), /More than 2 members of list list1/);
});

Deno.test("QuarantineBook tells which ids of a batch it holds", () => {
  const { b } = book([held(ID(9)), held(null, "no id")]);
  assert.deepEqual(b.heldIn([{ id: ID(9) }, { id: ID(10) }]), [ID(9)]);
  assert.deepEqual(QuarantineBook.retryable([held(ID(9)), held(null)], 10), [ID(9)]);
});
