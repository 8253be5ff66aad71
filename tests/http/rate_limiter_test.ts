import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { RateLimiter } from "../../lib/http/rate_limiter.ts";
import { DeadlineError } from "../../lib/http/retry.ts";
import { seededRandom } from "../../lib/sim/random.ts";

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

/** Lets woken waiters run and record their grant before the clock moves again. */
const settle = () => new Promise((r) => setTimeout(r, 0));

/** Starts `count` acquirers at seeded random times, ticking in `stepMs` steps until all ran. */
async function contend(
  limiter: RateLimiter,
  clock: FakeClock,
  count: number,
  options: { stepMs: number; spreadMs: number; onStep?: (now: number) => void },
): Promise<number[]> {
  const random = seededRandom(7);
  const arrivals = Array.from({ length: count }, () => clock.now() + random() * options.spreadMs)
    .sort((a, b) => a - b);
  const grants: number[] = [];
  const all: Promise<void>[] = [];
  while (grants.length < count) {
    while (arrivals.length > 0 && arrivals[0]! <= clock.now()) {
      arrivals.shift();
      all.push(limiter.acquire().then(() => void grants.push(clock.now())));
    }
    await settle();
    options.onStep?.(clock.now());
    if (grants.length < count) await clock.tick(options.stepMs);
  }
  await Promise.all(all);
  return grants;
}

Deno.test("RateLimiter never lets more than perSecond start in any 1000 ms window under contention", async () => {
  // Start in the middle of a second, so that a per-start spacing could still put too many
  // starts in one calendar second.
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 0, 0, 0, 700));
  const limiter = new RateLimiter({ perSecond: 8, clock });
  const grants = await contend(limiter, clock, 60, { stepMs: 50, spreadMs: 2000 });
  const { perCalendarSecond, perSlidingSecond } = peaks(grants);
  assert.equal(perSlidingSecond, 8);
  assert.equal(perCalendarSecond, 8);
  // Evenly spaced, no bursts: one start every 1010 / 8 = 126.25 ms, 4 ms of timer slack.
  const gaps = grants.slice(1).map((g, i) => g - grants[i]!);
  assert.ok(Math.min(...gaps) >= 126.25 - 4, `smallest gap ${Math.min(...gaps)} ms`);
  // And full: with waiters always in line, 60 starts take 59 slots.
  assert.ok(grants.at(-1)! - grants[0]! <= 59 * 126.25, `${grants.at(-1)! - grants[0]!} ms`);
});

Deno.test("RateLimiter with pace burst-until-429 starts a window's requests in a train until a 429", async () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 0, 0, 0, 700));
  const limiter = new RateLimiter({ perSecond: 8, clock, pace: "burst-until-429" });
  assert.equal(limiter.even, false);
  const grants = await contend(limiter, clock, 24, { stepMs: 5, spreadMs: 0 });
  // The first window's 8 in a train 10 ms apart, then 8 more each time the window has passed.
  const train = grants.slice(1, 8).map((g, i) => g - grants[i]!);
  assert.ok(train.every((gap) => gap >= 6 && gap <= 15), `gaps ${train}`);
  const span = grants.at(-1)! - grants[0]!;
  assert.ok(span <= 2 * 1010 + 7 * 10 + 10, `24 starts in ${span} ms (evenly: 23 × 126.25)`);
  const { perCalendarSecond, perSlidingSecond } = peaks(grants);
  assert.equal(perSlidingSecond, 8);
  assert.equal(perCalendarSecond, 8);

  // At 100/s even spacing (10.1 ms) is about the train's gap: no faster than that.
  const fast = new RateLimiter({ perSecond: 100, clock, pace: "burst-until-429" });
  const quick = await contend(fast, clock, 50, { stepMs: 1, spreadMs: 0 });
  const quickGaps = quick.slice(1).map((g, i) => g - quick[i]!);
  assert.ok(Math.min(...quickGaps) >= 10 - 4, `smallest gap at 100/s ${Math.min(...quickGaps)}`);

  // A 429: the server does not take bursts, so starts are spaced from then on.
  await clock.tick(5000);
  limiter.throttled(1000);
  assert.equal(limiter.even, true);
  const later = await contend(limiter, clock, 16, { stepMs: 5, spreadMs: 0 });
  const gaps = later.slice(1).map((g, i) => g - later[i]!);
  assert.ok(Math.min(...gaps) >= 1111 / 8 * 0.95 - 4, `smallest gap ${Math.min(...gaps)} ms`);
});

Deno.test("RateLimiter serves waiters first come, first served", async () => {
  const clock = new FakeClock();
  const limiter = new RateLimiter({ perSecond: 2, clock, marginMs: 0 });
  const order: number[] = [];
  const all = [0, 1, 2, 3, 4].map((i) => limiter.acquire().then(() => void order.push(i)));
  while (order.length < 5) {
    await settle();
    await clock.tick(100);
  }
  await Promise.all(all);
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
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
  while (grants.length < 2) await clock.tick(1);
  await Promise.all(all);
  assert.equal(grants[0], start + 3000);
  assert.ok(grants[1]! - grants[0]! < 20, "the pace resumes at once after the pause");
});

