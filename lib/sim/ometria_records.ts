/**
 * How the Ometria simulator validates and stores pushed records, with each answer its
 * documentation leaves open behind an option (docs/API_NOTES.md, "Ometria push"):
 *
 * - a partial record merges: "To update an existing record, you can send a partial record
 *   and only the supplied fields will be merged into the existing record"
 *   (https://support.ometria.com/hc/en-gb/articles/360011617238-Push-API), or, the Merge
 *   article's other reading, a record without `@merge` replaces the stored one
 *   (https://support.ometria.com/support/solutions/articles/7000045353-merge);
 * - blank data "may or may not result in those field values being removed" (same Merge
 *   article): a `null` or `""` clears the field, is ignored, or fails validation;
 * - `properties` merges key by key, or is replaced whole, as product attributes are ("You
 *   must pass all relevant attributes when using merge");
 * - validation errors read `{"error_message": "not a valid value", "error_path": "root >
 *   lastname"}` (https://docs.ometria.com/docs/list-errors).
 *
 * @module
 */

/** The values Ometria accepts for a contact's `marketing_optin`. */
export const OMETRIA_MARKETING_OPTINS = [
  "EXPLICITLY_OPTEDIN",
  "EXPLICITLY_OPTEDOUT",
  "NOT_SPECIFIED",
] as const;

/** The largest record, in bytes of its JSON, that Ometria accepts ("Record is too large"). */
export const OMETRIA_MAX_RECORD_BYTES = 61440;

/** How the simulator treats what a record leaves out or blanks (see the module). */
export interface RecordPolicy {
  /** A record without `@merge`: merged into the stored one, or replacing it. */
  omittedFields: "merge" | "replace";
  /** A field sent as `null`: removed from the record, ignored (kept), or refused. */
  nullFields: "clear" | "keep" | "reject";
  /**
   * A field sent as `""`: stored as `""`, ignored (kept), or refused. Refusal applies to the
   * typed fields only (a date, a phone, a timestamp, an enum): `""` is text.
   */
  emptyStringFields: "store" | "keep" | "reject";
  /** `properties` of a merged record: merged key by key, or replaced whole. */
  properties: "merge" | "replace";
}

/** The policy unless told otherwise: the Push API page's reading, blanks clearing. */
export const DEFAULT_RECORD_POLICY: RecordPolicy = {
  omittedFields: "merge",
  nullFields: "clear",
  emptyStringFields: "store",
  properties: "replace",
};

/** What is wrong with a record, the way Ometria lists it. */
export interface RecordProblem {
  /** Usually "not a valid value", as Ometria's docs say. */
  message: string;
  /** `root`, `root > email`, `root > properties > x`. */
  path: string;
}

/** Contact fields Ometria parses as something other than text. */
const _TYPED: Readonly<Record<string, (v: string) => boolean>> = {
  // E.164, as libphonenumber reads it (Ometria's phone article points there).
  phone_number: (v) => /^\+[1-9]\d{7,14}$/.test(v),
  date_of_birth: (v) => /^\d{4}-\d{2}-\d{2}$/.test(v),
  timestamp_subscribed: _isTime,
  timestamp_unsubscribed: _isTime,
  timestamp_acquired: _isTime,
  gender: (v) => v === "m" || v === "f" || v === "o",
  marketing_optin: (v) => (OMETRIA_MARKETING_OPTINS as readonly string[]).includes(v),
};

function _isTime(v: string): boolean {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$/.test(v);
}

function _isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The first thing wrong with one pushed record under `policy`, or undefined when Ometria
 * would take it. `checkSize` measures the record against the 60 KB limit.
 */
export function validateRecord(
  record: unknown,
  policy: RecordPolicy,
  checkSize: boolean,
): RecordProblem | undefined {
  if (!_isObject(record)) return { message: "not a valid value", path: "root" };
  const type = record["@type"];
  if (typeof type !== "string" || type === "") return _invalid("@type");
  if (typeof record.id !== "string" || record.id === "") return _invalid("id");
  const collection = record["@collection"];
  // Contacts need a collection (one per source); other types may leave it out.
  if (
    (type === "contact" || collection !== undefined) &&
    (typeof collection !== "string" || collection === "")
  ) {
    return _invalid("@collection");
  }
  if (record["@merge"] !== undefined && typeof record["@merge"] !== "boolean") {
    return _invalid("@merge");
  }
  if (type === "contact") {
    const problem = _contactProblem(record, policy);
    if (problem) return _invalid(problem);
  }
  if (checkSize && _jsonBytes(record) > OMETRIA_MAX_RECORD_BYTES) {
    return { message: "Record is too large", path: "root" };
  }
  return undefined;
}

function _invalid(field: string): RecordProblem {
  return { message: "not a valid value", path: `root > ${field}` };
}

/**
 * The first contact field Ometria would refuse, as its path below `root`. The fields are
 * walked by `Object.keys` (the order and the fields of `Object.entries`, without an array
 * per field: a run validates some 200,000 records).
 */
