import assert from "node:assert/strict";
import { FakeClock } from "../../lib/clock/clock.ts";
import { RateLimiter } from "../../lib/http/rate_limiter.ts";

/** Most grants in one calendar second and in any window of 1000 ms. */
function peaks(grants: number[]): { perCalendarSecond: number; perSlidingSecond: number } {
  const bySecond = new Map<number, number>();
  for (const g of grants) {
    bySecond.set(Math.floor(g / 1000), (bySecond.get(Math.floor(g / 1000)) ?? 0) + 1);
  }
  let sliding = 0;
  for (const g of grants) {
    sliding = Math.max(
      sliding,
      grants.filter((h) => h >= g && h < g + 1000).length,
    );
  }
  return { perCalendarSecond: Math.max(...bySecond.values()), perSlidingSecond: sliding };
}

Deno.test("RateLimiter never lets more than perSecond start in one clock second", async () => {
  // Start in the middle of a second, so that a per-start spacing could still put too many
  // starts in one calendar second.
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 0, 0, 0, 700));
  const limiter = new RateLimiter({ perSecond: 8, clock });
  const grants: number[] = [];
  const all = Array.from(
    { length: 50 },
    () => limiter.acquire().then(() => grants.push(clock.now())),
  );
  await new Promise((r) => setTimeout(r, 0)); // let the first grants record their time
  while (grants.length < 50) await clock.tick(50);
  await Promise.all(all);
  const { perCalendarSecond, perSlidingSecond } = peaks(grants);
  assert.equal(perCalendarSecond, 8);
  assert.equal(perSlidingSecond, 8);
  // 50 starts at 8 per second need 7 windows: the last starts 6 s after the first.
  assert.equal(grants.at(-1)! - grants[0]!, 6000);
});

Deno.test("RateLimiter.pause() makes every caller wait", async () => {
  const start = Date.UTC(2026, 0, 1);
  const clock = new FakeClock(start);
  const limiter = new RateLimiter({ perSecond: 100, clock });
  await limiter.acquire();
  limiter.pause(3000);
  limiter.pause(1000); // a shorter pause does not cut the longer one
  assert.equal(limiter.pausedUntil, start + 3000);
  const grants: number[] = [];
  const all = [limiter.acquire(), limiter.acquire()].map((p) =>
    p.then(() => grants.push(clock.now()))
  );
  await clock.tick(2999);
  assert.deepEqual(grants, []);
  await clock.tick(1);
  await Promise.all(all);
  assert.deepEqual(grants, [start + 3000, start + 3000]);
});

Deno.test("RateLimiter.acquire() rejects when aborted while waiting", async () => {
  const clock = new FakeClock();
  const limiter = new RateLimiter({ perSecond: 1, clock });
  await limiter.acquire();
  const controller = new AbortController();
  const waiting = limiter.acquire(controller.signal);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(clock.pendingTimers, 1);
  controller.abort(new Error("stop"));
  await assert.rejects(waiting, /stop/);
  assert.equal(clock.pendingTimers, 0);
  assert.throws(() => new RateLimiter({ perSecond: 0, clock }), RangeError);
});