Deno.test("RateLimiter.throttled() slows the pace for a while without stalling", async () => {
  const start = Date.UTC(2026, 0, 1);
  const clock = new FakeClock(start);
  const limiter = new RateLimiter({ perSecond: 8, clock });
  assert.equal(limiter.windowMs, 1010);
  limiter.throttled(1000);
  limiter.throttled(1000); // the same crowded second: one signal
  assert.equal(limiter.throttles, 1);
  assert.equal(limiter.windowMs, 1111);
  assert.equal(limiter.pausedUntil, Number.NEGATIVE_INFINITY, "no stall for a 1 s Retry-After");

  // The pace follows the wider window: 8 starts now span more than 7 × 126.25 ms.
  const grants = await contend(limiter, clock, 16, { stepMs: 1000, spreadMs: 0 });
  const gaps = grants.slice(1).map((g, i) => g - grants[i]!);
  assert.ok(Math.min(...gaps) >= 1111 / 8 * 0.99 - 4, `smallest gap ${Math.min(...gaps)} ms`);
  assert.ok(limiter.windowMs < 1111, "clean starts give the margin back, a little at a time");

  // A later 429 widens it again; a Retry-After longer than the window pauses everyone.
  await clock.tick(2000);
  const now = clock.now();
  limiter.throttled(5000);
  assert.equal(limiter.throttles, 2);
  assert.equal(limiter.pausedUntil, now + 5000);

  // Many clean windows bring it back to one second plus the margin.
  await clock.tick(5000);
  await contend(limiter, clock, 400, { stepMs: 10_000, spreadMs: 0 });
  assert.equal(limiter.windowMs, 1010);
});

Deno.test("RateLimiter.throttled() finds an account set at half the rate", async () => {
  // The server allows 4 per calendar second; the limiter is configured for 8. Each start that
  // the server would refuse is fed back as a 429.
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 0, 0, 0, 300));
  const limiter = new RateLimiter({ perSecond: 8, clock });
  const served = new Map<number, number>();
  let refused = 0;
  const all: Promise<void>[] = [];
  const grants: number[] = [];
  for (let i = 0; i < 240; i++) {
    all.push(
      limiter.acquire().then(() => {
        const second = Math.floor(clock.now() / 1000);
        const count = (served.get(second) ?? 0) + 1;
        served.set(second, count);
        if (count > 4) {
          refused++;
          limiter.throttled(1000);
        }
        grants.push(clock.now());
      }),
    );
  }
  while (grants.length < 240) {
    await settle();
    await clock.tick(1000);
  }
  await Promise.all(all);
  const refusedLate = grants.slice(120).filter((g) => (served.get(Math.floor(g / 1000)) ?? 0) > 4);
  assert.ok(limiter.windowMs > 1800, `window ${limiter.windowMs} ms`);
  assert.ok(refused < 40, `${refused} of 240 refused`);
  assert.ok(refusedLate.length <= 0.05 * 120, `${refusedLate.length} of the last 120 refused`);
});

Deno.test("RateLimiter.acquire() rejects when aborted while waiting and hands its turn on", async () => {
  const clock = new FakeClock();
  const limiter = new RateLimiter({ perSecond: 1, clock });
  await limiter.acquire();
  const controller = new AbortController();
  const waiting = limiter.acquire(controller.signal);
  const behind = limiter.acquire();
  await settle();
  assert.equal(clock.pendingTimers, 1, "only the first in line watches the clock");
  controller.abort(new Error("stop"));
  await assert.rejects(waiting, /stop/);
  await settle();
  assert.equal(clock.pendingTimers, 1, "the next in line took over");
  await clock.tick(1010);
  await behind;
  assert.throws(() => new RateLimiter({ perSecond: 0, clock }), RangeError);
  assert.throws(() => new RateLimiter({ perSecond: 8, clock, marginMs: -1 }), RangeError);
});

Deno.test("RateLimiter.acquire() with a deadline refuses at once a pause that outlasts it", async () => {
  const clock = new FakeClock();
  const limiter = new RateLimiter({ perSecond: 8, clock });
  limiter.throttled(3_600_000, "Ometria POST /v2/push answered 429");
  const error = await limiter.acquire(undefined, clock.now() + 10 * 60_000).then(
    () => assert.fail("granted during an hour's pause"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof DeadlineError, String(error));
  assert.match(
    error.message,
    /^Ometria POST \/v2\/push answered 429, asking every request to wait \(Retry-After\): waiting 60 min for the rate limit would end past the run's deadline \(10 min left\)/,
  );
  assert.equal(clock.pendingTimers, 0, "nobody sleeps");
  // A pause that ends in time is waited for, as before.
  limiter.pause(5_000, "short");
  const granted = limiter.acquire(undefined, clock.now() + 3_600_000 * 2);
  await settle();
  assert.equal(clock.pendingTimers, 1);
  await clock.tick(3_600_000);
  await granted;
});

/**
 * A clock whose timers behave like the platform's: a sleep past 2^31 - 1 ms ends at once.
 * It refuses to be asked more than 100 times, which only a loop of such sleeps would do.
 */
class OverflowingClock {
  #now = Date.UTC(2026, 0, 1);
  readonly sleeps: number[] = [];
  now(): number {
    return this.#now;
  }
  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    if (this.sleeps.length > 100) return Promise.reject(new Error("a loop of sleeps"));
    this.#now += ms > 2 ** 31 - 1 ? 1 : ms;
    return Promise.resolve();
  }
}

Deno.test("RateLimiter never asks for a sleep that would overflow the platform's timers", async () => {
  const clock = new OverflowingClock();
  const limiter = new RateLimiter({ perSecond: 8, clock });
  // What parseRetryAfter once let through: about 25.5 days.
  limiter.pause(2_200_000_000);
  await limiter.acquire();
  assert.equal(clock.sleeps.length, 2, `${clock.sleeps.length} sleeps`);
  assert.ok(clock.sleeps.every((ms) => ms <= 2 ** 31 - 1), String(clock.sleeps));
});
