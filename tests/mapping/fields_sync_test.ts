/**
 * The field mapping end to end, over HTTP against the simulators: mapped fields reach
 * Ometria, `fields=` asks only for what the mapping reads, unknown merge tags stop the
 * program at start (exit 2) naming them, and an oversized record is quarantined.
 */
import assert from "node:assert/strict";
import { runCommand } from "../../lib/app/cli.ts";
import { loadConfig } from "../../lib/config/config.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { Metrics } from "../../lib/metrics/metrics.ts";
import { compareCopies, type TruthMember } from "../../lib/sim/compare.ts";
import type { MemberExtras } from "../../lib/sim/_member_index.ts";
import { startWorld, T0, type World } from "../_helpers/world.ts";
import { captureLogs } from "../freshness/_helpers.ts";

const LIST = "retail0001";

function mappedCopy(world: World, listId: string) {
  return compareCopies(
    world.mailchimp.truth(listId),
    world.ometria.contacts(collectionFor(listId)),
    listId,
    "push",
    { defaultFields: world.mailchimp.fieldDefinitions(listId) },
  );
}

Deno.test("a run ends with every mapped field of a retail list in Ometria", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 250, profile: "retail", lastChangedTo: T0 - 60_000 });
    const service = world.service([LIST]);
    const first = await service.runOnce(LIST);
    assert.equal(first.outcome, "ok", first.error);
    let c = mappedCopy(world, LIST);
    assert.deepEqual([c.missing.length, c.stale.length], [0, 0], `stale ${c.stale.slice(0, 3)}`);

    // Spot check against the simulator's truth: interests by name, the address as parts.
    const truth = world.mailchimp.truth(LIST);
    const full = truth.find((m) =>
      typeof m.merge_fields.ADDRESS === "object" && Object.values(m.interests ?? {}).some(Boolean)
    )!;
    const contact = world.ometria.contacts(collectionFor(LIST)).get(full.id) as Record<
      string,
      unknown
    >;
    const properties = contact.properties as Record<string, unknown>;
    // E.164: the simulator's numbers are "+44 7700 …".
    assert.equal(contact.phone_number, String(full.merge_fields.PHONE).replaceAll(" ", ""));
    assert.equal(contact.country_id, full.location.country_code);
    assert.equal(properties.birthday, full.merge_fields.BIRTHDAY);
    assert.equal(properties.address_city, (full.merge_fields.ADDRESS as { city: string }).city);
    const names = properties.mailchimp_interests as string[];
    assert.ok(
      names.length > 0 && names.every((n) => /^(Shoes|Bags|Menswear|London|Paris)$/.test(n)),
    );

    // A member's fields change: the next run carries the change.
    world.clock.set(world.clock.now() + 10_000);
    world.mailchimp.upsertMember(LIST, {
      email: full.email_address,
      extra: {
        merge: { PHONE: "+44 20 7946 0000", ADDRESS: "", BIRTHDAY: "12/31" },
        tags: ["Café"],
        country_code: "FR",
      },
    });
    world.clock.set(world.clock.now() + 10_000);
    const second = await service.runOnce(LIST);
    assert.equal(second.outcome, "ok", second.error);
    c = mappedCopy(world, LIST);
    assert.deepEqual([c.missing.length, c.stale.length], [0, 0], `stale ${c.stale.slice(0, 3)}`);
    const changed = world.ometria.contacts(collectionFor(LIST)).get(full.id) as Record<
      string,
      unknown
    >;
    assert.equal(changed.phone_number, "+442079460000");
    assert.equal(changed.country_id, "FR");
    assert.deepEqual((changed.properties as Record<string, unknown>).mailchimp_tags, ["Café"]);
    assert.equal((changed.properties as Record<string, unknown>).address_city ?? null, null);
  } finally {
    await world.close();
  }
});

