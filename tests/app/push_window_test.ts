/**
 * How many push requests a run keeps in flight: enough for the account's rate
 * (`pushConcurrencyFor`), not a fixed 8 whatever the account allows (issue 19).
 */
import assert from "node:assert/strict";
import {
  DEFAULT_PUSH_CONCURRENCY,
  MAX_PUSH_CONCURRENCY,
  pushConcurrencyFor,
} from "../../lib/config/defaults.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { runInProcess } from "../_helpers/in_process.ts";
import { startWorld, T0, type World } from "../_helpers/world.ts";
import { quietLogger } from "../../lib/log/logging.ts";

const LIST = "window0001";

function once(world: World, rate: string) {
  return runInProcess(world, ["--once", LIST], {
    MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
    OMETRIA_MAX_REQUESTS_PER_SECOND: rate,
  }, quietLogger());
}

Deno.test("an account allowed 1000 pushes a second gets more than 8 in flight", async () => {
  const world = await startWorld();
  // The first nine pushes are held where they arrive: they are all in flight at once only if
  // the run keeps more than 8 out (with a fixed 8, the ninth never comes).
  const holds = Array.from(
    { length: DEFAULT_PUSH_CONCURRENCY + 1 },
    () => world.ometria.holdPush(),
  );
  let guard: ReturnType<typeof setTimeout> | undefined;
  try {
    world.mailchimp.addList(LIST, { members: 8_000, lastChangedTo: T0 - 60_000 });
    const run = once(world, "1000");
    const arrived = await Promise.race([
      Promise.all(holds.map((h) => h.arrived)).then(() => true),
      run.then(() => false),
      // Only a failing run waits this long: held requests never come back on their own.
      new Promise<boolean>((resolve) => guard = setTimeout(() => resolve(false), 10_000)),
    ]);
    assert.ok(arrived, `at most ${world.ometria.stats.maxInFlight} pushes were in flight`);
    holds.forEach((h) => h.release());
    assert.equal(await run, 0);
    assert.equal(world.ometria.contacts(collectionFor(LIST)).size, 8_000);
    assert.ok(world.ometria.stats.maxInFlight <= MAX_PUSH_CONCURRENCY);
  } finally {
    clearTimeout(guard);
    holds.forEach((h) => h.release());
    await world.close();
  }
});

Deno.test("an account at Ometria's default 8 pushes a second gets at most 8 in flight", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 8_000, lastChangedTo: T0 - 60_000 });
    assert.equal(await once(world, "8"), 0);
    assert.equal(world.ometria.contacts(collectionFor(LIST)).size, 8_000);
    assert.ok(world.ometria.stats.maxInFlight <= DEFAULT_PUSH_CONCURRENCY);
  } finally {
    await world.close();
  }
});

Deno.test("pushConcurrencyFor covers a quarter of a second of the account's rate, 8 to 32", () => {
  assert.deepEqual([1, 8, 32, 33, 100, 1000].map(pushConcurrencyFor), [8, 8, 8, 9, 25, 32]);
});
