import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type Clock } from "../../lib/clock/clock.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { MEMBER_STATUSES } from "../../lib/mailchimp/member.ts";
import { formatMailchimpTime, parseMailchimpTime } from "../../lib/mailchimp/time.ts";
import {
  MailchimpSimulator,
  type MailchimpSimulatorOptions,
  type SimMember,
} from "../../lib/sim/mailchimp_sim.ts";

const T0 = Date.UTC(2026, 0, 31, 12, 0, 0);
const SYNC_FIELDS = [
  "members.id",
  "members.email_address",
  "members.status",
  "members.merge_fields",
  "members.last_changed",
  "members.timestamp_opt",
  "total_items",
].join(",");

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

function basic(key: string, user = "anystring"): string {
  return `Basic ${btoa(`${user}:${key}`)}`;
}

/** GETs `path` (relative to the simulator's base URL) and reads the whole body. */
async function get(
  sim: MailchimpSimulator,
  path: string,
  authorization: string | null = basic(sim.apiKey),
): Promise<Answer> {
  const headers = authorization === null ? undefined : { authorization };
  const res = await fetch(`${sim.url}/${path}`, headers ? { headers } : {});
  const text = await res.text();
  const isJson = (res.headers.get("content-type") ?? "").includes("json");
  return { status: res.status, headers: res.headers, body: isJson ? JSON.parse(text) : text, text };
}

function members(sim: MailchimpSimulator, listId: string, query: Record<string, string | number>) {
  const q = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
  return get(sim, `lists/${listId}/members?${q}`);
}

function assertProblem(answer: Answer, status: number, title: string): void {
  assert.equal(answer.status, status);
  assert.equal(answer.headers.get("content-type"), "application/problem+json; charset=utf-8");
  const requestId = answer.headers.get("x-request-id");
  assert.ok(requestId);
  assert.deepEqual(Object.keys(answer.body).slice(0, 5), [
    "type",
    "title",
    "status",
    "detail",
    "instance",
  ]);
  assert.equal(answer.body.title, title);
  assert.equal(answer.body.status, status);
  assert.equal(answer.body.instance, requestId);
}

/** Every member of a `last_changed`-sorted listing, paged with offsets of 1000. */
async function allByChange(
  sim: MailchimpSimulator,
  listId: string,
  query: Record<string, string> = {},
): Promise<{ ids: string[]; times: string[]; total: number }> {
  const ids: string[] = [];
  const times: string[] = [];
  let total = 0;
  for (let offset = 0;; offset += 1000) {
    const page = await members(sim, listId, {
      sort_field: "last_changed",
      sort_dir: "ASC",
      count: 1000,
      offset,
      ...query,
    });
    assert.equal(page.status, 200);
    total = page.body.total_items;
    for (const m of page.body.members) {
      ids.push(m.id);
      times.push(m.last_changed);
    }
    if (page.body.members.length < 1000) break;
  }
  return { ids, times, total };
}