Deno.test("the copy check notices a mapped field Ometria holds wrong", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 20, profile: "retail", lastChangedTo: T0 - 60_000 });
    // A mapping that sends no tags: the default-mapping check must call those contacts stale.
    const service = world.service([], {
      connections: [world.connection(LIST, { fields: { tags: null } })],
    });
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const c = mappedCopy(world, LIST);
    assert.equal(c.stale.length, 20);
    assert.equal(
      compareCopies(world.mailchimp.truth(LIST), world.ometria.contacts(collectionFor(LIST)), LIST)
        .stale.length,
      0,
      "without the option only names, email and status are compared",
    );
  } finally {
    await world.close();
  }
});

Deno.test("fields= asks Mailchimp only for the member fields the mapping reads", async () => {
  const asked: string[] = [];
  const world = await startWorld({
    mailchimp: { onMembersRequest: (_l, query) => void asked.push(query.get("fields") ?? "") },
  });
  try {
    world.mailchimp.addList(LIST, { members: 5, profile: "retail", lastChangedTo: T0 - 60_000 });
    world.mailchimp.addList("lean000001", { members: 5, lastChangedTo: T0 - 60_000 });
    const service = world.service([], {
      connections: [
        world.connection(LIST),
        world.connection("lean000001", {
          fields: {
            language: null,
            vip: null,
            member_rating: null,
            timestamp_signup: null,
            country: null,
            tags: null,
            interests: null,
          },
        }),
      ],
    });
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const full = new Set(asked.at(-1)!.split(","));
    for (
      const f of [
        "members.tags",
        "members.interests",
        "members.language",
        "members.vip",
        "members.member_rating",
        "members.timestamp_signup",
        "members.location.country_code",
        "members.merge_fields",
      ]
    ) assert.ok(full.has(f), f);
    assert.equal((await service.runOnce("lean000001")).outcome, "ok");
    assert.deepEqual(asked.at(-1)!.split(",").sort(), [
      "members.email_address",
      "members.id",
      "members.last_changed",
      "members.merge_fields",
      "members.status",
      "members.timestamp_opt",
      "total_items",
    ]);
    // A lean mapping still maps merge fields, by type.
    const contact = [...world.ometria.contacts(collectionFor("lean000001")).values()][0] as Record<
      string,
      unknown
    >;
    assert.equal("properties" in contact, false, "a names-only list has nothing else to send");
  } finally {
    await world.close();
  }
});

Deno.test("unknown merge tags in the mapping stop sync at start with exit 2, naming them", async () => {
  const world = await startWorld();
  using logs = captureLogs();
  try {
    world.mailchimp.addList(LIST, { members: 5, profile: "retail", lastChangedTo: T0 - 60_000 });
    const file = {
      connections: [{
        id: "uk-shop",
        list_id: LIST,
        mailchimp_api_key_env: "MC",
        ometria_api_key_env: "OM",
        fields: { merge_fields: { PHONE: "phone_number", MOBILE: null, SIZE: "properties.size" } },
      }],
    };
    const loaded = await loadConfig({
      env: {
        MC: world.mailchimp.apiKey,
        OM: world.ometria.apiKey,
        MAILCHIMP_BASE_URL: world.mailchimp.url,
        OMETRIA_BASE_URL: world.ometria.url,
      },
      args: ["--once", "--connections", "c.json"],
      readTextFile: () => Promise.resolve(JSON.stringify(file)),
    });
    assert.ok(loaded.ok, JSON.stringify(loaded));
    for (const command of ["sync", "reconcile"] as const) {
      const code = await runCommand({ ...loaded.config, command }, {
        clock: world.clock,
        logger: logs.logger,
        fetch,
        store: world.store,
        write: () => {},
        cron: () => Promise.resolve(),
        stop: new AbortController().signal,
        hardStop: new AbortController().signal,
      });
      assert.equal(code, 2, command);
    }
    const fatal = logs.records.filter((r) => r.level === "fatal").map((r) => String(r.message));
    assert.equal(fatal.length, 2);
    assert.match(fatal[0]!, /Connection uk-shop \(list retail0001\).*does not have: MOBILE, SIZE/);
    assert.equal(world.ometria.stats.requests, 0, "nothing pushed");
  } finally {
    await world.close();
  }
});

