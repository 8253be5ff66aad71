/**
 * The window reader on its own, against the Mailchimp simulator over HTTP: what a window
 * yields, what it proves, and where it refuses to conclude.
 */
import assert from "node:assert/strict";
import { WindowReader, type WindowSlice } from "../../lib/engine/window_reader.ts";
import { ConcurrencyLimiter } from "../../lib/http/concurrency_limiter.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { MailchimpClient } from "../../lib/mailchimp/client.ts";
import { MailchimpSimulator, type MailchimpSimulatorOptions } from "../../lib/sim/mailchimp_sim.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";

const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);
const HOUR = 3_600_000;
const LIST = "list000wr1";

async function withReader(
  simOptions: Omit<MailchimpSimulatorOptions, "clock">,
  setUp: (sim: MailchimpSimulator) => void,
  options: { pageSize?: number; maxTiePasses?: number },
  fn: (
    reader: WindowReader,
    sim: MailchimpSimulator,
    requests: () => number,
    clock: FakeClock,
  ) => Promise<void>,
): Promise<void> {
  const clock = new FakeClock(T0, { autoAdvance: true });
  const sim = await MailchimpSimulator.start({ clock, ...simOptions });
  try {
    setUp(sim);
    const client = new MailchimpClient({
      apiKey: sim.apiKey,
      baseUrl: sim.url,
      clock,
      limiter: new ConcurrencyLimiter(10),
    });
    let requests = 0;
    let seq = 0;
    const reader = new WindowReader({
      listId: LIST,
      source: client,
      logger: quietLogger(),
      pageSize: options.pageSize ?? 1000,
      marginMs: 2_000,
      maxTiePasses: options.maxTiePasses ?? 20,
      beforeRequest: () => requests++,
      readSeq: () => ++seq,
    });
    await fn(reader, sim, () => requests, clock);
  } finally {
    await sim.close();
  }
}

async function all(slices: AsyncIterable<WindowSlice>): Promise<WindowSlice[]> {
  const out: WindowSlice[] = [];
  for await (const s of slices) out.push(s);
  return out;
}

Deno.test("WindowReader reads a small list in one answer that reaches the present", async () => {
  await withReader(
    {},
    (sim) => {
      sim.addList(LIST, { members: 300, seed: 1, lastChangedTo: T0 - HOUR });
      // Changed after U (within the margin): past the window, but shown and handed out.
      sim.upsertMember(LIST, { email: "late@example.com", FNAME: "Late" });
    },
    {},
    async (reader, _sim, requests) => {
      const slices = await all(reader.slices(undefined));
      assert.equal(requests(), 1, "one request for an unchanged small list");
      assert.equal(slices.length, 1);
      const [only] = slices;
      assert.equal(only!.last, true);
      assert.equal(only!.toNow, true, "a short answer without an upper bound");
      assert.equal(only!.members.length, 300);
      assert.deepEqual(only!.beyond.map((b) => b.member.email_address), ["late@example.com"]);
      assert.ok(only!.readSeq > 0);
    },
  );
});

Deno.test("WindowReader does not claim the present after a full first page", async () => {
  await withReader(
    {},
    (sim) => {
      sim.addList(LIST, { members: 700, seed: 2, lastChangedTo: T0 - HOUR });
    },
    { pageSize: 200 },
    async (reader) => {
      const slices = await all(reader.slices(undefined));
      assert.equal(slices.reduce((n, s) => n + s.members.length, 0), 700);
      assert.equal(slices.at(-1)!.toNow, false, "a final read from U is the run's to do");
    },
  );
});

Deno.test("WindowReader reads from U on without an upper bound (the final read)", async () => {
  await withReader(
    {},
    (sim) => {
      sim.addList(LIST, { members: 100, seed: 3, lastChangedTo: T0 - HOUR });
    },
    { pageSize: 50 },
    async (reader, sim, _requests, clock) => {
      await all(reader.slices(undefined));
      const upper = reader.upper!;
      for (let i = 0; i < 120; i++) {
        sim.upsertMember(LIST, { email: `after.${i}@example.com`, FNAME: "After" });
      }
      // Read a moment later, as a run's window takes time: the final read can tell that
      // these did not change while it read them.
      await clock.sleep(2_000);
      const final = await all(reader.slices(upper, undefined, { unbounded: true }));
      const read = final.flatMap((s) => s.members.map((m) => m.email_address));
      assert.equal(read.filter((e) => e.startsWith("after.")).length, 120);
      assert.equal(final.at(-1)!.last, true);
    },
  );
});

