/**
 * The six ways an earlier build diverged silently (issue 7), each played by the simulators:
 * torn pages, a wrong total_items, Mailchimp's clock stepping back, permanent deletes, email
 * changes, malformed members and Ometria refusing records or batches. Each ends with the copy
 * exact: no member missing or stale, every orphan opted out.
 */
import assert from "node:assert/strict";
import { configure, getLogger, type LogRecord, reset } from "@logtape/logtape";
import { formatStatusTable } from "../../lib/freshness/status_report.ts";
import { buildStatusReport } from "../../lib/freshness/status_report.ts";
import { subscriberHash } from "../../lib/mailchimp/member.ts";
import { assertExactCopy, startWorld, T0 } from "../_helpers/world.ts";

const LIST = "list000001";
const HOUR = 3_600_000;
const MINUTE = 60_000;

for (const mode of ["stamp", "move", "twice"] as const) {
  Deno.test(`runConnection() loses nobody to pages torn mid-response (${mode})`, async () => {
    const world = await startWorld({ mailchimp: { tornPageRate: 0.4, tornPageMode: mode } });
    try {
      world.mailchimp.addList(LIST, { members: 6_000, seed: 3, lastChangedTo: T0 - HOUR });
      const service = world.service([LIST], { pageSize: 200 });
      const full = await service.runOnce(LIST);
      assert.equal(full.outcome, "ok", full.error);
      assert.ok(world.mailchimp.stats.tornPages > 5, "pages were torn");
      // Torn members changed for real: they belong to the next window.
      world.mailchimp.setOptions({ tornPageRate: 0 });
      world.clock.set(world.clock.now() + MINUTE);
      const next = await service.runOnce(LIST);
      assert.equal(next.outcome, "ok", next.error);
      assertExactCopy(world, LIST);
    } finally {
      await world.close();
    }
  });
}

Deno.test("runConnection() keeps reading while total_items is too low, too high or jittery", async () => {
  for (const error of [-600, 600]) {
    const world = await startWorld({
      mailchimp: { totalItemsError: error, totalItemsJitter: 50, tieOrder: "random" },
    });
    try {
      const at = T0 - HOUR;
      world.mailchimp.addList(LIST, {
        members: 3_000,
        lastChangedTo: T0 - 2 * HOUR,
        tieGroups: [{ at, size: 1_500 }, { at: at + 1000, size: 3_000 }],
      });
      const result = await world.service([LIST]).runOnce(LIST);
      assert.equal(result.outcome, "ok", result.error);
      assertExactCopy(world, LIST);
    } finally {
      await world.close();
    }
  }
});

Deno.test("runConnection() reads a tie group again while members leave it mid-pass", async () => {
  const world = await startWorld({ mailchimp: { tornPageRate: 0.3 } });
  try {
    world.mailchimp.addList(LIST, { tieGroups: [{ at: T0 - HOUR, size: 2_500 }] });
    const service = world.service([LIST]);
    const first = await service.runOnce(LIST);
    assert.equal(first.outcome, "ok", first.error);
    world.mailchimp.setOptions({ tornPageRate: 0 });
    world.clock.set(world.clock.now() + MINUTE);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() fails, never reports ok, when pages never stand still", async () => {
  // Every answer torn: nothing can prove the window or the tie group complete, so the run
  // must not claim either; its checkpoint stays where the proof ended.
  const world = await startWorld({ mailchimp: { tornPageRate: 1, tieOrder: "random" } });
  try {
    world.mailchimp.addList(LIST, { tieGroups: [{ at: T0 - HOUR, size: 2_500 }] });
    const result = await world.service([LIST]).runOnce(LIST);
    assert.equal(result.outcome, "failed");
    assert.equal(result.completed, false);
    assert.match(result.error!, /kept changing|Could not prove/);
    const state = (await world.store.get(LIST))!;
    assert.equal(state.fresh_as_of, null, "freshness not claimed");
    assert.equal(state.watermark, null);
  } finally {
    await world.close();
  }
});

Deno.test("runConnection() reads again what was stamped while Mailchimp's clock stepped back", async () => {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { collect: (r) => records.push(r) },
    loggers: [
      { category: ["step"], sinks: ["collect"], lowestLevel: "warning" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 500, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST], { logger: getLogger(["step"]) });
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    world.clock.set(T0 + 5 * MINUTE);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    // Mailchimp's clock steps back ten minutes; changes are stamped in the past.
    world.mailchimp.setOptions({ clockOffsetMs: -10 * MINUTE });
    const changed = world.mailchimp.changeMembers(LIST, 40);
    world.clock.set(T0 + 7 * MINUTE);
    const after = await service.runOnce(LIST);
    assert.equal(after.outcome, "ok", after.error);
    assert.ok(after.read >= changed.length, `read ${after.read} of ${changed.length} changed`);
    assertExactCopy(world, LIST);
    const warning = records.find((r) => String(r.rawMessage).includes("clock for"));
    assert.ok(warning, "the step is logged");
    assert.equal(warning.properties.connection, LIST);
  } finally {
    await world.close();
    await reset();
  }
});