Deno.test("a member whose mapped record is over 60 KB is quarantined, the rest synced", async () => {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 30, profile: "retail", lastChangedTo: T0 - 60_000 });
    const big = world.mailchimp.truth(LIST)[3]!;
    world.clock.set(world.clock.now() - 70_000);
    world.mailchimp.upsertMember(LIST, {
      email: big.email_address,
      extra: { merge: { NOTES: "x".repeat(70_000) } },
    });
    world.clock.set(world.clock.now() + 70_000);
    const result = await world.service([LIST]).runOnce(LIST);
    assert.equal(result.outcome, "failed", "a held member fails the run");
    const state = await world.store.get(LIST);
    assert.deepEqual(state?.quarantine.map((q) => q.id), [big.id]);
    assert.match(state!.quarantine[0]!.reason, /60 KB/);
    const c = mappedCopy(world, LIST);
    assert.deepEqual(c.missing, [big.id]);
    assert.equal(c.stale.length, 0);
  } finally {
    await world.close();
  }
});

/** Changes a member's fields, then moves the clock past the run's margin for it. */
function changedBeforeRun(world: World, email: string, extra: Partial<MemberExtras>): void {
  world.mailchimp.upsertMember(LIST, { email, extra });
  world.clock.set(world.clock.now() + 30_000);
}

/** A retail list of 30 synced once; then the member's phone and a property are emptied. */
async function clearedPhoneRun(world: World) {
  world.mailchimp.addList(LIST, { members: 30, profile: "retail", lastChangedTo: T0 - 60_000 });
  const service = world.service([LIST]);
  assert.equal((await service.runOnce(LIST)).outcome, "ok");
  const member = world.mailchimp.truth(LIST).find((m) => m.merge_fields.PHONE !== "")!;
  const before = world.ometria.contacts(collectionFor(LIST)).get(member.id)!;
  assert.match(String(before.phone_number), /^\+44/);
  world.clock.set(world.clock.now() + 10_000);
  changedBeforeRun(world, member.email_address, {
    merge: { ...member.merge_fields, PHONE: "", SHOESIZE: "" },
  });
  const result = await service.runOnce(LIST);
  return { result, member, after: world.ometria.contacts(collectionFor(LIST)).get(member.id)! };
}

Deno.test("a field emptied in Mailchimp is cleared in Ometria, which merges what a record leaves out", async (t) => {
  await t.step("blanks clear (the simulator's default)", async () => {
    const world = await startWorld();
    try {
      const { result, after } = await clearedPhoneRun(world);
      assert.equal(result.outcome, "ok", result.error);
      assert.equal("phone_number" in after, false);
      assert.equal("shoesize" in (after.properties as Record<string, unknown>), false);
      const c = mappedCopy(world, LIST);
      assert.deepEqual([c.missing.length, c.stale.length], [0, 0]);
    } finally {
      await world.close();
    }
  });
  await t.step(
    "blanks are ignored: Ometria keeps the old value, and the copy check sees it",
    async () => {
      const world = await startWorld({ ometria: { records: { nullFields: "keep" } } });
      try {
        const { result, member, after } = await clearedPhoneRun(world);
        assert.equal(result.outcome, "ok", result.error);
        assert.match(String(after.phone_number), /^\+44/);
        assert.deepEqual(mappedCopy(world, LIST).stale, [member.id]);
      } finally {
        await world.close();
      }
    },
  );
  await t.step("blanks are refused: the record is rejected, naming the field", async () => {
    const world = await startWorld({ ometria: { records: { nullFields: "reject" } } });
    try {
      world.mailchimp.addList(LIST, { members: 30, profile: "retail", lastChangedTo: T0 });
      const result = await world.service([LIST]).runOnce(LIST);
      assert.equal(result.outcome, "failed");
      const state = await world.store.get(LIST);
      assert.ok((state?.quarantine.length ?? 0) > 0);
      assert.ok(world.ometria.errors().every((e) => /^root > /.test(e.error_path)));
      // The way out the docs give: leave emptied fields out.
      const omit = world.service([], {
        connections: [world.connection(LIST, { fields: { cleared: "omit" } })],
      });
      assert.equal((await omit.runOnce(LIST)).outcome, "ok");
    } finally {
      await world.close();
    }
  });
});