async function waitUntil(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !condition(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.ok(condition(), "condition not reached");
}

Deno.test("MailchimpSimulator answers ping with the clock's Date and a request id", async () => {
  const sim = await start();
  try {
    assert.match(sim.url, /^http:\/\/127\.0\.0\.1:\d+\/3\.0$/);
    const answer = await get(sim, "ping");
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.body, { health_status: "Everything's Chimpy!" });
    assert.equal(answer.headers.get("date"), new Date(T0).toUTCString());
    assert.ok(answer.headers.get("x-request-id"));
    assert.equal(sim.stats.requests, 1);
    assert.equal(sim.stats.byPath.get("/3.0/ping"), 1);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator answers 401 for a missing or wrong key and accepts Basic or Bearer", async () => {
  const sim = await start({ apiKey: "abc123-us9" });
  try {
    for (const auth of [null, basic("wrong-us9"), "Bearer wrong-us9", "abc123-us9", "Basic %%%"]) {
      const answer = await get(sim, "ping", auth);
      assertProblem(answer, 401, "API Key Invalid");
      assert.equal(
        answer.body.detail,
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
      );
    }
    assert.equal((await get(sim, "ping", basic("abc123-us9", "someone"))).status, 200);
    assert.equal((await get(sim, "ping", "Bearer abc123-us9")).status, 200);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator answers 404 Resource Not Found for an unknown list or path", async () => {
  const sim = await start();
  sim.addList("known", { members: 3 });
  try {
    for (const path of ["lists/nope", "lists/nope/members", "lists/known/segments", "other"]) {
      const answer = await get(sim, path);
      assertProblem(answer, 404, "Resource Not Found");
      assert.equal(answer.body.detail, "The requested resource could not be found.");
    }
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator serves the list resource with counts by status", async () => {
  const sim = await start();
  sim.addList("l1", { name: "Newsletter", members: 300, seed: 4 });
  try {
    const answer = await get(sim, "lists/l1");
    assert.equal(answer.status, 200);
    const truth = sim.truth("l1");
    const count = (s: string) => truth.filter((m) => m.status === s).length;
    assert.equal(answer.body.id, "l1");
    assert.equal(answer.body.name, "Newsletter");
    assert.equal(answer.body.stats.member_count, count("subscribed"));
    assert.equal(answer.body.stats.unsubscribe_count, count("unsubscribed"));
    assert.equal(answer.body.stats.cleaned_count, count("cleaned"));
    assert.ok(count("subscribed") > 0 && count("cleaned") > 0);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator rejects a count above 1000 or a non-numeric one with 400", async () => {
  const sim = await start();
  sim.addList("l1", { members: 5 });
  try {
    for (const query of [{ count: 1001 }, { count: "ten" }, { offset: -1 }, { status: "x" }]) {
      const answer = await members(sim, "l1", query);
      assertProblem(answer, 400, "Invalid Resource");
      assert.equal(answer.body.errors.length, 1);
    }
    assert.equal((await members(sim, "l1", { count: 1000 })).status, 200);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator pages with count and offset in insertion order by default", async () => {
  const sim = await start();
  sim.addList("l1", { members: 25, seed: 2 });
  try {
    const first = await members(sim, "l1", {});
    assert.equal(first.body.members.length, 10);
    assert.equal(first.body.total_items, 25);
    assert.equal(first.body.list_id, "l1");
    assert.deepEqual(first.body._links, []);
    const ids: string[] = [];
    for (let offset = 0; offset < 30; offset += 7) {
      const page = await members(sim, "l1", { count: 7, offset });
      assert.equal(page.body.total_items, 25);
      ids.push(...page.body.members.map((m: SimMember) => m.id));
    }
    assert.deepEqual(ids, sim.truth("l1").map((m) => m.id));
    assert.deepEqual((await members(sim, "l1", { offset: 25 })).body.members, []);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator applies fields and exclude_fields in dot notation", async () => {
  const sim = await start();
  sim.addList("l1", { members: 5 });
  try {
    const truth = sim.truth("l1");
    const narrow = await members(sim, "l1", { fields: "members.id,members.merge_fields.FNAME" });
    assert.deepEqual(
      narrow.body,
      { members: truth.slice(0, 5).map((m) => ({ id: m.id, merge_fields: m.merge_fields })) },
    );
    const withTotal = await members(sim, "l1", { fields: "members.status,total_items" });
    assert.deepEqual(Object.keys(withTotal.body), ["members", "total_items"]);
    assert.deepEqual(withTotal.body.members[0], { status: truth[0]!.status });
    assert.equal(withTotal.body.total_items, 5);
    const whole = await members(sim, "l1", { fields: "members" });
    assert.deepEqual(whole.body, { members: truth });
    const excluded = await members(sim, "l1", {
      exclude_fields: "members.merge_fields,members.contact_id,_links",
    });
    assert.deepEqual(Object.keys(excluded.body), ["members", "list_id", "total_items"]);
    const { merge_fields: _m, contact_id: _c, ...rest } = truth[0]!;
    assert.deepEqual(excluded.body.members[0], rest);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator filters by status and can hide archived members by default", async () => {
  const sim = await start();
  sim.addList("l1", { members: 400, seed: 9 });
  try {
    const truth = sim.truth("l1");
    for (const status of MEMBER_STATUSES) {
      const page = await members(sim, "l1", { status, count: 1000 });
      const want = truth.filter((m) => m.status === status).map((m) => m.id);
      assert.ok(want.length > 0, status);
      assert.equal(page.body.total_items, want.length);
      assert.deepEqual(page.body.members.map((m: SimMember) => m.id), want);
    }
    assert.equal((await members(sim, "l1", {})).body.total_items, 400);
    sim.setOptions({ archivedInDefaultListing: false });
    const shown = await members(sim, "l1", { count: 1000 });
    const notArchived = truth.filter((m) => m.status !== "archived");
    assert.equal(shown.body.total_items, notArchived.length);
    assert.deepEqual(shown.body.members.map((m: SimMember) => m.id), notArchived.map((m) => m.id));
    const sorted = await allByChange(sim, "l1");
    assert.equal(sorted.total, notArchived.length);
    assert.deepEqual(new Set(sorted.ids), new Set(notArchived.map((m) => m.id)));
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator filters since/before ignoring the UTC offset, in both edge modes", async () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 31, 9, 0, 0));
  const sim = await start({ clock });
  sim.addList("l1");
  try {
    const at = (hms: string, email: string) => {
      clock.set(Date.parse(`2026-01-31T${hms}Z`));
      return sim.upsertMember("l1", { email }).id;
    };
    at("09:59:59", "early@example.com");
    const a = at("10:00:00", "a@example.com");
    const b = at("10:00:00", "b@example.com");
    const c = at("10:00:01", "c@example.com");
    const d = at("11:00:00", "d@example.com");
    const late = at("11:00:01", "late@example.com");
    const window = async (since: string, before: string) => {
      const page = await members(sim, "l1", {
        sort_field: "last_changed",
        sort_dir: "ASC",
        since_last_changed: since,
        before_last_changed: before,
      });
      return page.body.members.map((m: SimMember) => m.id);
    };
    // Defaults: since inclusive, before exclusive; +05:00 and -03:00 are ignored.
    assert.deepEqual(await window("2026-01-31T10:00:00+05:00", "2026-01-31T11:00:00-03:00"), [
      a,
      b,
      c,
    ]);
    assert.deepEqual(await window("2026-01-31T10:00:00Z", "2026-01-31 11:00:00 00:00"), [a, b, c]);
    sim.setOptions({ sinceInclusive: false, beforeInclusive: true });
    assert.deepEqual(await window("2026-01-31T10:00:00+00:00", "2026-01-31T11:00:00+00:00"), [
      c,
      d,
    ]);
    const both = await members(sim, "l1", { since_last_changed: "2026-01-31T10:00:00+00:00" });
    assert.equal(both.body.total_items, 3, "the default order honours the window too");
    assert.deepEqual(new Set(both.body.members.map((m: SimMember) => m.id)), new Set([c, d, late]));
    const bad = await members(sim, "l1", { since_last_changed: "yesterday" });
    assertProblem(bad, 400, "Invalid Resource");
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator returns every member when since has fractional seconds", async () => {
  const sim = await start();
  sim.addList("l1", { members: 50, lastChangedFrom: T0 - 3_600_000, lastChangedTo: T0 });
  try {
    const exact = await members(sim, "l1", {
      sort_field: "last_changed",
      since_last_changed: formatMailchimpTime(T0 - 60_000),
    });
    assert.ok(exact.body.total_items < 50);
    for (const since of ["2026-01-31T11:59:00.1234567+00:00", "2026-01-31T11:59:00.5Z"]) {
      const page = await members(sim, "l1", {
        sort_field: "last_changed",
        since_last_changed: since,
      });
      assert.equal(page.body.total_items, 50);
    }
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator sorts by last_changed or timestamp_opt, ascending or descending", async () => {
  const sim = await start();
  sim.addList("l1", {
    members: 300,
    seed: 5,
    tieGroups: [{ at: T0 - 86_400_000, size: 20 }],
  });
  try {
    const asc = await members(sim, "l1", { sort_field: "last_changed", count: 1000 });
    const desc = await members(sim, "l1", {
      sort_field: "last_changed",
      sort_dir: "DESC",
      count: 1000,
    });
    const times = asc.body.members.map((m: SimMember) => Date.parse(m.last_changed));
    assert.equal(times.length, 320);
    assert.ok(times.every((t: number, i: number) => i === 0 || times[i - 1] <= t));
    assert.deepEqual(desc.body.members, [...asc.body.members].reverse());
    const lowest = await members(sim, "l1", { sort_field: "last_changed", count: 5, offset: 0 });
    assert.deepEqual(lowest.body.members, asc.body.members.slice(0, 5));
    const newest = await members(sim, "l1", {
      sort_field: "last_changed",
      sort_dir: "DESC",
      count: 5,
      offset: 3,
    });
    assert.deepEqual(newest.body.members, desc.body.members.slice(3, 8));
    const opt = await members(sim, "l1", { sort_field: "timestamp_opt", count: 1000 });
    const opts = opt.body.members.map((m: SimMember) => parseMailchimpTime(m.timestamp_opt) ?? -1);
    assert.ok(opts.every((t: number, i: number) => i === 0 || opts[i - 1] <= t));
    assert.equal(opt.body.total_items, 320);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator keeps a tie group larger than a page in one stable order by default", async () => {
  const at = T0 - 86_400_000;
  const sim = await start();
  sim.addList("l1", { members: 100, tieGroups: [{ at, size: 2500 }] });
  try {
    const tie = { since_last_changed: formatMailchimpTime(at) };
    const first = await allByChange(sim, "l1", tie);
    const second = await allByChange(sim, "l1", tie);
    assert.equal(first.ids.length >= 2500, true);
    assert.equal(new Set(first.ids).size, first.ids.length);
    assert.deepEqual(second.ids, first.ids);
    const group = first.ids.slice(0, 2500);
    assert.ok(first.times.slice(0, 2500).every((t) => t === formatMailchimpTime(at)));
    assert.equal(new Set(group).size, 2500);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator shuffles tie groups per request with tieOrder random", async () => {
  const at = T0 - 86_400_000;
  const sim = await start({ tieOrder: "random", tieSeed: 3 });
  sim.addList("l1", {
    members: 100,
    tieGroups: [{ at, size: 2500 }, { at: at - 60_000, size: 700 }],
  });
  try {
    const window = {
      sort_field: "last_changed",
      since_last_changed: formatMailchimpTime(at),
      before_last_changed: formatMailchimpTime(at + 1000),
      count: 1000,
    };
    const ids: string[] = [];
    for (const offset of [0, 1000, 2000]) {
      const page = await members(sim, "l1", { ...window, offset });
      assert.equal(page.body.total_items, 2500);
      assert.ok(
        page.body.members.every((m: SimMember) => m.last_changed === formatMailchimpTime(at)),
      );
      assert.equal(
        new Set(page.body.members.map((m: SimMember) => m.id)).size,
        page.body.members.length,
      );
      ids.push(...page.body.members.map((m: SimMember) => m.id));
    }
    assert.equal(ids.length, 2500);
    assert.ok(new Set(ids).size < 2500, "offset paging through shuffled ties misses members");
    const again = await members(sim, "l1", { ...window, offset: 0 });
    assert.notDeepEqual(again.body.members.map((m: SimMember) => m.id), ids.slice(0, 1000));
    // A group that fits in one page comes complete, whatever the direction.
    const small = { at: at - 60_000, ids: sim.truth("l1").slice(100 + 2500).map((m) => m.id) };
    for (const sort_dir of ["ASC", "DESC"]) {
      const page = await members(sim, "l1", {
        sort_field: "last_changed",
        sort_dir,
        since_last_changed: formatMailchimpTime(small.at),
        before_last_changed: formatMailchimpTime(small.at + 1000),
        count: 1000,
      });
      const got = page.body.members.map((m: SimMember) => m.id);
      assert.equal(got.length, 700);
      assert.deepEqual(new Set(got), new Set(small.ids));
      assert.notDeepEqual(got, sort_dir === "ASC" ? small.ids : [...small.ids].reverse());
    }
    // Members outside tie groups keep their order.
    const rest = await members(sim, "l1", { sort_field: "last_changed", count: 1000 });
    const times = rest.body.members.map((m: SimMember) => m.last_changed);
    assert.deepEqual(times, [...times].sort());
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator answers 429 beyond maxConnections and tracks maxInFlight", async () => {
  const clock = new FakeClock(T0);
  const sim = await start({ clock, latencyMs: 1000 });
  try {
    const pending = Array.from({ length: 11 }, () => get(sim, "ping"));
    await waitUntil(() => sim.stats.requests === 11 && clock.pendingTimers === 10);
    assert.equal(sim.stats.inFlight, 10);
    await clock.tick(1000);
    const answers = await Promise.all(pending);
    const statuses = answers.map((a) => a.status).sort();
    assert.deepEqual(statuses, [...Array(10).fill(200), 429]);
    assertProblem(answers.find((a) => a.status === 429)!, 429, "Too Many Requests");
    assert.equal(sim.stats.maxInFlight, 11);
    assert.equal(sim.stats.status429, 1);
    assert.equal(sim.stats.inFlight, 0);

    sim.resetStats();
    sim.setOptions({ maxConnections: 3 });
    const three = Array.from({ length: 3 }, () => get(sim, "ping"));
    await waitUntil(() => clock.pendingTimers === 3);
    await clock.tick(1000);
    assert.deepEqual((await Promise.all(three)).map((a) => a.status), [200, 200, 200]);
    assert.equal(sim.stats.maxInFlight, 3);
    assert.equal(sim.stats.status429, 0);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator plays queued faults: problems, bare 403, slow and dropped answers", async () => {
  const clock = new FakeClock(T0);
  const sim = await start({ clock, faults: { retryAfterSeconds: 7, slowMs: 5000 } });
  sim.addList("l1", { members: 5 });
  try {
    sim.faults.queue(429, 503, 500);
    const tooMany = await get(sim, "ping");
    assertProblem(tooMany, 429, "Too Many Requests");
    assert.equal(tooMany.headers.get("retry-after"), "7");
    const unavailable = await get(sim, "ping");
    assertProblem(unavailable, 503, "Service Unavailable");
    assert.equal(unavailable.headers.get("retry-after"), "7");
    const failed = await get(sim, "ping");
    assertProblem(failed, 500, "Internal Server Error");
    assert.equal(failed.headers.get("retry-after"), null);

    sim.faults.queue(403);
    const bare = await get(sim, "lists/l1/members");
    assert.equal(bare.status, 403);
    assert.equal(bare.text, "");
    assert.ok(!(bare.headers.get("content-type") ?? "").includes("problem"));

    let hookCalls = 0;
    const dropping = await start({ clock, onMembersRequest: () => void hookCalls++ });
    dropping.addList("l1", { members: 5 });
    try {
      dropping.faults.queue("drop");
      const res = await fetch(`${dropping.url}/lists/l1/members`, {
        headers: { authorization: basic(dropping.apiKey) },
      });
      assert.equal(res.status, 200);
      await assert.rejects(res.text());
      assert.equal(hookCalls, 1, "the work was done before the answer was dropped");
    } finally {
      await dropping.close();
    }

    sim.faults.queue("slow");
    const slow = get(sim, "ping");
    await waitUntil(() => clock.pendingTimers === 1);
    await clock.tick(5000);
    assert.equal((await slow).status, 200);
    assert.equal(sim.faults.injected.get("slow"), 1);
    assert.equal(sim.stats.status429, 1);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator calls onMembersRequest before each page so tests change members mid-run", async () => {
  const seen: { listId: string; offset: string | null; index: number }[] = [];
  const sim: MailchimpSimulator = await start({
    onMembersRequest: (listId, query, index) => {
      seen.push({ listId, offset: query.get("offset"), index });
      if (index === 1) {
        sim.deleteMember("l1", sim.truth("l1")[0]!.email_address);
        sim.upsertMember("l1", { email: "new@example.com", FNAME: "Né" });
      }
    },
  });
  sim.addList("l1", { members: 10 });
  try {
    const before = await members(sim, "l1", { count: 5, offset: 0 });
    const during = await members(sim, "l1", { count: 5, offset: 5 });
    assert.equal(before.body.total_items, 10);
    assert.equal(during.body.total_items, 10);
    assert.equal(during.body.members.at(-1).email_address, "new@example.com");
    assert.equal(during.body.members.at(-1).merge_fields.FNAME, "Né");
    assert.deepEqual(seen, [
      { listId: "l1", offset: "0", index: 0 },
      { listId: "l1", offset: "5", index: 1 },
    ]);
    assert.equal(sim.stats.membersRequests, 2);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator generates the same varied members from the same seed", async () => {
  const from = T0 - 10 * 86_400_000;
  const sim = await start();
  sim.addList("a", { members: 600, seed: 11, lastChangedFrom: from, lastChangedTo: T0 });
  sim.addList("b", { members: 600, seed: 11, lastChangedFrom: from, lastChangedTo: T0 });
  sim.addList("c", { members: 600, seed: 12, lastChangedFrom: from, lastChangedTo: T0 });
  try {
    const truth = sim.truth("a");
    assert.deepEqual(sim.truth("b"), truth);
    assert.notDeepEqual(sim.truth("c"), truth);
    assert.equal(new Set(truth.map((m) => m.id)).size, 600);
    for (const m of truth) {
      assert.equal(m.id, createHash("md5").update(m.email_address.toLowerCase()).digest("hex"));
      const changed = parseMailchimpTime(m.last_changed)!;
      assert.ok(changed >= from && changed <= T0);
      assert.equal(formatMailchimpTime(changed), m.last_changed);
      if (m.status === "subscribed") assert.notEqual(m.timestamp_opt, "");
      if (m.timestamp_opt !== "") {
        assert.equal(formatMailchimpTime(Date.parse(m.timestamp_opt)), m.timestamp_opt);
      }
    }
    assert.deepEqual(new Set(truth.map((m) => m.status)), new Set(MEMBER_STATUSES));
    const names = truth.flatMap((m) => [m.merge_fields.FNAME, m.merge_fields.LNAME]);
    assert.ok(names.includes(""));
    assert.ok(names.some((n) => /[^\p{ASCII}]/u.test(n)));
    assert.ok(names.some((n) => /\p{Extended_Pictographic}/u.test(n)));
    assert.ok(names.some((n) => n.includes('"') || n.includes("\\")));
    assert.ok(truth.some((m) => m.email_address.includes("+")));
    assert.ok(truth.some((m) => m.email_address !== m.email_address.toLowerCase()));
    assert.ok(truth.some((m) => m.timestamp_opt === "" && m.status !== "subscribed"));
    // What the server writes is exactly the truth (hand-built JSON escapes correctly).
    const served = await members(sim, "a", { count: 1000 });
    assert.deepEqual(served.body.members, truth);
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator reflects upserts, changes and deletions in truth and listings", async () => {
  const clock = new FakeClock(T0);
  const sim = await start({ clock });
  sim.addList("l1", { members: 50, seed: 3 });
  try {
    await clock.tick(60_000);
    const now = formatMailchimpTime(clock.now());
    const created = sim.upsertMember("l1", { email: "Zoë.Test+x@Example.com", LNAME: "Weiß" });
    assert.equal(created.last_changed, now);
    assert.equal(created.status, "subscribed");
    assert.equal(created.timestamp_opt, now);
    assert.deepEqual(created.merge_fields, { FNAME: "", LNAME: "Weiß" });
    const updated = sim.upsertMember("l1", { email: "zoë.test+x@example.com", status: "pending" });
    assert.equal(updated.id, created.id);
    assert.equal(updated.status, "pending");
    assert.equal(updated.merge_fields.LNAME, "Weiß");
    assert.equal(sim.truth("l1").length, 51);

    const changed = sim.changeMembers("l1", 5, 42);
    assert.equal(new Set(changed.map((m) => m.id)).size, 5);
    assert.ok(changed.every((m) => m.last_changed === now));
    const recent = await members(sim, "l1", {
      sort_field: "last_changed",
      since_last_changed: now,
      count: 1000,
    });
    assert.deepEqual(
      new Set(recent.body.members.map((m: SimMember) => m.id)),
      new Set([created.id, ...changed.map((m) => m.id)]),
    );
    const truthById = new Map(sim.truth("l1").map((m) => [m.id, m]));
    for (const m of changed) assert.deepEqual(truthById.get(m.id), m);

    sim.deleteMember("l1", "ZOË.TEST+X@EXAMPLE.COM");
    sim.deleteMember("l1", "never@example.com");
    assert.equal(sim.truth("l1").length, 50);
    assert.ok(!sim.truth("l1").some((m) => m.id === created.id));
    const after = await members(sim, "l1", { sort_field: "last_changed", since_last_changed: now });
    assert.equal(after.body.total_items, 5 - changed.filter((m) => m.id === created.id).length);
    assert.equal((await members(sim, "l1", {})).body.total_items, 50);
    assert.throws(() => sim.upsertMember("nope", { email: "a@b.c" }), RangeError);
    assert.throws(() => sim.addList("l1"), RangeError);
  } finally {
    await sim.close();
  }
});

/** A clock a test can move backwards (FakeClock never goes back). */
class SettableClock implements Clock {
  constructor(public ms: number) {}
  now(): number {
    return this.ms;
  }
  sleep(): Promise<void> {
    return Promise.resolve();
  }
}

Deno.test("MailchimpSimulator stays consistent across many changes, deletions and a clock going back", async () => {
  const clock = new SettableClock(T0);
  const sim = await start({ clock });
  sim.addList("l1", { members: 300, seed: 8, tieGroups: [{ at: T0 - 5000, size: 40 }] });
  try {
    for (let round = 0; round < 8; round++) {
      clock.ms += round % 3 === 2 ? -7_200_000 : 1000; // every third round goes back 2 hours
      sim.changeMembers("l1", 250);
      const truth = sim.truth("l1");
      sim.deleteMember("l1", truth[round * 7]!.email_address);
      sim.upsertMember("l1", { email: `round${round}@example.com`, status: "archived" });
      const want = sim.truth("l1");
      const listed = await allByChange(sim, "l1");
      assert.equal(listed.total, want.length);
      assert.deepEqual(new Set(listed.ids), new Set(want.map((m) => m.id)));
      assert.equal(listed.ids.length, want.length);
      const times = listed.times.map((t) => Date.parse(t));
      assert.ok(times.every((t, i) => i === 0 || times[i - 1]! <= t), "sorted by last_changed");
      const since = T0 - 3_600_000;
      const windowed = await allByChange(sim, "l1", {
        since_last_changed: formatMailchimpTime(since),
        before_last_changed: formatMailchimpTime(T0),
        status: "archived",
      });
      const expected = want.filter((m) => {
        const t = Date.parse(m.last_changed);
        return m.status === "archived" && t >= since && t < T0;
      });
      assert.deepEqual(new Set(windowed.ids), new Set(expected.map((m) => m.id)));
      assert.equal(windowed.total, expected.length);
      const byDefault = await members(sim, "l1", { count: 1000 });
      assert.deepEqual(byDefault.body.members, want);
    }
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator answers 503 to requests still waiting when it closes", async () => {
  const clock = new FakeClock(T0);
  const sim = await start({ clock, latencyMs: 60_000 });
  const waiting = get(sim, "ping");
  await waitUntil(() => clock.pendingTimers === 1);
  await sim.close();
  assertProblem(await waiting, 503, "Service Unavailable");
});

Deno.test("MailchimpSimulator serves a page of a 200,000-member list", async () => {
  const sim = await start();
  sim.addList("big", { members: 200_000, seed: 1 });
  try {
    const page = await members(sim, "big", {
      sort_field: "last_changed",
      sort_dir: "ASC",
      since_last_changed: formatMailchimpTime(T0 - 20 * 86_400_000),
      before_last_changed: formatMailchimpTime(T0),
      count: 1000,
      offset: 3000,
      fields: SYNC_FIELDS,
    });
    assert.equal(page.status, 200);
    assert.equal(page.body.members.length, 1000);
    assert.ok(page.body.total_items > 100_000 && page.body.total_items < 200_000);
    const times = page.body.members.map((m: SimMember) => m.last_changed);
    assert.deepEqual(times, [...times].sort());
  } finally {
    await sim.close();
  }
});

Deno.test("MailchimpSimulator addList() with bulkImports puts that share of members in tie groups and counts members served", async () => {
  const sim = await MailchimpSimulator.start();
  try {
    const to = Date.UTC(2026, 0, 2);
    sim.addList("bulk", {
      members: 6000,
      lastChangedFrom: Date.UTC(2026, 0, 1),
      lastChangedTo: to,
      bulkImports: { share: 0.5, size: 1500 },
    });
    const truth = sim.truth("bulk");
    assert.equal(truth.length, 6000);
    const bySecond = Map.groupBy(truth, (m) => m.last_changed);
    const groups = [...bySecond.values()].filter((g) => g.length === 1500);
    assert.equal(groups.length, 2);
    const headers = { Authorization: `Bearer ${sim.apiKey}` };
    const full = await fetch(`${sim.url}/lists/bulk/members?count=100`, { headers });
    await full.body?.cancel();
    const ids = await fetch(
      `${sim.url}/lists/bulk/members?count=50&fields=members.id,members.last_changed`,
      { headers },
    );
    await ids.body?.cancel();
    assert.equal(sim.stats.membersServed, 100);
    assert.equal(sim.stats.idsServed, 50);
  } finally {
    await sim.close();
  }
});
