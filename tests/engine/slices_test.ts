import assert from "node:assert/strict";
import { planSlices } from "../../lib/engine/plan_slices.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { assertExactCopy, assertInSync, startWorld, T0 } from "../_helpers/world.ts";
import { captureLogs } from "../freshness/_helpers.ts";
import { until } from "../_helpers/until.ts";

const LIST = "list000001";
const HOUR = 3_600_000;
const SECOND = 1000;

Deno.test("planSlices() cuts only a range guessed large, at whole seconds strictly inside it", async (t) => {
  const base = { from: T0, end: T0 + 100 * SECOND, firstMs: T0 - 5_000, lastMs: T0, size: 1000 };
  await t.step("a count saying little is left: no cut", () => {
    assert.deepEqual(planSlices({ ...base, totalItems: 1500 }, { sliceMembers: 1000 }), []);
  });
  await t.step("a count saying much is left: evenly spaced cuts", () => {
    const edges = planSlices({ ...base, totalItems: 4_000 }, { sliceMembers: 1000 });
    assert.deepEqual(edges, [T0 + 33 * SECOND, T0 + 67 * SECOND]);
  });
  await t.step("a count too low after a full page: the page's spread guesses instead", () => {
    // 1000 members in 6 s, 100 s left: about 16,700 members.
    const edges = planSlices({ ...base, totalItems: 10 }, { sliceMembers: 5000 });
    assert.equal(edges.length, 3);
  });
  await t.step("never more cuts than whole seconds, never at an edge", () => {
    const edges = planSlices({ ...base, end: T0 + 3 * SECOND, totalItems: 1e9 }, {
      sliceMembers: 1,
    });
    assert.deepEqual(edges, [T0 + SECOND, T0 + 2 * SECOND]);
    assert.deepEqual(
      planSlices({ ...base, end: T0 + 1500, totalItems: 1e9 }, { sliceMembers: 1 }),
      [],
    );
  });
});

for (const sinceInclusive of [true, false]) {
  for (const beforeInclusive of [true, false]) {
    Deno.test(
      `runConnection() reads slices covering the window once, ties at their edges included (since ${
        sinceInclusive ? "inclusive" : "exclusive"
      }, before ${beforeInclusive ? "inclusive" : "exclusive"})`,
      async () => {
        const world = await startWorld({
          mailchimp: { sinceInclusive, beforeInclusive, tieOrder: "random" },
        });
        using logs = captureLogs();
        try {
          // 2,000 members in 40 seconds: every second holds a tie group larger than a page,
          // so every cut between slices falls on one.
          world.mailchimp.addList(LIST, {
            members: 2_000,
            seed: 31,
            lastChangedFrom: T0 - HOUR - 40 * SECOND,
            lastChangedTo: T0 - HOUR,
          });
          const service = world.service([LIST], {
            pageSize: 20,
            sliceMembers: 150,
            readSlices: 4,
            logger: logs.logger,
          });
          const run = await service.runOnce(LIST);
          assert.equal(run.outcome, "ok", run.error);
          assert.ok(/as \d+ slices at once/.test(logs.text()), "the window was cut");
          assert.equal(run.read, 2_000, "no member read twice, none missed");
          assert.equal(world.ometria.stats.recordsReceived, 2_000, "nothing pushed twice");
          assertInSync(world, LIST);
          assert.equal((await world.store.get(LIST))?.fresh_as_of, run.upper);
        } finally {
          await world.close();
        }
      },
    );
  }
}

