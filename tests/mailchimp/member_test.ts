import assert from "node:assert/strict";
import { memberSchema, membersPageSchema, parseMember } from "../../lib/mailchimp/member.ts";
import { generateMembers } from "../../lib/sim/member_data.ts";
import { seededRandom } from "../../lib/sim/random.ts";

/** A member as Mailchimp serves it, with every field a mapping may ask for. */
function served(i: number): Record<string, unknown> {
  return {
    id: i.toString(16).padStart(32, "0"),
    email_address: `m${i}@example.com`,
    status: ["subscribed", "unsubscribed", "archived"][i % 3],
    merge_fields: { FNAME: "Ada", LNAME: "Lovelace", PHONE: "+44 20", ADDRESS: { addr1: "x" } },
    last_changed: "2026-10-31T16:26:16+00:00",
    timestamp_opt: i % 2 ? "2026-01-02T03:04:05+00:00" : "",
    timestamp_signup: "",
    language: "en",
    vip: false,
    member_rating: 3,
    location: { latitude: 0, longitude: 0, country_code: "GB", timezone: "" },
    tags: [{ id: 7, name: "news" }],
    tags_count: 1,
    interests: { abc123: true, def456: false },
    stats: { avg_open_rate: 0.5 },
    _links: [],
  };
}

/** `raw` reduced to the fields memberSchema knows, `location` and `tags` to what it keeps. */
function exactly(raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(memberSchema.shape)) {
    if (Object.hasOwn(raw, key)) out[key] = raw[key];
  }
  const { location, tags } = out;
  if (typeof location === "object" && location !== null && !Array.isArray(location)) {
    const code = (location as Record<string, unknown>).country_code;
    out.location = code === undefined ? {} : { country_code: code };
  }
  if (Array.isArray(tags)) {
    out.tags = tags.map((t) =>
      typeof t === "object" && t !== null && !Array.isArray(t)
        ? { name: (t as { name?: unknown }).name }
        : t
    );
  }
  return out;
}

const ODD_VALUES: unknown[] = [
  undefined,
  null,
  "",
  "x",
  "2026-10-31T16:26:16+00:00",
  "0123456789abcdef0123456789abcdef",
  "a@b",
  0,
  -1,
  1.5,
  Number.MAX_VALUE,
  true,
  false,
  [],
  [{ name: "a" }],
  [{ name: 1 }],
  ["a"],
  {},
  { country_code: null },
  { country_code: 5 },
  { a: true },
  { a: "yes" },
  { FNAME: 42 },
  JSON.parse('{"__proto__": {"x": 1}}'),
  Object.create(null),
  new Date(0),
];

Deno.test("parseMember() answers exactly as memberSchema does, for well-formed and malformed members", () => {
  const random = seededRandom(11);
  const pick = <T>(values: readonly T[]) => values[Math.floor(random() * values.length)]!;
  const raws: unknown[] = [null, 7, "member", [], ...ODD_VALUES];
  const generated = generateMembers({ count: 300, seed: 3, fromMs: 0, toMs: 1e12 });
  for (const m of generated) raws.push(JSON.parse(JSON.stringify(m)));
  for (let i = 0; i < 3_000; i++) {
    const raw = served(i);
    // One to three fields replaced by something odd (or removed), at the top or one level down.
    for (let n = 1 + Math.floor(random() * 3); n > 0; n--) {
      const key = pick(Object.keys(raw));
      const value = raw[key];
      if (random() < 0.3 && typeof value === "object" && value !== null && !Array.isArray(value)) {
        const inner = { ...value } as Record<string, unknown>;
        const innerKey = pick([...Object.keys(inner), "country_code", "name"]);
        if (random() < 0.2) delete inner[innerKey];
        else inner[innerKey] = pick(ODD_VALUES);
        raw[key] = inner;
      } else if (random() < 0.2 && Array.isArray(value)) {
        raw[key] = [...value, pick(ODD_VALUES)];
      } else if (random() < 0.2) {
        delete raw[key];
      } else {
        raw[key] = pick(ODD_VALUES);
      }
    }
    raws.push(i % 10 === 0 ? served(i) : raw);
    // The same with only the fields the schema knows (what a `fields=` answer serves), which
    // parseMember takes as it is: its answer must still be zod's.
    if (i % 2 === 0) raws.push(exactly(i % 20 === 0 ? served(i) : raw));
  }
  let accepted = 0;
  for (const raw of raws) {
    const zod = memberSchema.safeParse(raw);
    const ours = parseMember(raw);
    if (zod.success) {
      accepted++;
      assert.ok("member" in ours, `zod accepts ${JSON.stringify(raw)}`);
      assert.deepStrictEqual({ ...ours.member }, { ...zod.data }, JSON.stringify(raw));
    } else {
      assert.ok("invalid" in ours, `zod rejects ${JSON.stringify(raw)}`);
    }
  }
  // Both sides of the question were asked many times.
  assert.ok(accepted > 500 && accepted < raws.length - 500, `${accepted} of ${raws.length}`);
});