Deno.test("a list with day-first date formats reaches Ometria with the right days, served either way", async (t) => {
  for (const mergeDateValues of ["iso", "display"] as const) {
    await t.step(mergeDateValues, async () => {
      const world = await startWorld({ mailchimp: { mergeDateValues } });
      try {
        world.mailchimp.addList(LIST, {
          members: 40,
          profile: "retail",
          lastChangedTo: T0 - 60_000,
          formats: { date: "DD/MM/YYYY", birthday: "DD/MM" },
        });
        const result = await world.service([LIST]).runOnce(LIST);
        assert.equal(result.outcome, "ok", result.error);
        const c = mappedCopy(world, LIST);
        assert.deepEqual([c.missing.length, c.stale.length], [0, 0], `stale ${c.stale[0]}`);
      } finally {
        await world.close();
      }
    });
  }
});

/**
 * Runs `fn` in a world with a retail list of 5 members whose first member was just changed
 * by `extra` (given the member as it was), closing the world after.
 */
async function withChangedMember(
  extra: (member: TruthMember) => Partial<MemberExtras>,
  fn: (world: World, member: TruthMember) => Promise<void>,
): Promise<void> {
  const world = await startWorld();
  try {
    world.mailchimp.addList(LIST, { members: 5, profile: "retail", lastChangedTo: T0 - 60_000 });
    const member = world.mailchimp.truth(LIST)[0]!;
    changedBeforeRun(world, member.email_address, extra(member));
    await fn(world, member);
  } finally {
    await world.close();
  }
}

Deno.test("a member with 60 tags keeps the Ometria lists of the tags past the listing's 50", async () => {
  const tags = Array.from({ length: 60 }, (_, i) => `Tag ${i}`);
  await withChangedMember(() => ({ tags }), async (world, member) => {
    const service = world.service([], {
      connections: [world.connection(LIST, {
        fields: { tags: { lists: { "Tag 1": "L1", "Tag 55": "L55", Gone: "L0" } } },
      })],
    });
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const contact = world.ometria.contacts(collectionFor(LIST)).get(member.id)!;
    assert.deepEqual(contact["@add_to_lists"], ["L1", "L55"]);
    assert.deepEqual(contact["@remove_from_lists"], ["L0"]);
  });
});

Deno.test("a phone that cannot be made E.164 is left out and counted, not sent as typed", async () => {
  const extra = (m: TruthMember) => ({ merge: { ...m.merge_fields, PHONE: "07700 900123" } });
  await withChangedMember(extra, async (world, member) => {
    const metrics = new Metrics();
    using logs = captureLogs();
    const service = world.service([LIST], { metrics, logger: logs.logger });
    assert.equal((await service.runOnce(LIST)).outcome, "ok");
    const contact = world.ometria.contacts(collectionFor(LIST)).get(member.id)!;
    assert.equal("phone_number" in contact, false);
    assert.match(
      metrics.render(),
      /sync_fields_dropped_total\{connection="retail0001",field="phone_number",reason="no_country_code"\} 1/,
    );
    const warning = logs.text().split("\n").find((l) => l.includes("left out of phone_number"));
    assert.ok(warning, logs.text());
    assert.doesNotMatch(warning, /07700/, "a phone number is personal data: never logged");
  });
});
