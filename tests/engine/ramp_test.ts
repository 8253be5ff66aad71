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

Deno.test("runConnection() asks for the page after a tie group while the group's proof is held", async () => {
  // Two bulk imports, one after the other. The first settles whether `since` is inclusive;
  // for the second, the next page of the window goes out while its pass of ids is held.
  const gate = holder();
  const second = T0 - HOUR;
  let after = 0;
  const world = await startWorld({
    mailchimp: {
      onMembersRequest: (_list, query) => {
        const since = Date.parse(query.get("since_last_changed") ?? "");
        if (query.get("fields") === STAMPS) return gate.wait(since >= second - SECOND);
        if (!query.has("offset") && !query.has("status") && since >= second) after++;
        return Promise.resolve();
      },
    },
  });
  try {
    world.mailchimp.addList(LIST, {
      members: 600,
      seed: 7,
      lastChangedTo: T0 - 3 * HOUR,
      tieGroups: [{ at: T0 - 2 * HOUR, size: 1_200 }, { at: second, size: 1_200 }],
    });
    const service = world.service([LIST], { pageSize: 1000 });
    const run = service.runOnce(LIST);
    try {
      await until(() => after > 0, "the page after the group asked for beside its proof", {
        timeoutMs: 5_000,
        detail: () => `${gate.held.length} held`,
      });
      assert.ok(gate.held.length > 0, "the proof is held");
    } finally {
      gate.open();
    }
    const result = await run;
    assert.equal(result.outcome, "ok", result.error);
    assert.equal(result.read, 3_000);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() reads what changed after U for both passes at once", async () => {
  // A window larger than its first page needs a final read from U on, for the main pass and
  // for the archived one: the archived one goes out while the main one is held.
  const gate = holder();
  let archivedFinal = 0;
  const world = await startWorld({
    mailchimp: {
      onMembersRequest: (_list, query) => {
        const since = Date.parse(query.get("since_last_changed") ?? "");
        const final = since >= T0 - 10 * SECOND && !query.has("before_last_changed");
        if (final && query.has("status")) archivedFinal++;
        return gate.wait(final && !query.has("status"));
      },
    },
  });
  try {
    // About 5% archived: more than one page of each pass.
    world.mailchimp.addList(LIST, { members: 2_500, seed: 8, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pageSize: 100 });
    const run = service.runOnce(LIST);
    try {
      await until(() => archivedFinal > 0, "the archived pass's final read beside the main one", {
        timeoutMs: 5_000,
        detail: () => `${gate.held.length} held`,
      });
      assert.ok(gate.held.length > 0, "the main pass's final read is held");
    } finally {
      gate.open();
    }
    const result = await run;
    assert.equal(result.outcome, "ok", result.error);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("Two connections of one Ometria account read its validation errors without waiting 250 ms for each other", async () => {
  // Each connection's first run reads Ometria's errors before its first push and after its
  // last, through the account's Data API limiter (4 a second): they go out together.
  const at: number[] = [];
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 300, seed: 9, lastChangedTo: T0 - HOUR });
    world.mailchimp.addList("list000002", { members: 300, seed: 10, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST, "list000002"], {
      fetch: (input, init) => {
        const url = input instanceof Request ? input.url : String(input);
        if (url.includes("/_errors")) at.push(world.clock.now());
        return fetch(input, init);
      },
    });
    const result = await service.tick({ force: true });
    assert.equal(result.failed, false);
    assert.equal(at.length, 4, "a baseline and a check for each connection");
    // Even spacing put them 250 ms apart (0, 0, 252, 505 on this clock).
    const spread = at.map((t) => t - at[0]!);
    assert.ok(spread[3]! < 200, `the four readings at ${spread.join(", ")} ms`);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});