Deno.test("parseMember() takes a member served with only the fields asked for as it is, not a copy", () => {
  // What `GET /lists/{id}/members?fields=…` serves: nothing but the fields asked for. Copying
  // it was garbage made for every member read (docs: README, "What holds memory").
  const raw: Record<string, unknown> = exactly(served(1));
  raw.timestamp_opt = null;
  delete raw.merge_fields;
  const parsed = parseMember(raw);
  assert.ok("member" in parsed);
  assert.equal(parsed.member, raw);
  // Completed as zod completes it: a null timestamp_opt is "", merge_fields defaults to {}.
  assert.equal(parsed.member.timestamp_opt, "");
  assert.deepStrictEqual(parsed.member.merge_fields, {});
  // One whose location (or tags) come with more than was asked for: only those are reduced.
  const located: Record<string, unknown> = { ...exactly(served(3)), location: { latitude: 0 } };
  const taken = parseMember(located);
  assert.ok("member" in taken);
  assert.equal(taken.member, located);
  assert.deepStrictEqual(taken.member.location, {});
  // A member with fields the sync does not use is still reduced to what it uses.
  const more = served(2);
  const reduced = parseMember(more);
  assert.ok("member" in reduced);
  assert.notEqual(reduced.member, more);
  assert.equal("stats" in reduced.member, false);
  assert.deepStrictEqual(reduced.member.location, { country_code: "GB" });
  assert.deepStrictEqual(reduced.member.tags, [{ name: "news" }]);
});

Deno.test("membersPageSchema hands the page's members on as they are and rejects a page without an array", () => {
  const page = { members: [exactly(served(1)), { odd: true }], total_items: 2 };
  const parsed = membersPageSchema.parse(page);
  assert.equal(parsed.members, page.members);
  assert.equal(parsed.total_items, 2);
  for (const members of [undefined, {}, "x", null]) {
    const result = membersPageSchema.safeParse({ members, total_items: 2 });
    assert.equal(result.success, false);
    assert.deepStrictEqual(result.error?.issues.map((i) => i.path), [["members"]]);
  }
  assert.equal(membersPageSchema.safeParse({ members: [], total_items: -1 }).success, false);
});

Deno.test("parseMember() answers as memberSchema does for ids a hand-written check could misread", () => {
  const hex = "0123456789abcdef0123456789abcdef";
  const ids: unknown[] = [
    hex,
    hex.toUpperCase(),
    hex.slice(1),
    `${hex}0`,
    `${hex}\n`,
    `\n${hex.slice(1)}`,
    `${hex.slice(0, 31)}g`,
    `${hex.slice(0, 31)}/`,
    `${hex.slice(0, 31)}:`,
    `${hex.slice(0, 31)}\``,
    `${hex.slice(0, 31)}０`,
    `${hex.slice(0, 31)}\u0130`,
    "f".repeat(32),
    "0".repeat(32),
    "",
  ];
  for (const id of ids) {
    const raw = { ...exactly(served(1)), id };
    const zod = memberSchema.safeParse(structuredClone(raw));
    const ours = parseMember(raw);
    assert.equal("member" in ours, zod.success, JSON.stringify(id));
  }
});

Deno.test("parseMember() reduces a location or tags served with more than asked, as memberSchema does", () => {
  // Only the top level is what `fields=` asked for: `location` comes with latitude and the
  // like, tags with their ids. The member is still zod's, field for field.
  const locations: unknown[] = [
    { latitude: 0, longitude: 0, country_code: "GB", timezone: "" },
    { latitude: 0 },
    { country_code: null, gmtoff: 0 },
    { country_code: "GB" },
    {},
    null,
    undefined,
  ];
  const tagLists: unknown[] = [[{ id: 7, name: "news" }, { name: "vip" }], [{ name: "a" }], []];
  for (const location of locations) {
    for (const tags of tagLists) {
      const raw: Record<string, unknown> = { ...exactly(served(1)), location, tags };
      if (location === undefined) delete raw.location;
      const zod = memberSchema.safeParse(structuredClone(raw));
      const ours = parseMember(raw);
      assert.ok(zod.success && "member" in ours, JSON.stringify(raw));
      assert.deepStrictEqual({ ...ours.member }, { ...zod.data }, JSON.stringify(raw));
    }
  }
});
