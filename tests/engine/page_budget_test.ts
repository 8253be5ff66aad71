/** The page budget the readers of one run share (window_reader.ts). */
import assert from "node:assert/strict";
import { PageBudget } from "../../lib/engine/window_reader.ts";

Deno.test("PageBudget holds at most its places and hands each freed one to the oldest waiter", async () => {
  const budget = new PageBudget(2);
  const first = (await budget.take()).release;
  const second = (await budget.take()).release;
  assert.equal(budget.held, 2);
  const order: string[] = [];
  const third = budget.take().then((p) => (order.push("third"), p.release));
  const fourth = budget.take().then((p) => (order.push("fourth"), p.release));
  await Promise.resolve();
  assert.deepEqual(order, [], "nobody beyond the budget");
  first();
  first(); // given back once, however often called
  const r3 = await third;
  await Promise.resolve();
  assert.deepEqual(order, ["third"]);
  assert.equal(budget.held, 2);
  second();
  const r4 = await fourth;
  assert.deepEqual(order, ["third", "fourth"]);
  r3();
  r4();
  assert.equal(budget.held, 0);
  assert.throws(() => new PageBudget(0), RangeError);
  assert.throws(() => new PageBudget(2, 3), RangeError);
});

Deno.test("PageBudget hands out places beyond its base only while no page read waits", async () => {
  const budget = new PageBudget(4, 2);
  const a = await budget.take();
  const b = await budget.take();
  // Two in flight, nothing back yet: a third may ask.
  const c = await budget.take();
  a.arrived();
  let fourth = false;
  const d = budget.take().then((p) => (fourth = true, p));
  await Promise.resolve();
  assert.equal(fourth, false, "a page waits to be handed on: no place beyond the base");
  a.release();
  const got = await d;
  assert.equal(fourth, true, "handed on: the place goes to the waiter");
  for (const p of [b, c, got]) p.release();
  assert.equal(budget.held, 0);
});
