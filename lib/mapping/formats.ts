/**
 * Mailchimp's formatted merge values in the forms Ometria takes: dates as `YYYY-MM-DD`,
 * birthdays as `MM/DD`, phone numbers in E.164. Each reads the value as its merge field's
 * `options` say (docs/API_NOTES.md, "Merge-field options"), and a value it cannot read gives
 * a reason instead of a guess: a value sent as typed is one Ometria drops or misreads.
 *
 * @module
 */

/**
 * Why a value is left out: `not_a_date`; `contradicts_date_format`, a date impossible under
 * the field's `date_format` (its day where the month should be: a sign the list serves
 * another format than it declares); `no_country_code`, an international number without `+`
 * or `00`; `not_a_us_number`; `not_e164`, a number that stays malformed once cleaned.
 */
export type DroppedReason =
  | "not_a_date"
  | "contradicts_date_format"
  | "no_country_code"
  | "not_a_us_number"
  | "not_e164";

/** A normalised value, or why there is none. */
export type Normalised = { value: string } | { reason: DroppedReason };

/** What each {@linkcode DroppedReason} means, for logs and the README. */
export const DROPPED_REASONS: Readonly<Record<DroppedReason, string>> = {
  not_a_date: "is not a date",
  contradicts_date_format: "is not a valid date in the field's date_format",
  no_country_code: "has no country code (+ or 00), and the field is international",
  not_a_us_number: "is not a 10-digit US number, and the field is US",
  not_e164: "is not a phone number once spaces and punctuation are taken out",
};

const _DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function _validDay(month: number, day: number, year?: number): boolean {
  if (!(month >= 1 && month <= 12 && day >= 1)) return false;
  if (month === 2 && day === 29 && year !== undefined) {
    return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  }
  return day <= _DAYS[month - 1]!;
}

const _pad = (n: number) => String(n).padStart(2, "0");

/**
 * A date merge value as `YYYY-MM-DD`. `YYYY-MM-DD` and `YYYY/MM/DD` are read as they are
 * (whatever the field's format: a normalised read of the value is one of the two plausible
 * ways Mailchimp serves it); anything else by `dateFormat`, `MM/DD/YYYY` (Mailchimp's
 * default, also when the field names none) or `DD/MM/YYYY`, with `/`, `-` or `.` between.
 */
export function normaliseDate(text: string, dateFormat: string | undefined): Normalised {
  const t = text.trim();
  const iso = /^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$/.exec(t);
  if (iso) {
    const [y, m, d] = [+iso[1]!, +iso[2]!, +iso[3]!];
    return _validDay(m, d, y) ? { value: `${iso[1]}-${_pad(m)}-${_pad(d)}` } : {
      reason: "not_a_date",
    };
  }
  const parts = /^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$/.exec(t);
  if (!parts) return { reason: "not_a_date" };
  const dayFirst = /^DD/i.test(dateFormat?.trim() ?? "");
  const [a, b, y] = [+parts[1]!, +parts[2]!, +parts[3]!];
  const [m, d] = dayFirst ? [b, a] : [a, b];
  return _validDay(m, d, y)
    ? { value: `${parts[3]}-${_pad(m)}-${_pad(d)}` }
    : { reason: _validDay(d, m, y) ? "contradicts_date_format" : "not_a_date" };
}

/**
 * A birthday merge value (no year) as `MM/DD`, Mailchimp's own write format, read by
 * `dateFormat`: `MM/DD` (the default) or `DD/MM`.
 */
export function normaliseBirthday(text: string, dateFormat: string | undefined): Normalised {
  const parts = /^(\d{1,2})[-/.](\d{1,2})$/.exec(text.trim());
  if (!parts) return { reason: "not_a_date" };
  const dayFirst = /^DD/i.test(dateFormat?.trim() ?? "");
  const [a, b] = [+parts[1]!, +parts[2]!];
  const [m, d] = dayFirst ? [b, a] : [a, b];
  return _validDay(m, d)
    ? { value: `${_pad(m)}/${_pad(d)}` }
    : { reason: _validDay(d, m) ? "contradicts_date_format" : "not_a_date" };
}

/**
 * A phone merge value in E.164 (`+` and 8 to 15 digits, the first not 0), as Ometria
 * validates numbers with libphonenumber. A `US` field takes national numbers (10 digits, or
 * 11 starting with 1) and gets `+1`; an international one (`none`, or no format) must carry
 * its country code as `+` or `00`. Spaces, dots, dashes, slashes, parentheses and a trunk
 * `(0)` after the country code (`+44 (0)20 …`) are taken out.
 */
export function toE164(text: string, phoneFormat: string | undefined): Normalised {
  let t = text.trim().replace(/^(\+\d{1,3})\s*\(0\)/, "$1");
  t = t.replace(/[\s().\-/]/g, "");
  if (t.startsWith("00")) t = `+${t.slice(2)}`;
  if (phoneFormat?.trim().toUpperCase() === "US" && !t.startsWith("+")) {
    if (!/^\d+$/.test(t)) return { reason: "not_e164" };
    const national = t.length === 11 && t.startsWith("1") ? t.slice(1) : t;
    return /^[2-9]\d{9}$/.test(national)
      ? { value: `+1${national}` }
      : { reason: "not_a_us_number" };
  }
  if (!t.startsWith("+")) {
    return /^\d+$/.test(t) ? { reason: "no_country_code" } : { reason: "not_e164" };
  }
  return /^\+[1-9]\d{7,14}$/.test(t) ? { value: t } : { reason: "not_e164" };
}

/**
 * What one served date or birthday says of the order of its day and month: `day-first` when
 * its first number cannot be a month (`23/04`), `month-first` when its second cannot
 * (`04/23`), undefined when either could be (`03/04`) or it is no such date (ISO dates
 * included: they are never ambiguous).
 */
export function dateOrderEvidence(text: string): "day-first" | "month-first" | undefined {
  const m = /^(\d{1,2})[-/.](\d{1,2})(?:[-/.]\d{4})?$/.exec(text.trim());
  if (!m) return undefined;
  const [a, b] = [+m[1]!, +m[2]!];
  if (a > 12 && a <= 31 && b >= 1 && b <= 12) return "day-first";
  if (b > 12 && b <= 31 && a >= 1 && a <= 12) return "month-first";
  return undefined;
}

/**
 * `dateFormat` with its day and month in `order`: `DD/MM` ↔ `MM/DD`, `DD/MM/YYYY` ↔
 * `MM/DD/YYYY` (a field's declared format, corrected by what its values show).
 */
export function withDateOrder(
  dateFormat: string | undefined,
  order: "day-first" | "month-first",
  birthday: boolean,
): string {
  const first = order === "day-first" ? "DD/MM" : "MM/DD";
  return birthday || /^\s*(DD|MM)\/(DD|MM)\s*$/i.test(dateFormat ?? "") ? first : `${first}/YYYY`;
}
