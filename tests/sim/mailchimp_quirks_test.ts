/**
 * The Mailchimp simulator's misbehaviours (issue 7): torn pages, a wrong total_items, a
 * clock step, re-keyed members, malformed members, the single-member resource and the
 * ids-only listing.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { formatMailchimpTime } from "../../lib/mailchimp/time.ts";
import {
  MailchimpSimulator,
  type MailchimpSimulatorOptions,
  type SimMember,
} from "../../lib/sim/mailchimp_sim.ts";

const T0 = Date.UTC(2026, 0, 31, 12, 0, 0);
const HOUR = 3_600_000;

interface Answer {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  body: any;
  text: string;
}

async function start(options: MailchimpSimulatorOptions = {}): Promise<MailchimpSimulator> {
  return await MailchimpSimulator.start({ clock: new FakeClock(T0), ...options });
}

async function get(sim: MailchimpSimulator, path: string): Promise<Answer> {
  const res = await fetch(`${sim.url}/${path}`, {
    headers: { authorization: `Basic ${btoa(`any:${sim.apiKey}`)}` },
  });
  const text = await res.text();
  const isJson = (res.headers.get("content-type") ?? "").includes("json");
  return { status: res.status, headers: res.headers, body: isJson ? JSON.parse(text) : text, text };
}

function members(sim: MailchimpSimulator, listId: string, query: Record<string, string | number>) {
  const q = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
  return get(sim, `lists/${listId}/members?${q}`);
}

function md5(email: string): string {
  return createHash("md5").update(email.toLowerCase()).digest("hex");
}

/** A window query over the hour before T0, sorted by last_changed, one page of 1000. */
const WINDOW = {
  sort_field: "last_changed",
  sort_dir: "ASC",
  since_last_changed: formatMailchimpTime(T0 - HOUR),
  before_last_changed: formatMailchimpTime(T0),
  count: 1000,
};

/** A simulator whose list `l1` has `n` members changed in the hour before T0, clock at T0 + 1 min. */
async function windowed(n: number, options: MailchimpSimulatorOptions = {}) {
  const clock = new FakeClock(T0 + 60_000);
  const sim = await start({ clock, ...options });
  sim.addList("l1", { members: n, seed: 4, lastChangedFrom: T0 - HOUR, lastChangedTo: T0 - 1000 });
  return { sim, clock, now: formatMailchimpTime(clock.now()) };
}

