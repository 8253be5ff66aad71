import assert from "node:assert/strict";
import {
  crc32,
  encodeJournalHeader,
  encodeJournalLine,
  JOURNAL_VERSION,
  parseJournal,
} from "../../lib/state/journal.ts";

const encoder = new TextEncoder();
const HEADER = encodeJournalHeader("ab".repeat(32));
const LINES = [{ id: "a", n: 1 }, { id: "b", n: "é ✓" }, { id: "a", n: 2 }].map((v) =>
  encodeJournalLine(v)
);

Deno.test("crc32() matches the IEEE check value", () => {
  assert.equal(crc32(encoder.encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array()), 0);
});

Deno.test("parseJournal() reads back the header and entries in order", () => {
  const bytes = encoder.encode(HEADER + LINES.join(""));
  const parsed = parseJournal(bytes);
  assert.deepEqual(parsed.header, { journal: JOURNAL_VERSION, base: "ab".repeat(32) });
  assert.deepEqual(parsed.entries, [{ id: "a", n: 1 }, { id: "b", n: "é ✓" }, {
    id: "a",
    n: 2,
  }]);
  assert.equal(parsed.validLength, bytes.length);
  assert.equal(parsed.tornLength, 0);
  assert.equal(parsed.damage, undefined);
});

Deno.test("parseJournal() sets a torn end aside and reports damage before whole lines", async (t) => {
  const whole = HEADER + LINES.join("");
  const cases: { name: string; text: string; entries: number; torn: number; damage?: string }[] = [
    { name: "empty", text: "", entries: 0, torn: 0 },
    { name: "header cut short", text: HEADER.slice(0, 20), entries: 0, torn: 20 },
    { name: "last line cut short", text: whole + LINES[0]!.slice(0, 15), entries: 3, torn: 15 },
    {
      name: "last line complete but wrong (a partly persisted write)",
      text: whole + "0".repeat(40) + "\n",
      entries: 3,
      torn: 41,
    },
    {
      name: "middle line changed",
      text: HEADER + LINES[0]!.replace('"n":1', '"n":7') + LINES[1]! + LINES[2]!,
      entries: 0,
      torn: 0,
      damage: "line 2: its checksum does not match its content",
    },
    {
      name: "middle line missing its end",
      text: HEADER + LINES[0]!.slice(0, 15) + LINES[1]! + LINES[2]!,
      entries: 0,
      torn: 0,
      damage: "line 2: its checksum does not match its content",
    },
    {
      name: "only unreadable whole lines",
      text: ("0".repeat(40) + "\n").repeat(3),
      entries: 0,
      torn: 0,
      damage: "line 1: it is not a checksummed line",
    },
    {
      name: "no header",
      text: LINES.join(""),
      entries: 0,
      torn: 0,
      damage: "line 1: it is not a journal header",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const parsed = parseJournal(encoder.encode(c.text));
      assert.equal(parsed.entries.length, c.entries);
      assert.equal(parsed.tornLength, c.torn);
      if (c.damage === undefined) {
        assert.equal(parsed.damage, undefined);
        assert.equal(parsed.validLength + parsed.tornLength, encoder.encode(c.text).length);
      } else {
        assert.ok(parsed.damage);
        assert.ok(
          `line ${parsed.damage.line}: ${parsed.damage.reason}`.startsWith(c.damage),
          `${parsed.damage.line}: ${parsed.damage.reason}`,
        );
        assert.equal(parsed.header, undefined);
      }
    });
  }
});
