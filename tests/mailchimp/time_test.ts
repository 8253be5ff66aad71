import assert from "node:assert/strict";
import { formatMailchimpTime, parseMailchimpTime } from "../../lib/mailchimp/time.ts";
import { seededRandom } from "../../lib/sim/random.ts";

Deno.test("parseMailchimpTime() reads Mailchimp's times as Date.parse does, floored to the second", () => {
  const random = seededRandom(7);
  const pad = (n: number, width: number) => String(n).padStart(width, "0");
  const texts = [
    "2026-10-31T16:26:16+00:00",
    "2026-02-31T00:00:00+00:00", // rolls over, as Date.parse does
    "2024-02-29T23:59:59+00:00",
    "2026-01-01T24:00:00+00:00",
    "2026-01-01T23:59:60+00:00",
    "0050-06-01T00:00:00+00:00",
    "2026-13-01T00:00:00+00:00",
    "2026-1a-01T00:00:00+00:00",
    "2026-10-31T16:26:16+02:00",
    "2026-10-31T16:26:16.750Z",
    "2026-10-31 16:26:16",
    "2026-10-31X16:26:16+00:00",
    "not a time at all, 25 ch",
  ];
  for (let i = 0; i < 2_000; i++) {
    const n = (max: number) => Math.floor(random() * max);
    texts.push(
      `${pad(n(10_000), 4)}-${pad(n(14), 2)}-${pad(n(33), 2)}T${pad(n(26), 2)}:${pad(n(61), 2)}:${
        pad(n(61), 2)
      }+00:00`,
    );
  }
  for (const text of texts) {
    const expected = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(text)
      ? Date.parse(text.replace(" ", "T") + "Z")
      : Date.parse(text);
    assert.equal(
      parseMailchimpTime(text),
      Number.isNaN(expected) ? undefined : Math.floor(expected / 1000) * 1000,
      text,
    );
  }
  assert.equal(parseMailchimpTime(""), undefined);
  const now = Date.UTC(2026, 10, 30, 12, 0, 5);
  assert.equal(parseMailchimpTime(formatMailchimpTime(now + 999)), now);
});

Deno.test("parseMailchimpTime() reads every day of leap and century years as Date.parse does", () => {
  // The usual form is read without Date.parse: each calendar rule (every 4th year, not every
  // 100th, every 400th), the ends of its range and day overflow must still agree with it.
  const pad = (n: number, width: number) => String(n).padStart(width, "0");
  for (const year of [100, 399, 400, 1600, 1899, 1900, 1970, 1999, 2000, 2024, 2100, 9999]) {
    for (let month = 1; month <= 12; month++) {
      for (let day = 1; day <= 31; day++) {
        const text = `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T23:59:59+00:00`;
        assert.equal(parseMailchimpTime(text), Date.parse(text), text);
      }
    }
  }
});

Deno.test("parseMailchimpTime() reads each time as itself whatever was read before it", () => {
  // Members of one bulk import share a time: the last one read is remembered, so a different
  // time (or one that is no time) right after it must not be taken for it.
  const a = "2026-10-31T16:26:16+00:00";
  const b = "2026-10-31T16:26:17+00:00";
  const sequence = [a, a, b, a, "2026-10-31T16:26:16+02:00", a, "2026-10-31 16:26:16", a, "x"];
  for (const text of sequence) {
    const expected = text.includes(" ")
      ? Date.parse(text.replace(" ", "T") + "Z")
      : Date.parse(text);
    assert.equal(
      parseMailchimpTime(text),
      Number.isNaN(expected) ? undefined : expected,
      text,
    );
  }
  assert.equal(parseMailchimpTime(a.slice(0, 24)), undefined);
});
