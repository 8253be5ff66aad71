/**
 * `storedRecord` hands back the stored record itself when a push changes nothing of it (a
 * sync pushes the same records run after run): it must still give, for every record and
 * policy, exactly what merging into a copy gives — the same fields, in the same order, with
 * the same values — and never the stored record when anything differs.
 */
import assert from "node:assert/strict";
import {
  DEFAULT_RECORD_POLICY,
  type RecordPolicy,
  storedRecord,
} from "../../lib/sim/ometria_records.ts";
import { seededRandom } from "../../lib/sim/random.ts";

/** The merge as the module documents it, written plainly: a copy, then each field applied. */
function reference(
  previous: Record<string, unknown> | undefined,
  record: Record<string, unknown>,
  policy: RecordPolicy,
): Record<string, unknown> {
  const { "@merge": merge, ...fields } = record;
  const merging = merge === true || policy.omittedFields === "merge";
  const base: Record<string, unknown> = merging && previous ? { ...previous } : {};
  const assign = (into: Record<string, unknown>, field: string, value: unknown) => {
    if (value === null) {
      if (policy.nullFields === "clear") delete into[field];
    } else if (!(value === "" && policy.emptyStringFields === "keep" && field in into)) {
      into[field] = value;
    }
  };
  for (const [field, value] of Object.entries(fields)) {
    if (field === "properties" && typeof value === "object" && value && !Array.isArray(value)) {
      const old = base.properties;
      const keep = typeof old === "object" && old && !Array.isArray(old) && merging &&
        policy.properties === "merge";
      const out: Record<string, unknown> = { ...(keep ? old as Record<string, unknown> : {}) };
      for (const [k, v] of Object.entries(value)) assign(out, k, v);
      base.properties = out;
    } else {
      assign(base, field, value);
    }
  }
  return base;
}

/** Fields, values and order, `-0` apart from `0`. */
function shape(value: unknown): unknown {
  if (Object.is(value, -0)) return "-0";
  if (Array.isArray(value)) return value.map(shape);
  if (typeof value === "object" && value !== null) {
    return Object.entries(value).map(([k, v]) => [k, shape(v)]);
  }
  return value;
}

const POLICIES: RecordPolicy[] = [
  DEFAULT_RECORD_POLICY,
  { omittedFields: "replace", nullFields: "keep", emptyStringFields: "keep", properties: "merge" },
  { omittedFields: "merge", nullFields: "keep", emptyStringFields: "keep", properties: "merge" },
  { omittedFields: "merge", nullFields: "clear", emptyStringFields: "store", properties: "merge" },
];

function randomRecord(random: () => number): Record<string, unknown> {
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;
  const values = [null, "", "a", "b", 0, -0, 1, true, [], ["x"], ["y"], { k: 1 }, { k: null }];
  const record: Record<string, unknown> = { "@type": "contact", "@collection": "c", id: "1" };
  for (const field of ["email", "firstname", "lastname", "country_id", "gender"]) {
    if (random() < 0.7) record[field] = pick(values);
  }
  if (random() < 0.2) record["@merge"] = random() < 0.5;
  if (random() < 0.8) {
    const properties: Record<string, unknown> = {};
    for (const key of ["language", "vip", "tags"]) {
      if (random() < 0.7) properties[key] = pick(values);
    }
    record.properties = random() < 0.9 ? properties : pick(values);
  }
  return record;
}

Deno.test("storedRecord merges as a copy would, and gives the stored record back only when nothing changes", () => {
  const random = seededRandom(19);
  let unchanged = 0;
  for (const policy of POLICIES) {
    for (let i = 0; i < 4000; i++) {
      const first = randomRecord(random);
      const previous = storedRecord(undefined, first, policy);
      assert.deepEqual(shape(previous), shape(reference(undefined, first, policy)));
      // Half the time the same record again (the common case), else another one.
      const record = random() < 0.5 ? structuredClone(first) : randomRecord(random);
      const next = storedRecord(previous, record, policy);
      const expected = reference(previous, record, policy);
      assert.deepEqual(shape(next), shape(expected), JSON.stringify({ previous, record, policy }));
      if (next === previous) {
        unchanged++;
        assert.deepEqual(shape(expected), shape(previous));
      }
    }
  }
  assert.ok(unchanged > 1000, `the stored record came back ${unchanged} times`);
});

Deno.test("storedRecord tells a changed value from an equal one however deep, -0 from 0", () => {
  const policy = DEFAULT_RECORD_POLICY;
  const previous = storedRecord(undefined, {
    "@type": "contact",
    id: "1",
    firstname: "A",
    n: 0,
    properties: { tags: ["x"], nested: { a: [1, { b: 2 }] } },
  }, policy);
  const same = { "@type": "contact", id: "1", properties: { nested: { a: [1, { b: 2 }] } } };
  assert.equal(
    storedRecord(previous, { ...same, properties: previous.properties }, policy),
    previous,
  );
  for (
    const record of [
      { "@type": "contact", id: "1", n: -0 },
      { "@type": "contact", id: "1", firstname: null },
      { "@type": "contact", id: "1", lastname: "B" },
      { "@type": "contact", id: "1", properties: { tags: ["x"], nested: { a: [1, { b: 3 }] } } },
      { "@type": "contact", id: "1", properties: { nested: { a: [1, { b: 2 }] }, tags: ["x"] } },
      { "@type": "contact", id: "1", ["__proto__"]: { x: 1 } },
    ]
  ) {
    const parsed = structuredClone(record) as Record<string, unknown>;
    const next = storedRecord(previous, parsed, policy);
    assert.notEqual(next, previous, JSON.stringify(record));
    assert.deepEqual(shape(next), shape(reference(previous, parsed, policy)));
  }
});
