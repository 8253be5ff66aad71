/** Dates, birthdays and phone numbers read by their merge field's options. */
import assert from "node:assert/strict";
import { normaliseBirthday, normaliseDate, toE164 } from "../../lib/mapping/formats.ts";

Deno.test("normaliseDate() reads ISO dates as they are and the rest by date_format", async (t) => {
  const cases: [string, string | undefined, string][] = [
    ["2019-06-01", "DD/MM/YYYY", "2019-06-01"],
    ["2019/06/01", undefined, "2019-06-01"],
    ["06/01/2019", "MM/DD/YYYY", "2019-06-01"],
    ["06/01/2019", undefined, "2019-06-01"],
    ["01/06/2019", "DD/MM/YYYY", "2019-06-01"],
    ["01-06-2019", "DD/MM/YYYY", "2019-06-01"],
    ["1/6/2019", "DD/MM/YYYY", "2019-06-01"],
    ["29/02/2024", "DD/MM/YYYY", "2024-02-29"],
  ];
  for (const [text, format, value] of cases) {
    await t.step(`${text} (${format})`, () => {
      assert.deepEqual(normaliseDate(text, format), { value });
    });
  }
  await t.step("what is no date, or contradicts the format, says so", () => {
    assert.deepEqual(normaliseDate("25/12/2019", "MM/DD/YYYY"), {
      reason: "contradicts_date_format",
    });
    assert.deepEqual(normaliseDate("29/02/2023", "DD/MM/YYYY"), { reason: "not_a_date" });
    assert.deepEqual(normaliseDate("2019-13-01", undefined), { reason: "not_a_date" });
    assert.deepEqual(normaliseDate("soon", undefined), { reason: "not_a_date" });
  });
});

Deno.test("normaliseBirthday() gives MM/DD from MM/DD and DD/MM fields", () => {
  assert.deepEqual(normaliseBirthday("04/23", "MM/DD"), { value: "04/23" });
  assert.deepEqual(normaliseBirthday("23/04", "DD/MM"), { value: "04/23" });
  assert.deepEqual(normaliseBirthday("4/3", undefined), { value: "04/03" });
  assert.deepEqual(normaliseBirthday("29/02", "DD/MM"), { value: "02/29" });
  assert.deepEqual(normaliseBirthday("23/04", "MM/DD"), { reason: "contradicts_date_format" });
  assert.deepEqual(normaliseBirthday("31/02", "DD/MM"), { reason: "not_a_date" });
});

Deno.test("toE164() normalises by phone_format and refuses what it cannot read", async (t) => {
  const cases: [string, string | undefined, ReturnType<typeof toE164>][] = [
    ["+44 7700 900123", "none", { value: "+447700900123" }],
    ["+44 (0)20 7946 0018", "none", { value: "+442079460018" }],
    ["0044 20 7946 0018", undefined, { value: "+442079460018" }],
    ["+1 (512) 555-0123", "US", { value: "+15125550123" }],
    ["(512) 555-0123", "US", { value: "+15125550123" }],
    ["1-512-555-0123", "US", { value: "+15125550123" }],
    ["512.555.0123", "US", { value: "+15125550123" }],
    ["07700 900123", "none", { reason: "no_country_code" }],
    ["555-0123", "US", { reason: "not_a_us_number" }],
    ["+44 7700 900123 ext 5", "none", { reason: "not_e164" }],
    ["+0 123 456 789", "none", { reason: "not_e164" }],
    ["+12", "none", { reason: "not_e164" }],
  ];
  for (const [text, format, want] of cases) {
    await t.step(`${text} (${format})`, () => assert.deepEqual(toE164(text, format), want));
  }
});
