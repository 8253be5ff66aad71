import assert from "node:assert/strict";
import { timelineRefusal } from "../../lib/config/deploy_timeline.ts";

Deno.test("timelineRefusal() lets production tick, and branch, preview or unknown deployments only with SYNC_ON_BRANCHES", async (t) => {
  for (
    const [timeline, syncOnBranches, refused] of [
      ["production", false, undefined],
      ["git-branch/feature-x", false, /deployment of branch feature-x \(DENO_TIMELINE=git-branch/],
      ["git-branch/feature-x", true, undefined],
      ["preview/8vt4x2", false, /a preview deployment \(DENO_TIMELINE=preview\/8vt4x2\)/],
      ["preview/8vt4x2", true, undefined],
      [undefined, false, /without DENO_TIMELINE/],
      [undefined, true, undefined],
      ["staging", false, /timeline DENO_TIMELINE=staging/],
    ] as const
  ) {
    await t.step(`${timeline} ${syncOnBranches}`, () => {
      const why = timelineRefusal(timeline, syncOnBranches);
      if (refused === undefined) return assert.equal(why, undefined);
      assert.match(why ?? "", refused);
      assert.match(why ?? "", /Set SYNC_ON_BRANCHES=1/);
    });
  }
});