Deno.test("reconcile opts out members deleted for good and the old id of an email change", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 300, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const [gone, moved] = world.mailchimp.truth(LIST).slice(10, 12);
    world.mailchimp.deleteMember(LIST, gone!.email_address);
    world.mailchimp.changeEmail(LIST, moved!.email_address, "moved@example.com");
    world.clock.set(T0 + 5 * MINUTE);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");

    const [result] = await service.reconcile([LIST]);
    assert.equal(result?.outcome, "ok", result?.error);
    assert.equal(result?.diverged, true);
    assert.equal(result?.summary?.orphans, 2);
    assert.equal(result?.summary?.missing, 0, "polling missed nobody");
    assertExactCopy(world, LIST);
    const optedOut = world.ometria.contacts(`mailchimp-${LIST}`).get(gone!.id)!;
    assert.equal(optedOut.marketing_optin, "EXPLICITLY_OPTEDOUT");
    assert.ok(
      (optedOut.properties as Record<string, unknown>).mailchimp_removed_at,
      "says why",
    );
    assert.equal(optedOut.email, gone!.email_address, "what Ometria held is kept");
    const state = (await world.store.get(LIST))!;
    assert.equal(state.last_reconcile?.orphans, 2);

    // The ledger lost the orphans: a second pass finds nothing, with one listing request
    // (and one for the list's name, for the status page).
    world.mailchimp.resetStats();
    const [again] = await service.reconcile([LIST]);
    assert.deepEqual([again?.diverged, again?.summary?.orphans], [false, 0]);
    assert.equal(world.mailchimp.stats.membersRequests, 1);
    assert.equal(world.mailchimp.stats.requests, 2);
    assert.equal((await world.store.get(LIST))?.list_name, `Simulated list ${LIST}`);
  } finally {
    await world.close();
  }
});

Deno.test("reconcile on the legacy /record endpoint marks orphans deleted", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 50, lastChangedTo: T0 - HOUR });
    const service = world.service([], {
      connections: [
        world.connection(LIST, {
          ometria: {
            apiKey: world.ometria.apiKey,
            baseUrl: world.ometria.url,
            endpoint: "record",
          },
        }),
      ],
    });
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const gone = world.mailchimp.truth(LIST)[0]!;
    world.mailchimp.deleteMember(LIST, gone.email_address);
    const [result] = await service.reconcile([LIST]);
    assert.equal(result?.summary?.orphans, 1);
    assert.equal(world.ometria.legacyRecords().get(gone.id)?.status, "deleted");
  } finally {
    await world.close();
  }
});

