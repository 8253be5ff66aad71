import assert from "node:assert/strict";
import { recordHash } from "../../lib/state/record_hash.ts";
import { seededRandom } from "./_helpers.ts";

Deno.test("recordHash() gives fixed values, the empty string included", () => {
  // Fixed: a change of these values is a change of every ledger's hashes, so every member
  // would be sent again once.
  assert.equal(recordHash(""), "488bdcb81aee8d83");
  assert.equal(recordHash("a"), "e10d6733fd4eba9b");
  assert.equal(recordHash("ab"), "b6453b8c74c86aee");
  assert.equal(recordHash("ba"), "42408f1a4005554d");
  assert.equal(recordHash('{"id":"x"}'), "2f745cccf2fe48e7");
  assert.equal(recordHash("é"), "a6fe32e019c7e637");
  assert.equal(recordHash("\u{1F600}"), "a00e0e184f32bf76");
});

Deno.test("recordHash() returns 16 lowercase hex digits, never the all-zero value", () => {
  const random = seededRandom(7);
  for (let i = 0; i < 1000; i++) {
    const s = String.fromCharCode(...Array.from({ length: i % 40 }, () => random() * 65536));
    assert.match(recordHash(s), /^[0-9a-f]{16}$/);
    assert.notEqual(recordHash(s), "0000000000000000");
  }
});

Deno.test("recordHash() gives 200,000 different near-identical records 200,000 hashes", () => {
  const random = seededRandom(2026);
  const base = JSON.stringify({
    id: "0123456789abcdef0123456789abcdef",
    email: "someone@example.com",
    firstname: "Ada",
    marketing_optin: "EXPLICITLY_OPTEDIN",
    properties: { mailchimp_last_changed: "2026-03-01T10:00:00+00:00", rating: 3 },
  });
  const seen = new Map<string, string>();
  while (seen.size < 200_000) {
    // One to three code units changed, and now and then one added or dropped: the way two
    // versions of one member's record differ.
    let s = base;
    const edits = 1 + Math.floor(random() * 3);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(random() * s.length);
      const c = String.fromCharCode(32 + Math.floor(random() * 95));
      const kind = random();
      s = kind < 0.8
        ? s.slice(0, at) + c + s.slice(at + 1)
        : kind < 0.9
        ? s.slice(0, at) + c + s.slice(at)
        : s.slice(0, at) + s.slice(at + 1);
    }
    if (s === base) continue;
    const hash = recordHash(s);
    const other = seen.get(hash);
    if (other !== undefined && other !== s) {
      assert.fail(`recordHash() collides: ${JSON.stringify(other)} and ${JSON.stringify(s)}`);
    }
    seen.set(hash, s);
  }
});