Deno.test("MailchimpSimulator tearPages stamp shows a really changed member in place with its new last_changed", async () => {
  const { sim, now } = await windowed(40);
  try {
    const before = await members(sim, "l1", WINDOW);
    const ids = before.body.members.map((m: SimMember) => m.id);
    sim.tearPages(1, { mode: "stamp" });
    const torn = await members(sim, "l1", WINDOW);
    assert.equal(sim.stats.tornPages, 1);
    const [tear] = sim.stats.tears;
    assert.ok(tear);
    assert.deepEqual({ ...tear, id: "" }, {
      listId: "l1",
      id: "",
      position: tear.position,
      mode: "stamp",
    });
    assert.equal(torn.body.total_items, 40, "counted before the change");
    assert.deepEqual(torn.body.members.map((m: SimMember) => m.id), ids, "same order of ids");
    const shown = torn.body.members[tear.position];
    assert.equal(shown.id, tear.id);
    assert.equal(shown.last_changed, now, "stamped at or after before_last_changed");
    assert.notDeepEqual(shown.merge_fields, before.body.members[tear.position].merge_fields);
    const truth = sim.truth("l1").find((m) => m.id === tear.id);
    assert.deepEqual(truth, shown, "the change is real");
    // The next answer is whole again, and the member has left the window.
    const after = await members(sim, "l1", WINDOW);
    assert.equal(after.body.total_items, 39);
    assert.ok(!after.body.members.some((m: SimMember) => m.id === tear.id));
    assert.equal(sim.stats.tornPages, 1);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator tearPages move appends the changed member at the end of the page", async () => {
  const { sim, now } = await windowed(40);
  try {
    const ids = (await members(sim, "l1", WINDOW)).body.members.map((m: SimMember) => m.id);
    sim.tearPages(1, { mode: "move" });
    const torn = await members(sim, "l1", WINDOW);
    const tear = sim.stats.tears[0]!;
    assert.equal(tear.mode, "move");
    const got = torn.body.members.map((m: SimMember) => m.id);
    assert.deepEqual(got, [...ids.filter((id: string) => id !== tear.id), tear.id]);
    assert.equal(torn.body.members.at(-1).last_changed, now);
    assert.equal(torn.body.total_items, 40);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator tearPages twice shows the changed member at its place and again at the end", async () => {
  const { sim, now } = await windowed(40);
  try {
    const before = (await members(sim, "l1", WINDOW)).body.members as SimMember[];
    sim.tearPages(1, { mode: "twice" });
    const torn = (await members(sim, "l1", WINDOW)).body.members as SimMember[];
    const tear = sim.stats.tears[0]!;
    assert.equal(tear.mode, "twice");
    assert.deepEqual(torn.slice(0, -1), before, "the page as it was, the old state included");
    assert.equal(torn.at(-1)!.id, tear.id);
    assert.equal(torn.at(-1)!.last_changed, now);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator tears a member anywhere in the page, deterministically from quirkSeed", async () => {
  const positions = async (quirkSeed: number) => {
    const { sim } = await windowed(30, { quirkSeed, tornPageMode: "move" });
    try {
      sim.tearPages(8);
      for (let i = 0; i < 8; i++) await members(sim, "l1", { ...WINDOW, count: 10 });
      assert.ok(sim.stats.tears.every((t) => t.mode === "move"));
      return { tears: sim.stats.tears.map((t) => [t.position, t.id]), truth: sim.truth("l1") };
    } finally {
      await sim.close();
    }
  };
  const a = await positions(5);
  const b = await positions(5);
  assert.deepEqual(a, b);
  assert.ok(a.tears.some(([p]) => p !== 9), "not only the last member of the page");
  assert.notDeepEqual((await positions(6)).tears, a.tears);
});

Deno.test("MailchimpSimulator tornPageRate tears a share of answers; empty pages keep queued tears", async () => {
  const { sim } = await windowed(20, { tornPageRate: 0.5, quirkSeed: 3 });
  try {
    for (let i = 0; i < 40; i++) await members(sim, "l1", { count: 5, offset: i % 4 * 5 });
    assert.ok(sim.stats.tornPages > 5 && sim.stats.tornPages < 35, `${sim.stats.tornPages}`);
    sim.setOptions({ tornPageRate: 0 });
    sim.resetStats();
    sim.tearPages(1, { mode: "stamp" });
    const empty = await members(sim, "l1", { offset: 500 });
    assert.deepEqual(empty.body.members, []);
    assert.equal(sim.stats.tornPages, 0);
    await members(sim, "l1", { count: 3 });
    assert.equal(sim.stats.tornPages, 1, "the queued tear waited for a page with members");
    await members(sim, "l1", { count: 3 });
    assert.equal(sim.stats.tornPages, 1);
    assert.throws(() => sim.setOptions({ tornPageRate: 2 }), RangeError);
    assert.throws(() => sim.tearPages(-1), RangeError);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator answers a wrong total_items with totalItemsError and totalItemsJitter", async () => {
  const sim = await start();
  sim.addList("l1", { members: 30 });
  try {
    const total = async (query: Record<string, string | number> = {}) =>
      (await members(sim, "l1", query)).body.total_items;
    assert.equal(await total(), 30);
    sim.setOptions({ totalItemsError: -4 });
    assert.equal(await total(), 26);
    assert.equal(await total({ sort_field: "last_changed", status: "subscribed" }) >= 0, true);
    sim.setOptions({ totalItemsError: 7 });
    assert.equal(await total({ sort_field: "last_changed" }), 37);
    sim.setOptions({ totalItemsError: -1000 });
    assert.equal(await total(), 0, "clamped at 0");
    assert.equal((await members(sim, "l1", { count: 50 })).body.members.length, 30);
    sim.setOptions({ totalItemsError: 0, totalItemsJitter: 3, quirkSeed: 9 });
    const seen = new Set<number>();
    for (let i = 0; i < 40; i++) seen.add(await total());
    assert.ok([...seen].every((t) => t >= 27 && t <= 33));
    assert.ok(seen.size >= 4);
    assert.equal((await get(sim, "lists/l1")).body.stats.total_contacts, 30);
    assert.throws(() => sim.setOptions({ totalItemsJitter: -1 }), RangeError);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator clockOffsetMs steps its clock back for stamps and the Date header", async () => {
  const clock = new FakeClock(T0);
  const sim = await start({ clock });
  sim.addList("l1", { members: 20, lastChangedFrom: T0 - HOUR, lastChangedTo: T0 - HOUR });
  try {
    const first = sim.upsertMember("l1", { email: "first@example.com" });
    assert.equal(first.last_changed, formatMailchimpTime(T0));
    await clock.tick(60_000);
    sim.setOptions({ clockOffsetMs: -600_000 });
    const ping = await get(sim, "ping");
    assert.equal(ping.headers.get("date"), new Date(T0 + 60_000 - 600_000).toUTCString());
    const second = sim.upsertMember("l1", { email: "second@example.com" });
    assert.equal(second.last_changed, formatMailchimpTime(T0 - 540_000));
    const changed = sim.changeMembers("l1", 3, 1);
    assert.ok(changed.every((m) => m.last_changed === second.last_changed));
    // Members changed after the step sort before the one changed earlier.
    const page = await members(sim, "l1", { sort_field: "last_changed", count: 1000 });
    const ids = page.body.members.map((m: SimMember) => m.id);
    assert.equal(ids.at(-1), first.id);
    assert.ok(ids.indexOf(second.id) < ids.indexOf(first.id));
    const recent = await members(sim, "l1", {
      sort_field: "last_changed",
      since_last_changed: formatMailchimpTime(T0 - 600_000),
    });
    assert.equal(recent.body.total_items, 5);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator changeEmail re-keys a member: the old id disappears, the new one appears", async () => {
  const clock = new FakeClock(T0);
  const sim = await start({ clock });
  sim.addList("l1", { members: 5 });
  try {
    const old = sim.upsertMember("l1", { email: "Old@Example.com", FNAME: "Ada", LNAME: "L" });
    sim.upsertMember("l1", { email: "old@example.com", status: "unsubscribed" });
    await clock.tick(5000);
    const moved = sim.changeEmail("l1", "old@example.com", "New@Example.com");
    assert.equal(moved.id, md5("new@example.com"));
    assert.equal(moved.email_address, "New@Example.com");
    assert.equal(moved.status, "unsubscribed");
    assert.deepEqual(moved.merge_fields, { FNAME: "Ada", LNAME: "L" });
    assert.equal(moved.last_changed, formatMailchimpTime(T0 + 5000));
    const truth = sim.truth("l1");
    assert.equal(truth.length, 6);
    assert.ok(!truth.some((m) => m.id === old.id));
    assert.deepEqual(truth.at(-1), moved);
    const listed = await members(sim, "l1", { sort_field: "last_changed", count: 100 });
    assert.ok(!listed.body.members.some((m: SimMember) => m.id === old.id));
    assert.deepEqual(listed.body.members.at(-1), moved);
    assert.equal((await get(sim, `lists/l1/members/${old.id}`)).status, 404);
    assert.equal((await get(sim, `lists/l1/members/${moved.id}`)).body.id, moved.id);
    // A change of case keeps the id.
    const recased = sim.changeEmail("l1", "new@example.com", "new@EXAMPLE.com");
    assert.equal(recased.id, moved.id);
    assert.equal(sim.truth("l1").length, 6);
    assert.throws(() => sim.changeEmail("l1", "nobody@example.com", "x@example.com"), RangeError);
    const other = truth[0]!.email_address;
    assert.throws(() => sim.changeEmail("l1", other, "new@example.com"), RangeError);
    assert.throws(() => sim.changeEmail("l1", other, "not-an-email"), TypeError);
    sim.deleteMember("l1", "NEW@example.com");
    assert.equal(sim.truth("l1").length, 5);
    assert.equal((await get(sim, `lists/l1/members/${moved.id}`)).status, 404);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator corruptMember serves raw malformed fields until the member changes", async () => {
  const clock = new FakeClock(T0);
  const sim = await start({ clock });
  sim.addList("l1", { members: 4, lastChangedFrom: T0 - HOUR, lastChangedTo: T0 - HOUR / 2 });
  try {
    const victim = sim.upsertMember("l1", { email: "victim@example.com", FNAME: "V" });
    const overrides = {
      status: "weird",
      email_address: null,
      id: undefined,
      last_changed: "not a date",
      surprise: { nested: [1, 2] },
    };
    sim.corruptMember("l1", "VICTIM@example.com", overrides);
    const page = await members(sim, "l1", { sort_field: "last_changed", count: 100 });
    assert.equal(page.body.total_items, 5);
    const served = page.body.members.at(-1);
    assert.equal("id" in served, false, "a key set to undefined is left out");
    assert.equal(served.email_address, null);
    assert.equal(served.status, "weird");
    assert.equal(served.last_changed, "not a date");
    assert.deepEqual(served.surprise, { nested: [1, 2] });
    assert.deepEqual(served.merge_fields, victim.merge_fields);
    // Sorting and windows still use the true last_changed.
    const recent = await members(sim, "l1", {
      sort_field: "last_changed",
      since_last_changed: formatMailchimpTime(T0),
    });
    assert.equal(recent.body.total_items, 1);
    // Unselected known fields stay out; unknown ones come anyway.
    const narrow = await members(sim, "l1", { fields: "members.merge_fields,total_items" });
    assert.deepEqual(narrow.body.members.at(-1), {
      merge_fields: victim.merge_fields,
      surprise: { nested: [1, 2] },
    });
    const one = await get(sim, `lists/l1/members/${victim.id}?fields=status,email_address`);
    assert.deepEqual(one.body, {
      email_address: null,
      status: "weird",
      surprise: { nested: [1, 2] },
    });
    const reported = sim.truth("l1").at(-1)!;
    assert.equal(reported.status, "subscribed", "truth keeps the true state");
    assert.deepEqual(reported.malformed, overrides);
    assert.ok("id" in reported.malformed!);

    sim.uncorruptMember("l1", "victim@example.com");
    assert.equal(sim.truth("l1").at(-1)!.malformed, undefined);
    assert.deepEqual((await get(sim, `lists/l1/members/${victim.id}`)).body.status, "subscribed");
    sim.corruptMember("l1", "victim@example.com", { status: "weird" });
    sim.upsertMember("l1", { email: "victim@example.com", LNAME: "W" });
    assert.equal((await get(sim, `lists/l1/members/${victim.id}`)).body.status, "subscribed");
    assert.equal(sim.truth("l1").some((m) => m.malformed !== undefined), false);
    assert.throws(() => sim.corruptMember("l1", "nobody@example.com", {}), RangeError);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator serves one member by subscriber hash or email, with fields", async () => {
  const sim = await start();
  sim.addList("l1", { members: 3 });
  try {
    const m = sim.upsertMember("l1", { email: "Ana+x@Example.com", FNAME: "Ana" });
    const whole = await get(sim, `lists/l1/members/${m.id}`);
    assert.equal(whole.status, 200);
    assert.deepEqual(whole.body, { ...m, list_id: "l1", _links: [] });
    const byEmail = await get(sim, `lists/l1/members/${encodeURIComponent("ana+x@example.com")}`);
    assert.deepEqual(byEmail.body, whole.body);
    const upper = await get(sim, `lists/l1/members/${m.id.toUpperCase()}`);
    assert.equal(upper.body.id, m.id);
    const fields = "id,email_address,status,merge_fields.FNAME,last_changed,timestamp_opt";
    const narrow = await get(sim, `lists/l1/members/${m.id}?fields=${fields}`);
    assert.deepEqual(narrow.body, {
      id: m.id,
      email_address: m.email_address,
      status: m.status,
      merge_fields: m.merge_fields,
      timestamp_opt: m.timestamp_opt,
      last_changed: m.last_changed,
    });
    const excluded = await get(sim, `lists/l1/members/${m.id}?exclude_fields=_links,merge_fields`);
    const { merge_fields: _m, ...rest } = m;
    assert.deepEqual(excluded.body, { ...rest, list_id: "l1" });
    const none = await get(sim, `lists/l1/members/${m.id}?fields=nothing`);
    assert.deepEqual(none.body, {});
    sim.deleteMember("l1", m.email_address);
    const gone = await get(sim, `lists/l1/members/${m.id}`);
    assert.equal(gone.status, 404);
    assert.equal(gone.headers.get("content-type"), "application/problem+json; charset=utf-8");
    assert.equal(gone.body.title, "Resource Not Found");
    assert.equal((await get(sim, `lists/nope/members/${m.id}`)).status, 404);
    assert.equal(sim.stats.memberRequests, 8);
    assert.equal(sim.stats.membersRequests, 0);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator serves a cheap ids-only listing in creation and last_changed order", async () => {
  const sim = await start();
  sim.addList("l1", { members: 5500, seed: 2 });
  try {
    const truth = sim.truth("l1");
    for (const sort of [{}, { sort_field: "last_changed" }]) {
      const ids: string[] = [];
      for (let offset = 0; offset < 6000; offset += 1000) {
        const page = await members(sim, "l1", {
          fields: "members.id,total_items",
          count: 1000,
          offset,
          ...sort,
        });
        assert.equal(page.body.total_items, 5500);
        assert.ok(page.body.members.every((m: object) => Object.keys(m).join() === "id"));
        // 42 bytes a member: a million ids cost about 42 MB in 1000 requests.
        assert.ok(page.text.length <= 1000 * 42 + 40, `${page.text.length} bytes`);
        ids.push(...page.body.members.map((m: SimMember) => m.id));
      }
      if ("sort_field" in sort) {
        assert.deepEqual(new Set(ids), new Set(truth.map((m) => m.id)));
        assert.equal(ids.length, 5500);
      } else {
        assert.deepEqual(ids, truth.map((m) => m.id), "default order is creation order");
      }
    }
  } finally {
    await sim.close();
  }
});