Deno.test("reconcile never opts out a live member a shifting listing skipped", async () => {
  // A member deleted before each page of reconciliation's listing (default order, read with
  // offsets) shifts the offsets: live members are skipped by it. Each apparent orphan is
  // fetched by its hash before anything is opted out.
  let deleting = true;
  const world = await startWorld({
    mailchimp: {
      onMembersRequest: (list, query) => {
        if (deleting && !query.has("sort_field") && query.get("fields") !== "total_items") {
          const first = world.mailchimp.truth(list)[0];
          if (first) world.mailchimp.deleteMember(list, first.email_address);
        }
      },
    },
  });
  try {
    world.mailchimp.addList(LIST, { members: 3_500, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const [result] = await service.reconcile([LIST]);
    assert.equal(result?.outcome, "ok", result?.error);
    const live = new Set(world.mailchimp.truth(LIST).map((m) => m.id));
    const contacts = world.ometria.contacts(`mailchimp-${LIST}`);
    for (const id of live) {
      const removed = (contacts.get(id)?.properties as Record<string, unknown> | undefined)
        ?.mailchimp_removed_at;
      assert.equal(removed, undefined, `${id} is live but was opted out as gone`);
    }
    assert.ok(world.mailchimp.stats.memberRequests > 0, "apparent orphans were checked");
    // Members deleted after the listing had seen them are the next reconciliation's.
    deleting = false;
    await service.reconcile([LIST]);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("a malformed member is quarantined, the rest synced, and released once fixed", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 200, lastChangedTo: T0 - HOUR });
    const [weird, noEmail] = world.mailchimp.truth(LIST).slice(5, 7);
    world.mailchimp.corruptMember(LIST, weird!.email_address, { status: "weird" });
    world.mailchimp.corruptMember(LIST, noEmail!.email_address, {
      email_address: undefined,
      surprise: { a: 1 },
    });
    const service = world.service([LIST]);
    const first = await service.runOnce(LIST);
    assert.equal(first.outcome, "failed", "never ok while a member is held");
    assert.equal(first.completed, true, "the rest of the list went through");
    assert.equal(first.quarantined, 2);
    assert.match(first.error!, /2 member\(s\) quarantined/);
    assertExactCopy(world, LIST);
    const state = (await world.store.get(LIST))!;
    assert.deepEqual(state.quarantine.map((e) => e.id).sort(), [weird!.id, noEmail!.id].sort());
    assert.match(state.quarantine.find((e) => e.id === weird!.id)!.reason, /status "weird"/);

    const report = buildStatusReport(
      [{ id: LIST, list_id: LIST, threshold_seconds: 7200, state }],
      world.clock.now(),
    );
    assert.equal(report.connections[0]!.quarantined, 2);
    const table = formatStatusTable(report);
    assert.match(table, /2 member\(s\) quarantined/);
    assert.match(table, new RegExp(`${weird!.id}.*status "weird"`));

    // Still malformed: tried again by hash, still held, still failing.
    world.clock.set(T0 + MINUTE);
    world.mailchimp.resetStats();
    const second = await service.runOnce(LIST);
    assert.equal(second.outcome, "failed");
    assert.equal(world.mailchimp.stats.memberRequests, 2, "each held member fetched once");
    const attempts = (await world.store.get(LIST))!.quarantine.map((e) => e.attempts);
    assert.deepEqual(attempts, [2, 2]);

    // Fixed in Mailchimp: released by the next run and copied.
    world.mailchimp.uncorruptMember(LIST, weird!.email_address);
    world.mailchimp.uncorruptMember(LIST, noEmail!.email_address);
    world.clock.set(T0 + 2 * MINUTE);
    const third = await service.runOnce(LIST);
    assert.equal(third.outcome, "ok", third.error);
    assert.equal((await world.store.get(LIST))!.quarantine.length, 0);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("a record Ometria rejects is quarantined and retried until Ometria takes it", async () => {
  const bad = subscriberHash("reject.me@example.com");
  const world = await startWorld({
    ometria: { reject: (r) => r.id === bad ? "email is not allowed" : undefined },
  });
  try {
    world.mailchimp.addList(LIST, { members: 150, lastChangedTo: T0 - HOUR });
    world.mailchimp.upsertMember(LIST, { email: "reject.me@example.com" });
    world.clock.set(T0 + 5_000);
    const service = world.service([LIST]);
    const first = await service.runOnce(LIST);
    assert.equal(first.outcome, "failed");
    const held = (await world.store.get(LIST))!.quarantine;
    assert.deepEqual(held.map((e) => e.id), [bad], "only the rejected record, not its batch");
    assert.match(held[0]!.reason, /email is not allowed/);

    world.clock.set(T0 + MINUTE);
    assert.equal((await service.runOnce(LIST)).outcome, "failed", "still rejected, still held");
    world.ometria.setOptions({ reject: undefined });
    world.clock.set(T0 + 2 * MINUTE);
    const ok = await service.runOnce(LIST);
    assert.equal(ok.outcome, "ok", ok.error);
    assert.equal((await world.store.get(LIST))!.quarantine.length, 0);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("a 413 below 100 records halves the batch, remembers it, and loses nobody", async () => {
  const world = await startWorld({ ometria: { maxBatchRecords: 30 } });
  try {
    world.mailchimp.addList(LIST, { members: 1_000, lastChangedTo: T0 - HOUR });
    const service = world.service([LIST]);
    const result = await service.runOnce(LIST);
    assert.equal(result.outcome, "ok", result.error);
    assertExactCopy(world, LIST);
    // Those sent before the first 413 came back meet it too (8 pushes in flight at most);
    // after it, one request at a time finds the size (50, then 25).
    assert.ok(world.ometria.stats.status413 <= 8 + 1, `413s: ${world.ometria.stats.status413}`);

    world.ometria.resetStats();
    for (const m of world.mailchimp.truth(LIST).slice(0, 200)) {
      world.mailchimp.upsertMember(LIST, { email: m.email_address, FNAME: "New" });
    }
    world.clock.set(world.clock.now() + MINUTE);
    const again = await service.runOnce(LIST);
    assert.equal(again.outcome, "ok", again.error);
    assertExactCopy(world, LIST);
    assert.equal(world.ometria.stats.status413, 0, "the size learned is kept");
  } finally {
    await world.close();
  }
});

Deno.test("ticks reconcile each connection every RECONCILE_EVERY_HOURS, not before", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 100, lastChangedTo: T0 - HOUR });
    const diverged: string[] = [];
    const service = world.service([LIST], {
      reconcileEveryHours: 6,
      onDiverged: (c, r) => diverged.push(`${c.id}:${r.summary?.orphans}`),
    });
    await service.tick();
    const gone = world.mailchimp.truth(LIST)[0]!;
    world.mailchimp.deleteMember(LIST, gone.email_address);
    world.clock.set(T0 + 5 * HOUR);
    await service.tick();
    assert.equal((await world.store.get(LIST))?.last_reconcile, null, "not due yet");
    world.clock.set(T0 + 6 * HOUR + MINUTE);
    await service.tick();
    assert.equal((await world.store.get(LIST))?.last_reconcile?.orphans, 1);
    assert.deepEqual(diverged, [`${LIST}:1`]);
    assertExactCopy(world, LIST);
  } finally {
    await world.close();
  }
});

Deno.test("no persisted checkpoint passes a rejected member before its hold is written", async () => {
  // Slices acknowledge out of step while journaled writes take real time: the cursor of
  // each checkpoint must be taken with the holds written before it, or a crash at that
  // checkpoint would leave a member neither before a true cursor nor in quarantine.
  const dir = await Deno.makeTempDir({ prefix: "holdrace_" });
  const { FileStore } = await import("../../lib/state/file_store.ts");
  const { KEEP_QUARANTINE, parseJournal } = await import("../../lib/state/journal.ts");
  const { connectionStateSchema } = await import("../../lib/state/schema.ts");
  const path = `${dir}/sync_jobs.json`;
  const store = await FileStore.open(path, {
    clock: new (await import("../_helpers/fake_clock.ts")).FakeClock(T0),
    compactBytes: 1e9,
  });
  const world = await startWorld({
    store,
    ometria: { reject: (r) => String(r.id).startsWith("0") ? "refused" : undefined },
  });
  try {
    world.mailchimp.addList(LIST, { members: 20_000, seed: 5, lastChangedTo: T0 - HOUR });
    world.clock.set(T0 + 5_000);
    const service = world.service([LIST], { pageSize: 1000, readSlices: 4, sliceMembers: 1000 });
    assert.equal((await service.runOnce(LIST)).outcome, "failed", "held members fail the run");
    const times = new Map(
      world.mailchimp.truth(LIST).map((m) => [m.id, Date.parse(m.last_changed)]),
    );
    const rejected = [...times.keys()].filter((id) => id.startsWith("0"));
    const journal = parseJournal(await Deno.readFile(`${path}.journal`));
    let checkpoints = 0;
    let quarantine: unknown = [];
    for (const raw of journal.entries as Record<string, unknown>[]) {
      // A line may keep the quarantine of the line before (journal version 2).
      const entry = raw[KEEP_QUARANTINE] ? { ...raw, quarantine } : raw;
      const state = connectionStateSchema.parse(entry);
      quarantine = state.quarantine;
      if (!state.run?.cursor) continue;
      checkpoints++;
      const cursor = Date.parse(state.run.cursor);
      const heldIds = new Set(state.quarantine.map((e) => e.id));
      const lost = rejected.filter((id) => times.get(id)! < cursor && !heldIds.has(id));
      assert.deepEqual(lost, [], `checkpoint at ${state.run.cursor} passes unheld members`);
    }
    assert.ok(checkpoints > 10, `${checkpoints} checkpoints were read back`);
  } finally {
    await world.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a full quarantine stops the run before the members it cannot hold", async () => {
  let rejecting = true;
  const world = await startWorld({
    ometria: { reject: () => rejecting ? "temporarily refused" : undefined },
  });
  try {
    world.mailchimp.addList(LIST, { members: 10_050, seed: 3, lastChangedTo: T0 - HOUR });
    world.clock.set(T0 + 5_000);
    const service = world.service([LIST]);
    const first = await service.runOnce(LIST);
    assert.equal(first.outcome, "failed");
    assert.equal(first.completed, false, "the window is not complete past what cannot be held");
    assert.match(first.error!, /More than 10000 members of list .* cannot be delivered/);
    const state = (await world.store.get(LIST))!;
    assert.equal(state.quarantine.length, 10_000);
    assert.equal(state.watermark, null);

    // Ometria takes everyone again: the held members go out with their retries and the rest
    // with the window, and no run reports ok before every member is in Ometria.
    rejecting = false;
    for (let i = 1; i <= 80; i++) {
      world.clock.set(T0 + MINUTE * i);
      const run = await service.runOnce(LIST, undefined);
      if (run.outcome === "ok") break;
    }
    assertExactCopy(world, LIST);
    assert.equal((await world.store.get(LIST))!.quarantine.length, 0);
  } finally {
    await world.close();
  }
});