Deno.test("runConnection() in slices loses nobody to torn pages, wrong counts and changes while reading", async () => {
  const world = await startWorld({
    mailchimp: {
      tornPageRate: 0.2,
      tornPageMode: "move",
      totalItemsError: -2_000,
      totalItemsJitter: 300,
    },
  });
  try {
    world.mailchimp.addList(LIST, { members: 5_000, seed: 32, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { pageSize: 100, sliceMembers: 500, readSlices: 4 });
    const first = await service.runOnce(LIST);
    assert.equal(first.outcome, "ok", first.error);
    world.mailchimp.changeMembers(LIST, 300, 5);
    world.clock.set(T0 + 60_000);
    const second = await service.runOnce(LIST);
    assert.equal(second.outcome, "ok", second.error);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() in slices never checkpoints past an unacknowledged member, and resumes after a kill", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 6_000, seed: 33, lastChangedTo: T0 - HOUR });
    const hard = new AbortController();
    const truth = world.mailchimp.truth(LIST);
    const contacts = world.ometria.contacts(collectionFor(LIST));
    const checks: Promise<void>[] = [];
    let acknowledged = 0;
    const service = world.service([LIST], {
      pageSize: 100,
      sliceMembers: 600,
      readSlices: 4,
      onProgress: () => {
        // Whatever the persisted cursor passed is in Ometria, at the moment it is read.
        checks.push(
          world.store.get(LIST).then((state) => {
            const cursor = state?.run?.cursor;
            if (!cursor) return;
            const passed = truth.filter((m) => Date.parse(m.last_changed) < Date.parse(cursor));
            const sent = world.ometria.contacts(collectionFor(LIST));
            const absent = passed.filter((m) => !sent.has(m.id));
            assert.deepEqual(absent.map((m) => m.id), [], `cursor ${cursor} passed unsent members`);
          }),
        );
        if (++acknowledged === 25) hard.abort(new Error("kill"));
      },
    });
    const killed = await service.runOnce(LIST, undefined, hard.signal);
    await Promise.all(checks);
    assert.equal(killed.outcome, "aborted");
    const state = await world.store.get(LIST);
    assert.ok(state?.run?.cursor, "a checkpoint was recorded");
    assert.ok(contacts.size < 6_000, "the kill came mid-run");

    // Which records the resumed run sends (batches the kill abandoned may still land while
    // it runs: they are from after the cursor too, so they change nothing below).
    const landed = new Set(world.ometria.contacts(collectionFor(LIST)).keys());
    const sent = new Set<string>();
    world.ometria.setOptions({
      reject: (r) => {
        sent.add(String(r.id));
        return undefined;
      },
    });
    const resumed = await service.runOnce(LIST);
    assert.equal(resumed.outcome, "ok", resumed.error);
    const cursorMs = Date.parse(state.run!.cursor!);
    const before = truth.filter((m) => Date.parse(m.last_changed) < cursorMs);
    const after = truth.filter((m) => Date.parse(m.last_changed) >= cursorMs);
    assert.deepEqual(
      before.filter((m) => sent.has(m.id)).map((m) => m.id),
      [],
      "nothing before the persisted cursor is sent again",
    );
    // Past the cursor, a member is sent again unless Ometria acknowledged that very record
    // before the kill (the content ledger skips it): either way, nobody is left out.
    assert.deepEqual(
      after.filter((m) => !sent.has(m.id) && !landed.has(m.id)).map((m) => m.id),
      [],
      "everything from the persisted cursor on is sent, or was in Ometria already",
    );
    assert.ok(resumed.unchanged > 0, "what Ometria acknowledged before the kill is not re-sent");
    assertInSync(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() reads a small list in one request and an unchanged one in one request", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 800, seed: 34, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { sliceMembers: 10 });
    world.mailchimp.resetStats();
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    // The archived pass (until archived members show in the listing) and the main pass (no
    // merge-fields request: these members have nothing beyond their names).
    assert.equal(world.mailchimp.stats.requests, 2, "a short first page is the whole window");
    world.clock.set(T0 + 10_000);
    world.mailchimp.resetStats();
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    assert.equal(world.mailchimp.stats.requests, 1);
  } finally {
    await world.close();
  }
});

for (const [readSlices, atOnce] of [[undefined, 6], [10, 10]] as const) {
  Deno.test(
    `runConnection() keeps ${atOnce} Mailchimp requests out at once on a large window (${
      readSlices ?? "default"
    } readers)`,
    async () => {
      // Once the window is cut, every request of the main pass is held until that many are
      // held at once: the run gets there only when its readers share the key's budget (two
      // cannot); with ten, every connection the key has.
      const held: (() => void)[] = [];
      let holding = false;
      let main = 0;
      const world = await startWorld({
        mailchimp: {
          onMembersRequest: async (_list, query) => {
            // The archived pass and the main pass's first page (which cuts the window) go by.
            if (!holding || query.has("status") || ++main <= 1) return;
            const go = Promise.withResolvers<void>();
            held.push(go.resolve);
            await go.promise;
          },
        },
      });
      try {
        world.mailchimp.addList(LIST, { members: 12_000, seed: 34, lastChangedTo: T0 - HOUR });
        // Small pages and slices, so that a test-sized list is cut.
        const service = world.service([LIST], {
          pageSize: 100,
          sliceMembers: 1_000,
          ...(readSlices !== undefined ? { readSlices } : {}),
        });
        holding = true;
        const run = service.runOnce(LIST);
        try {
          await until(() => held.length >= atOnce, `${atOnce} members requests at once`, {
            timeoutMs: 5_000,
            detail: () => `${held.length} held, ${world.mailchimp.stats.requests} requests`,
          });
        } finally {
          holding = false;
          for (const go of held.splice(0)) go();
        }
        const result = await run;
        assert.equal(result.outcome, "ok", result.error);
        assert.ok(world.mailchimp.stats.maxInFlight <= 10);
        assertExactCopy(world, LIST);
      } finally {
        await world.close();
      }
    },
  );
}
