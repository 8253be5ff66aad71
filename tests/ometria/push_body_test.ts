/**
 * A push's body is written record by record into one buffer (lib/ometria/push_body.ts); its
 * bytes must be exactly those of the joined array encoded at once, whatever the records hold.
 */
import assert from "node:assert/strict";
import { jsonArrayBody } from "../../lib/ometria/push_body.ts";

function joined(jsons: readonly string[]): Uint8Array {
  return new TextEncoder().encode(`[${jsons.join(",")}]`);
}

// 1-, 2-, 3- and 4-byte UTF-8 (the last a surrogate pair), and escapes JSON.stringify writes.
const PIECES = [
  "a",
  "Z",
  " ",
  "é",
  "ß",
  "Ł",
  "€",
  "中",
  "文",
  "😀",
  "👍🏽",
  '\\"',
  "\\u0000",
  "\\ud800",
];

function randomJson(rand: () => number): string {
  const text: string[] = [];
  const n = Math.floor(rand() * 400);
  for (let i = 0; i < n; i++) text.push(PIECES[Math.floor(rand() * PIECES.length)]!);
  return JSON.stringify({ id: String(Math.floor(rand() * 1e9)), firstname: text.join("") });
}

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("jsonArrayBody() gives the bytes of the joined array, for 2,000 random batches", () => {
  const rand = seeded(19);
  for (let b = 0; b < 2_000; b++) {
    const jsons = Array.from({ length: Math.floor(rand() * 101) }, () => randomJson(rand));
    const body = jsonArrayBody(jsons.map((json) => ({ json })));
    assert.deepEqual(body, joined(jsons), `batch ${b}`);
  }
});

Deno.test("jsonArrayBody() of no records, of one, and of records all beyond one byte a unit", () => {
  assert.deepEqual(jsonArrayBody([]), joined([]));
  assert.equal(new TextDecoder().decode(jsonArrayBody([])), "[]");
  assert.deepEqual(jsonArrayBody([{ json: '{"id":"1"}' }]), joined(['{"id":"1"}']));
  // Every unit 3 bytes (the buffer starts at one byte a unit and must grow more than once),
  // and a record of 60 KB of them.
  const wide = ["中".repeat(1_000), "€".repeat(20_480), "😀".repeat(300)].map((s) =>
    JSON.stringify(s)
  );
  assert.deepEqual(jsonArrayBody(wide.map((json) => ({ json }))), joined(wide));
});