function _contactProblem(record: Record<string, unknown>, policy: RecordPolicy) {
  const fields = Object.keys(record);
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    const value = record[field];
    if (value === null) {
      if (policy.nullFields === "reject" && !field.startsWith("@")) return field;
      continue;
    }
    const check = _TYPED[field];
    if (field === "email" && typeof value !== "string") return field;
    if (check === undefined) continue;
    if (value === "") {
      if (policy.emptyStringFields === "reject") return field;
      continue;
    }
    if (typeof value !== "string" || !check(value)) return field;
  }
  const properties = record.properties;
  if (properties !== undefined && properties !== null && !_isObject(properties)) {
    return "properties";
  }
  if (_isObject(properties) && policy.nullFields === "reject") {
    for (const [key, value] of Object.entries(properties)) {
      if (value === null) return `properties > ${key}`;
    }
  }
  return undefined;
}

/**
 * `record` stored over `previous` (undefined: none yet) under `policy`; `@merge` is a
 * directive, not data, so it is not stored.
 */
export function storedRecord(
  previous: Record<string, unknown> | undefined,
  record: Record<string, unknown>,
  policy: RecordPolicy,
): Record<string, unknown> {
  // One walk of the record's own fields (what `{ "@merge": merge, ...fields }` and
  // `Object.entries(fields)` would visit, in the same order) and no copy of it.
  const merging = record["@merge"] === true || policy.omittedFields === "merge";
  // A sync pushes the same records again and again: one that changes nothing gives back the
  // stored record itself (equal, field for field and in order, to the copy made below).
  if (merging && previous && _changesNothing(previous, record, policy)) return previous;
  const base: Record<string, unknown> = merging && previous ? { ...previous } : {};
  const fields = Object.keys(record);
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    if (field === "@merge") continue;
    const value = record[field];
    if (field === "properties" && _isObject(value)) {
      const old = _isObject(base.properties) && merging && policy.properties === "merge"
        ? base.properties
        : {};
      base.properties = _blanked(old, value, policy);
      continue;
    }
    _assign(base, field, value, policy);
  }
  return base;
}

/**
 * Whether merging `record` into a copy of `previous` (what `storedRecord` does) would leave
 * the copy equal to `previous`: every field kept, in the same order, with equal values.
 * Anything unusual (a `__proto__` field, a record with another prototype) answers false,
 * and the copy is made.
 */
function _changesNothing(
  previous: Record<string, unknown>,
  record: Record<string, unknown>,
  policy: RecordPolicy,
): boolean {
  if (Object.getPrototypeOf(previous) !== Object.prototype) return false;
  const fields = Object.keys(record);
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    if (field === "@merge") continue;
    if (field === "__proto__") return false;
    const value = record[field];
    if (field === "properties" && _isObject(value)) {
      const old = _isObject(previous.properties) && policy.properties === "merge"
        ? previous.properties
        : {};
      const properties = _blanked(old, value, policy);
      if (!Object.hasOwn(previous, field) || !_same(previous.properties, properties)) return false;
      continue;
    }
    if (value === null) {
      if (policy.nullFields === "clear" && Object.hasOwn(previous, field)) return false;
      continue;
    }
    // `field in previous` is `field in` its copy: same own fields, same prototype.
    if (value === "" && policy.emptyStringFields === "keep" && field in previous) continue;
    if (!Object.hasOwn(previous, field) || !_same(previous[field], value)) return false;
  }
  return true;
}

/** Whether two JSON values are the same: equal primitives (`Object.is`), or alike throughout. */
function _same(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!_same(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  if (
    Object.getPrototypeOf(a) !== Object.prototype || Object.getPrototypeOf(b) !== Object.prototype
  ) {
    return false;
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  for (let i = 0; i < ka.length; i++) {
    if (ka[i] !== kb[i] || !_same(ra[ka[i]!], rb[kb[i]!])) return false;
  }
  return true;
}

/** `incoming` applied to a copy of `old`, blanks as `policy` says. */
function _blanked(
  old: Record<string, unknown>,
  incoming: Record<string, unknown>,
  policy: RecordPolicy,
): Record<string, unknown> {
  const out = { ...old };
  const keys = Object.keys(incoming);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    _assign(out, key, incoming[key], policy);
  }
  return out;
}

function _assign(
  into: Record<string, unknown>,
  field: string,
  value: unknown,
  policy: RecordPolicy,
): void {
  if (value === null) {
    // `delete` of a field the record lacks (most blanks, sent every time) is a no-op.
    if (policy.nullFields === "clear" && Object.hasOwn(into, field)) delete into[field];
    return;
  }
  if (value === "" && policy.emptyStringFields === "keep" && field in into) return;
  into[field] = value;
}

function _jsonBytes(record: Record<string, unknown>): number {
  const text = JSON.stringify(record);
  // UTF-8 takes at most 3 bytes per UTF-16 unit, so short texts need no encoding.
  if (text.length * 3 <= OMETRIA_MAX_RECORD_BYTES) return text.length;
  return new TextEncoder().encode(text).length;
}
