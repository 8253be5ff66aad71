import assert from "node:assert/strict";
import { ConcurrencyLimiter, MailchimpLimiters } from "../../lib/http/concurrency_limiter.ts";

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => resolve = r);
  return { promise, resolve };
}

const macrotask = () => new Promise((r) => setTimeout(r, 0));

Deno.test("ConcurrencyLimiter never runs more than max of 30 concurrent calls", async () => {
  const limiter = new ConcurrencyLimiter(10);
  let running = 0;
  let peak = 0;
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      limiter.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 1));
        running--;
        return i;
      })),
  );
  assert.deepEqual(results, Array.from({ length: 30 }, (_, i) => i));
  assert.equal(peak, 10);
  assert.equal(limiter.maxInFlight, 10);
  assert.equal(limiter.inFlight, 0);
  assert.equal(limiter.pending, 0);
});

Deno.test("ConcurrencyLimiter starts waiters in FIFO order", async () => {
  const limiter = new ConcurrencyLimiter(2);
  const gates = Array.from({ length: 6 }, () => deferred());
  const started: number[] = [];
  const all = gates.map((gate, i) =>
    limiter.run(async () => {
      started.push(i);
      await gate.promise;
    })
  );
  await macrotask();
  assert.deepEqual(started, [0, 1]);
  assert.equal(limiter.pending, 4);
  gates[1]!.resolve();
  await macrotask();
  assert.deepEqual(started, [0, 1, 2]);
  for (const gate of gates) gate.resolve();
  await Promise.all(all);
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
});

Deno.test("ConcurrencyLimiter: an aborted waiter leaves the queue without running", async () => {
  const limiter = new ConcurrencyLimiter(1);
  const gate = deferred();
  const ran: string[] = [];
  const first = limiter.run(async () => {
    ran.push("first");
    await gate.promise;
  });
  const controller = new AbortController();
  const second = limiter.run(() => {
    ran.push("second");
  }, controller.signal);
  const third = limiter.run(() => {
    ran.push("third");
  });
  await macrotask();
  assert.equal(limiter.pending, 2);
  controller.abort(new Error("cancelled"));
  await assert.rejects(second, /cancelled/);
  assert.equal(limiter.pending, 1);
  gate.resolve();
  await Promise.all([first, third]);
  assert.deepEqual(ran, ["first", "third"]);
  assert.equal(limiter.inFlight, 0);
});

Deno.test("ConcurrencyLimiter frees the slot when the task throws", async () => {
  const limiter = new ConcurrencyLimiter(1);
  await assert.rejects(limiter.run(() => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(limiter.inFlight, 0);
  assert.equal(await limiter.run(() => 42), 42);
  await assert.rejects(
    limiter.run(() => 1, AbortSignal.abort(new Error("already"))),
    /already/,
  );
  assert.throws(() => new ConcurrencyLimiter(0), RangeError);
});

Deno.test("MailchimpLimiters gives every user of one API key the same limiter", () => {
  const limiters = new MailchimpLimiters();
  const a = limiters.for("key-us1");
  assert.equal(a.max, 10);
  assert.equal(limiters.for("key-us1", 3), a, "the first cap holds for the key");
  const b = limiters.for("other-us2", 4);
  assert.notEqual(b, a);
  assert.equal(b.max, 4);
  assert.equal(limiters.size, 2);
  assert.notEqual(new MailchimpLimiters().for("key-us1"), a, "no state shared across registries");
});

Deno.test("ConcurrencyLimiter halves its cap on a 429, once per crowded moment, and grows back", async () => {
  const limiter = new ConcurrencyLimiter(10);
  const gates = Array.from({ length: 10 }, () => deferred());
  const running = gates.map((g) => limiter.run(() => g.promise));
  await macrotask();
  // Ten requests answered 429 at once: one signal, one cut.
  for (let i = 0; i < 10; i++) limiter.throttled();
  assert.equal(limiter.limit, 5);
  for (const g of gates) g.resolve();
  await Promise.all(running);
  // Tasks started before the cut say nothing about the new cap: the next 429 cuts again
  // only after as many tasks as the cap started and finished under it.
  limiter.throttled();
  assert.equal(limiter.limit, 5);
  await Promise.all(Array.from({ length: 5 }, () => limiter.run(() => Promise.resolve())));
  limiter.throttled();
  assert.equal(limiter.limit, 2);
  // Fewer at once while it is low.
  let peak = 0;
  let now = 0;
  const work = () =>
    limiter.run(async () => {
      peak = Math.max(peak, ++now);
      await macrotask();
      now--;
    });
  await Promise.all(Array.from({ length: 4 }, work));
  assert.equal(peak, 2);
  // One more slot per twice-the-cap tasks done without a 429, up to max.
  for (let i = 0; i < 200; i++) await work();
  assert.equal(limiter.limit, 10);
});
