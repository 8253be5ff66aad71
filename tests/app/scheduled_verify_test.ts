/**
 * The scheduled verify, on the fake clock, against both simulators over real HTTP: the daemon
 * and the Deploy cron run a sampled verify once VERIFY_EVERY_HOURS have passed, record it in
 * the state, and raise `connection.diverged` once for a contact changed behind the product's
 * back, not again at the next verify that still finds it; VERIFY_EVERY_HOURS=0 turns it off.
 */
import assert from "node:assert/strict";
import { runCommand } from "../../lib/app/cli.ts";
import { type DeployDeps, startDeploy } from "../../lib/app/deploy.ts";
import { loadConfig } from "../../lib/config/config.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { startWorld, T0, type World } from "../_helpers/world.ts";
import { until } from "../_helpers/until.ts";
import { captureLogs, startReceiver } from "../freshness/_helpers.ts";

const LIST = "sched00001";
const HOUR = 3_600_000;

function env(world: World, extra: Record<string, string>): Record<string, string> {
  return {
    MAILCHIMP_API_KEY: world.mailchimp.apiKey,
    MAILCHIMP_BASE_URL: world.mailchimp.url,
    OMETRIA_API_KEY: world.ometria.apiKey,
    OMETRIA_BASE_URL: world.ometria.url,
    MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
    // Hours pass between ticks here: lag is not what these test.
    NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA: "6000",
    ...extra,
  };
}

/** The `connection.diverged` alerts a receiver got. */
function diverged(receiver: { bodies: Record<string, unknown>[] }): Record<string, unknown>[] {
  return receiver.bodies.filter((b) => b.event === "connection.diverged");
}

/** Changes one stored contact's last name in Ometria, as someone editing it by hand. */
function tamperOne(world: World): string {
  const collection = collectionFor(LIST);
  const id = [...world.ometria.contacts(collection).keys()].sort()[0]!;
  world.ometria.contactApi.tamper(collection, id, { lastname: "Edited in Ometria" });
  return id;
}

Deno.test("the daemon verifies a sample every VERIFY_EVERY_HOURS and alerts connection.diverged once", async () => {
  const world = await startWorld();
  const receiver = startReceiver("ok");
  using logs = captureLogs();
  try {
    world.mailchimp.addList(LIST, { members: 40, lastChangedTo: T0 - 60_000 });
    const loaded = await loadConfig({
      env: env(world, { VERIFY_EVERY_HOURS: "2", ALERT_WEBHOOK_URL: receiver.url }),
      args: [LIST],
    });
    assert.ok(loaded.ok);
    const stop = new AbortController();
    let handler: (() => Promise<void>) | undefined;
    const done = runCommand(loaded.config, {
      clock: world.clock,
      logger: logs.logger,
      fetch,
      store: world.store,
      write: () => {},
      cron: (_name, _schedule, options, cronHandler) => {
        handler = cronHandler;
        return new Promise((resolve) => options.signal?.addEventListener("abort", () => resolve()));
      },
      stop: stop.signal,
      hardStop: new AbortController().signal,
    });
    await until(async () => !!(await world.store.get(LIST))?.fresh_as_of, "the first tick");
    await until(() => handler !== undefined, "the cron");
    assert.equal((await world.store.get(LIST))?.last_verify, null, "not due at the start");
    tamperOne(world);

    // An hour on: not due yet.
    world.clock.set(world.clock.now() + HOUR);
    await handler!();
    assert.equal((await world.store.get(LIST))?.last_verify, null);

    // Two hours after the first sight: the sample of 1,000 covers the list (40 members), which
    // costs fewer requests read whole.
    world.clock.set(world.clock.now() + HOUR + 60_000);
    await handler!();
    const first = (await world.store.get(LIST))?.last_verify;
    assert.equal(first?.mode, "full");
    assert.equal(first?.checked, 40);
    assert.equal(first?.stale, 1);
    assert.deepEqual(first?.fields, ["lastname"]);
    await until(() => diverged(receiver).length > 0, "the alert");
    const alert = diverged(receiver)[0] as { event: string; verify?: { stale: number } };
    assert.equal(alert.event, "connection.diverged");
    assert.equal(alert.verify?.stale, 1);

    // The next verify still finds it: the incident goes on, no second alert.
    world.clock.set(world.clock.now() + 2 * HOUR + 60_000);
    await handler!();
    const second = (await world.store.get(LIST))?.last_verify;
    assert.notEqual(second?.at, first?.at, "verified again");
    assert.equal(second?.diverged_since, first?.diverged_since);
    stop.abort();
    assert.equal(await done, 0);
    assert.equal(diverged(receiver).length, 1);
    assert.equal(receiver.bodies.length, 1, "no other alert");
  } finally {
    await receiver.close();
    await world.close();
  }
});

