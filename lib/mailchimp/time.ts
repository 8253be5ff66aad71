/**
 * Mailchimp's time format. Mailchimp ignores the UTC offset of `since_last_changed` and
 * `before_last_changed` and misreads fractional seconds, so every time we send is UTC,
 * whole seconds, `YYYY-MM-DDTHH:MM:SS+00:00`, whatever the machine's time zone.
 *
 * @module
 */

/** Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS+00:00` (UTC, seconds floored). */
export function formatMailchimpTime(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError(`Cannot format time: ${ms} is not finite`);
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19) + "+00:00";
}

/**
 * Parses a time as Mailchimp writes it (ISO 8601 with an offset, or `YYYY-MM-DD HH:MM:SS`
 * in UTC as webhooks send it) into epoch milliseconds floored to the second, or `undefined`
 * when it is empty or invalid.
 */
export function parseMailchimpTime(text: string): number | undefined {
  if (!text) return undefined;
  // Every member's time is read several times a run (validation, the window's reader, the
  // record's version), and a bulk import stamps its members with one time: the last time
  // read is kept, and its usual form is read digit by digit.
  if (text === _last.text) return _last.ms;
  if (text.length === 25 && text.endsWith("+00:00")) {
    const ms = _utcSeconds(text);
    if (ms !== undefined) {
      _last.text = text;
      _last.ms = ms;
      return ms;
    }
  }
  const normalised = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(text)
    ? text.replace(" ", "T") + "Z"
    : text;
  const ms = Date.parse(normalised);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000) * 1000;
}

/** The last time {@linkcode _utcSeconds} read (only those: `Date.parse` may read local time). */
const _last = { text: "", ms: 0 };

const _ZERO = 48;

/** Two or four digits of `text` from `at` as a number, or -1 when one is not a digit. */
function _digits(text: string, at: number, count: 2 | 4): number {
  let n = 0;
  for (let i = at; i < at + count; i++) {
    const d = text.charCodeAt(i) - _ZERO;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * `YYYY-MM-DDTHH:MM:SS+00:00` in epoch ms, as `Date.parse` reads it, or undefined when the
 * text is not plainly that form (then `Date.parse` decides). Fields within their ranges
 * give what `Date.parse` gives, day overflow included (both roll 31 February over).
 */
function _utcSeconds(text: string): number | undefined {
  if (
    text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(10) !== 84 ||
    text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58
  ) {
    return undefined;
  }
  const year = _digits(text, 0, 4);
  const month = _digits(text, 5, 2);
  const day = _digits(text, 8, 2);
  const hour = _digits(text, 11, 2);
  const minute = _digits(text, 14, 2);
  const second = _digits(text, 17, 2);
  // Years 0–99 (which Date.UTC reads as 1900–1999) are left to Date.parse.
  if (
    year < 100 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 ||
    minute < 0 || minute > 59 || second < 0 || second > 59
  ) {
    return undefined;
  }
  return ((_daysFromCivil(year, month) + day - 1) * 86_400 + hour * 3_600 + minute * 60 + second) *
    1_000;
}

/**
 * Days from 1970-01-01 to the first of `month` (1–12) of `year` (100–9999) in the proleptic
 * Gregorian calendar, as `Date.UTC` counts them (H. Hinnant's days_from_civil, in integers):
 * adding `day - 1` to it is exactly `Date.UTC`'s MakeDay, overflow of the month included.
 */
function _daysFromCivil(year: number, month: number): number {
  // Years start in March, so the leap day is the last day of the year.
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5);
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) +
    dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}
