/**
 * Field by field comparison of a mapped record (what this program sends Ometria for a member)
 * with the contact Ometria serves back (docs/API_NOTES.md, "Reading contacts back"). Pure.
 *
 * - Only the fields the mapped record sets are compared: Ometria adds its own (`profile_id`,
 *   `dt_object_updated`, …) and keeps what other sources wrote. Directives (`@…`) and `id` are
 *   not fields. `properties` is compared key by key (`properties.<key>`).
 * - A field the record sends empty (`""`, `null`) equals one Ometria does not hold.
 * - Timestamps are compared as instants (Ometria may write them in another format); email
 *   without case or surrounding blanks; a number and its text as equal.
 * - A field Ometria's answer does not carry is reported `absent`, not different: whether a read
 *   carries every field is not documented, so the caller decides (a field no contact of the
 *   verify carried is "not returned"; one others carry was cleared, a difference).
 *
 * @module
 */

/** How one contact differs from its mapped record. */
export interface ContactDifference {
  /** Fields Ometria holds with another value. */
  differ: string[];
  /** Fields the record sets that Ometria's answer does not carry. */
  absent: string[];
}

/** Compares `expected` (a mapped record) with `held` (Ometria's contact). */
export function contactDifference(
  expected: Readonly<Record<string, unknown>>,
  held: Readonly<Record<string, unknown>>,
): ContactDifference {
  const out: ContactDifference = { differ: [], absent: [] };
  for (const [field, value] of Object.entries(expected)) {
    if (field.startsWith("@") || field === "id") continue;
    if (field === "properties" && _isObject(value)) {
      const heldProperties = held.properties;
      for (const [key, v] of Object.entries(value)) {
        const name = `properties.${key}`;
        if (!_isObject(heldProperties)) {
          if (!_empty(v)) out.absent.push(name);
          continue;
        }
        _compare(name, v, key in heldProperties, heldProperties[key], out);
      }
      continue;
    }
    _compare(field, value, field in held, held[field], out);
  }
  return out;
}

/** Whether a difference holds anything. */
export function differs(d: ContactDifference): boolean {
  return d.differ.length > 0 || d.absent.length > 0;
}

function _compare(
  name: string,
  want: unknown,
  present: boolean,
  have: unknown,
  out: ContactDifference,
): void {
  if (!present || have === undefined) {
    if (!_empty(want)) out.absent.push(name);
    return;
  }
  if (!_same(name, want, have)) out.differ.push(name);
}

function _same(name: string, want: unknown, have: unknown): boolean {
  if (_empty(want) && _empty(have)) return true;
  if (typeof want === "string" && typeof have === "string") {
    if (want === have) return true;
    if (name === "email") return want.trim().toLowerCase() === have.trim().toLowerCase();
    if (_TIME.test(want) && _TIME.test(have.replace(" ", "T"))) {
      const a = Date.parse(want);
      const b = Date.parse(_isoish(have));
      return !Number.isNaN(a) && a === b;
    }
    return false;
  }
  if (typeof want === "number" || typeof have === "number") return String(want) === String(have);
  return _canonical(want) === _canonical(have);
}

const _TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** `2017-05-17 22:08:07+00` → `2017-05-17T22:08:07+00:00`, ISO text as it is. */
function _isoish(text: string): string {
  let t = text.trim().replace(" ", "T");
  if (/[+-]\d\d$/.test(t)) t += ":00";
  return t;
}

function _empty(value: unknown): boolean {
  return value === null || value === undefined || value === "";
}

/** JSON with object keys sorted, so key order never makes a difference. */
function _canonical(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      _isObject(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : 1)) : v,
  );
}

function _isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