Deno.test("the Deploy cron runs the scheduled verify too; VERIFY_EVERY_HOURS=0 turns it off", async (t) => {
  for (const hours of ["2", "0"]) {
    await t.step(`VERIFY_EVERY_HOURS=${hours}`, async () => {
      const world = await startWorld();
      const receiver = startReceiver("ok");
      const stop = new AbortController();
      try {
        world.mailchimp.addList(LIST, { members: 15, lastChangedTo: T0 - 60_000 });
        const deps: DeployDeps = {
          env: env(world, {
            SYNC_STATE: "memory:",
            SYNC_LIST_IDS: LIST,
            DENO_TIMELINE: "production",
            LOGGING_LEVEL: "ERROR",
            VERIFY_EVERY_HOURS: hours,
            ALERT_WEBHOOK_URL: receiver.url,
          }),
          clock: world.clock,
          fetch,
          readTextFile: () => Promise.reject(new Error("no files in this test")),
          cron: (_name, _schedule, options) =>
            new Promise((resolve) => options.signal?.addEventListener("abort", () => resolve())),
          serve: () => ({ shutdown: () => Promise.resolve() }),
          stop: stop.signal,
          hardStop: new AbortController().signal,
          writeError: () => {},
        };
        const app = startDeploy(deps);
        assert.equal(await app.tick(), 0);
        tamperOne(world);
        world.clock.set(world.clock.now() + 2 * HOUR + 60_000);
        assert.equal(await app.tick(), 0);
        const found = world.ometria.contactApi.requests;
        if (hours === "0") {
          assert.equal(found, 0, "no Contact API request");
        } else {
          assert.equal(found, 2 + 1, "the collection in two pages, and one confirmation");
          await until(() => diverged(receiver).length > 0, "the alert");
        }
        stop.abort();
        await app.finished;
      } finally {
        await receiver.close();
        await world.close();
      }
    });
  }
});

Deno.test("scheduled verifies take at most half a tick (at least one), longest unverified first", async () => {
  const world = await startWorld();
  try {
    const lists = ["sched00010", "sched00011", "sched00012"];
    for (const id of lists) {
      world.mailchimp.addList(id, { members: 5, lastChangedTo: T0 - 60_000 });
    }
    const service = world.service(lists, { verifyEveryHours: 1, tickSeconds: 60 });
    await service.tick({ force: true });
    const verified = async () =>
      (await world.store.list()).filter((s) => s.last_verify !== null).map((s) => s.id);
    assert.deepEqual(await verified(), []);
    // Every Ometria answer now takes 20 s: one verify (a few requests) outlasts half a tick.
    world.ometria.setOptions({ latencyMs: 20_000 });
    world.clock.set(world.clock.now() + HOUR + 60_000);
    await service.tick();
    assert.equal((await verified()).length, 1, "one verify, then the tick's half is spent");
    await service.tick();
    assert.equal((await verified()).length, 2, "the next tick goes on with another");
    await service.tick();
    assert.deepEqual((await verified()).sort(), lists);
    await service.close();
  } finally {
    await world.close();
  }
});
