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
  const normalised = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(text)
    ? text.replace(" ", "T") + "Z"
    : text;
  const ms = Date.parse(normalised);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000) * 1000;
}