Deno.test("WindowReader gives up on a tie group it cannot prove within its passes", async () => {
  // Ties served in a new order at every request: one pass can never prove the group whole
  // (it takes two passes that agree), so a cap of one pass must fail, never report ok.
  await withReader(
    { tieOrder: "random" },
    (sim) => {
      sim.addList(LIST, { tieGroups: [{ at: T0 - HOUR, size: 2_500 }] });
    },
    { maxTiePasses: 1 },
    async (reader) => {
      await assert.rejects(
        () => all(reader.slices(undefined)),
        /Could not prove that every member changed at .* was read in 1 passes/,
      );
    },
  );
});

Deno.test("WindowReader proves a tie group larger than a page whatever the order of ties", async () => {
  await withReader(
    { tieOrder: "random" },
    (sim) => {
      sim.addList(LIST, {
        members: 200,
        seed: 4,
        lastChangedTo: T0 - 2 * HOUR,
        tieGroups: [{ at: T0 - HOUR, size: 2_300 }],
      });
    },
    {},
    async (reader) => {
      const slices = await all(reader.slices(undefined));
      const ids = slices.flatMap((s) => s.members.map((m) => m.id));
      assert.equal(ids.length, 2_500);
      assert.equal(new Set(ids).size, 2_500, "each member once");
    },
  );
});

Deno.test("WindowReader reads a bulk import's tie group in full once, proving it with ids only", async () => {
  // 300 members, then a bulk import of 1,600 sharing one second: the first page ends with
  // 700 of them. They start the group's one pass in full (the other 900 follow in one page);
  // a pass of ids and last_changed only (two pages at once) proves it whole.
  await withReader(
    {},
    (sim) => {
      sim.addList(LIST, {
        members: 300,
        seed: 5,
        lastChangedTo: T0 - 2 * HOUR,
        tieGroups: [{ at: T0 - HOUR, size: 1_600 }],
      });
    },
    {},
    async (reader, sim, requests) => {
      sim.resetStats();
      const slices = await all(reader.slices(undefined));
      const ids = slices.flatMap((s) => s.members.map((m) => m.id));
      assert.equal(ids.length, 1_900);
      assert.equal(new Set(ids).size, 1_900, "each member once");
      assert.equal(sim.stats.membersServed, 1_900, "every member served in full once");
      // The proof (1,600), and one stamp telling whether `since` is inclusive.
      assert.equal(sim.stats.idsServed, 1_601);
      assert.equal(requests(), 6);
    },
  );
});

Deno.test("WindowReader proves a tie group with ids while a member leaves it", async () => {
  // A member of the group changes after the pass in full, as the first pass of ids asks:
  // that pass disagrees with the one before, so the proof waits for two that agree. The pass
  // in full was handed out as it was read, the member that left included (its newer version,
  // stamped past U, is for the next read), but only in parts that end at the group's second:
  // what the proof hands out, and ends after it, leaves it out.
  let sim: MailchimpSimulator | undefined;
  let leaver: string | undefined;
  let stampRequests = 0;
  await withReader(
    {
      onMembersRequest: (_list, params) => {
        if (params.get("fields") !== "members.id,members.last_changed,total_items") return;
        if (++stampRequests > 1) return;
        leaver = sim!.truth(LIST).find((m) => Date.parse(m.last_changed) === T0 - HOUR)!
          .email_address;
        sim!.upsertMember(LIST, { email: leaver, FNAME: "Moved" });
      },
    },
    (s) => {
      sim = s;
      s.addList(LIST, { tieGroups: [{ at: T0 - HOUR, size: 2_500 }] });
    },
    {},
    async (reader) => {
      const slices = await all(reader.slices(undefined));
      const read = slices.flatMap((s) => s.members.map((m) => m.email_address));
      assert.equal(new Set(read).size, read.length, "each member once");
      assert.equal(read.length, 2_500);
      const proven = slices.filter((s) => s.doneBefore > T0 - HOUR)
        .flatMap((s) => s.members.map((m) => m.email_address));
      assert.ok(leaver !== undefined && !proven.includes(leaver), "the member that left");
      assert.ok(read.includes(leaver), "read in full before it left");
      assert.ok(stampRequests >= 5, "two passes of ids after the one that disagreed");
    },
  );
});
