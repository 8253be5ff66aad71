/**
 * What a run does early rather than late: readers and pushes start while a tie group is
 * still being proven, and neither waits for answers it does not need. Each test holds one
 * kind of Mailchimp answer in the simulator until what should happen meanwhile has.
 */
import assert from "node:assert/strict";
import { assertExactCopy, startWorld, T0 } from "../_helpers/world.ts";
import { until } from "../_helpers/until.ts";

const LIST = "list000001";
const HOUR = 3_600_000;
const SECOND = 1000;
const STAMPS = "members.id,members.last_changed,total_items";

/** Holds answers the simulator is asked for while `hold` says so; `open()` lets them all go. */
function holder() {
  const held: (() => void)[] = [];
  let open = false;
  return {
    held,
    async wait(hold: boolean): Promise<void> {
      if (open || !hold) return;
      const go = Promise.withResolvers<void>();
      held.push(go.resolve);
      await go.promise;
    },
    open(): void {
      open = true;
      for (const go of held.splice(0)) go();
    },
  };
}

Deno.test("runConnection() pushes a tie group's members while the proof of the group is held", async () => {
  // 300 members, then a bulk import of 1,600 in one second: the first page ends with 700 of
  // them. The 300 before it are proven by that page, the group's pass in full reads the other
  // 900; every one of them reaches Ometria while the pass of ids that proves the group waits.
  // The cursor does not pass the group's second meanwhile.
  const gate = holder();
  const group = T0 - HOUR;
  const world = await startWorld({
    mailchimp: {
      onMembersRequest: (_list, query) => gate.wait(query.get("fields") === STAMPS),
    },
  });
  try {
    world.mailchimp.addList(LIST, {
      members: 300,
      seed: 5,
      lastChangedTo: T0 - 2 * HOUR,
      tieGroups: [{ at: group, size: 1_600 }],
    });
    const service = world.service([LIST], { pageSize: 1000 });
    const run = service.runOnce(LIST);
    try {
      await until(
        () => world.ometria.stats.recordsReceived >= 1_900,
        "every member pushed before the proof",
        {
          timeoutMs: 5_000,
          detail: () => `${world.ometria.stats.recordsReceived} records, ${gate.held.length} held`,
        },
      );
      assert.ok(gate.held.length > 0, "the proof is held");
      const cursor = (await world.store.get(LIST))?.run?.cursor;
      assert.ok(cursor == null || Date.parse(cursor) <= group, `cursor ${cursor}`);
    } finally {
      gate.open();
    }
    const result = await run;
    assert.equal(result.outcome, "ok", result.error);
    assert.equal(result.read, 1_900);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() cuts a window for other readers before reading the tie group its first page ends in", async () => {
  // The list starts with a bulk import: the first page holds nothing but it. What follows is
  // large enough to cut, and is cut by that page: the other slices are read while the group's
  // pass in full is held.
  const gate = holder();
  const group = T0 - 3 * HOUR;
  let later = 0;
  const world = await startWorld({
    mailchimp: {
      onMembersRequest: (_list, query) => {
        const since = query.get("since_last_changed");
        const main = !query.has("status") && !query.has("offset");
        if (main && since !== null && Date.parse(since) > group) later++;
        return gate.wait(Number(query.get("offset") ?? 0) > 0);
      },
    },
  });
  try {
    world.mailchimp.addList(LIST, {
      members: 4_000,
      seed: 6,
      lastChangedFrom: T0 - 2 * HOUR,
      lastChangedTo: T0 - HOUR,
      tieGroups: [{ at: group, size: 250 }],
    });
    const service = world.service([LIST], { pageSize: 100, sliceMembers: 1_000 });
    const run = service.runOnce(LIST);
    try {
      await until(() => later >= 2, "other slices read while the group is held", {
        timeoutMs: 5_000,
        detail: () => `${later} later requests, ${gate.held.length} held`,
      });
      assert.ok(gate.held.length > 0, "the group's pass is held");
    } finally {
      gate.open();
    }
    const result = await run;
    assert.equal(result.outcome, "ok", result.error);
    assert.equal(result.read, 4_250);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});
