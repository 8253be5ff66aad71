/**
 * Whole runs against the simulators when an API rate limits them: a long `Retry-After` mid-run
 * ends the run at once, naming why, instead of holding it (and a `--once` process) open for
 * the hour, and a storm of short ones is ridden out at a slower pace rather than failing the
 * list after eight attempts.
 */
import assert from "node:assert/strict";
import { startWorld, T0 } from "../_helpers/world.ts";
import { captureLogs } from "../freshness/_helpers.ts";

const LIST = "throttle01";
const MINUTE = 60_000;

Deno.test("a run meeting a long Retry-After mid-run fails at once with the cause, for every size", async (t) => {
  // An hour, and about 25.5 days: past 2^31 ms a timer would fire at once, over and over.
  for (const retryAfterSeconds of [3600, 2_200_000]) {
    await t.step(`Retry-After: ${retryAfterSeconds}`, async () => {
      const world = await startWorld({
        ometria: { faults: { rate: 0.3, kinds: [429], seed: 4, retryAfterSeconds } },
      });
      try {
        world.mailchimp.addList(LIST, { members: 2_000, lastChangedTo: T0 - MINUTE });
        const service = world.service([LIST], { runDeadlineMinutes: 30, reconcileEveryHours: 0 });
        const started = world.clock.now();
        const result = await service.tick();
        assert.equal(result.failed, true);
        // The fake clock moves by every wait anyone starts: no run waited the Retry-After.
        assert.ok(
          world.clock.now() - started < 5 * MINUTE,
          `${(world.clock.now() - started) / MINUTE} min`,
        );
        const state = await world.store.get(LIST);
        assert.match(
          state?.last_error ?? "",
          /^Ometria POST \/v2\/push .*429.*: waiting [\d.]+ (min|h) for the rate limit would end past the run's deadline/,
        );
        assert.ok(
          state?.run?.pushed === undefined || state.run.pushed >= 0,
          "the checkpoint stays",
        );
      } finally {
        await world.close();
      }
    });
  }
});

Deno.test("a storm of short 429s on Mailchimp slows the run down and it completes", async () => {
  const world = await startWorld({
    mailchimp: { faults: { rate: 0.5, kinds: [429], seed: 2, retryAfterSeconds: 1 } },
  });
  using logs = captureLogs();
  try {
    world.mailchimp.addList(LIST, { members: 3_000, lastChangedTo: T0 - MINUTE });
    const service = world.service([LIST], {
      logger: logs.logger,
      pageSize: 100,
      reconcileEveryHours: 0,
    });
    const result = await service.tick();
    assert.equal(result.failed, false, (await world.store.get(LIST))?.last_error ?? "");
    assert.ok(world.mailchimp.stats.status429 > 20, `${world.mailchimp.stats.status429} 429s`);
    // One line when the storm starts (and a reminder a minute), not one per retry.
    const warnings = logs.records.filter((r) => r.level === "warning");
    assert.equal(logs.events("throttle.started").length, 1, logs.text());
    assert.ok(
      warnings.length < 10,
      `${warnings.length} warnings for ${world.mailchimp.stats.status429} 429s`,
    );
  } finally {
    await world.close();
  }
});
