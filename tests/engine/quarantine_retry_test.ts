/**
 * Held members are not forgotten: a run over them is a failure that is retried with backoff
 * (not "ok" until the next change), and every held member gets its turn, those tried longest
 * ago first, within the per-run budget.
 */
import assert from "node:assert/strict";
import { assertExactCopy, startWorld, T0 } from "../_helpers/world.ts";

const LIST = "list000qr1";
const HOUR = 3_600_000;
const MINUTE = 60_000;

Deno.test("a list holding members is failed, retried at its backoff, and every held member gets a turn", async () => {
  let refusing = true;
  const world = await startWorld({
    ometria: {
      reject: (r) => refusing && String(r.email).startsWith("held.") ? "refused" : undefined,
    },
  });
  try {
    world.mailchimp.addList(LIST, { members: 20, seed: 1, lastChangedTo: T0 - HOUR });
    for (let i = 0; i < 15; i++) world.mailchimp.upsertMember(LIST, { email: `held.${i}@x.com` });
    world.clock.set(world.clock.now() + 5_000);
    const service = world.service([LIST], { quarantineRetries: 10 });
    const first = await service.tick();
    assert.equal(first.failed, true);
    const state = await world.store.get(LIST);
    assert.equal(state?.quarantine.length, 15);
    assert.equal(state?.status, "failed", "never ok over members Ometria lacks");
    assert.ok(state?.retry_at, "retried at its backoff, not at the next change");

    // Ometria takes them now; no member changes in Mailchimp.
    refusing = false;
    world.clock.set(Date.parse(state!.retry_at!) + 1_000);
    const second = await service.tick();
    const retried = second.entries.find((e) => e.id === LIST);
    assert.equal(retried?.ran, true, "due again although nothing changed");
    assert.equal((await world.store.get(LIST))?.quarantine.length, 5, "a budget of 10 a run");
    world.clock.set(world.clock.now() + 10 * MINUTE);
    const third = await service.tick();
    assert.equal(third.failed, false);
    const last = await world.store.get(LIST);
    assert.equal(last?.quarantine.length, 0, "the five tried longest ago went next");
    assert.equal(last?.status, "ok");
    assertExactCopy(world, LIST);
    await service.close();
  } finally {
    await world.close();
  }
});
