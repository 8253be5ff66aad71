/**
 * The shape of a Mailchimp list member as the sync uses it, validated with zod at the edge.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { parseMailchimpTime } from "./time.ts";

/** Every status Mailchimp gives a list member. */
export const MEMBER_STATUSES = [
  "subscribed",
  "unsubscribed",
  "cleaned",
  "pending",
  "transactional",
  "archived",
] as const;

/** A list member's status. */
export type MemberStatus = typeof MEMBER_STATUSES[number];

/**
 * Schema of one member as returned by `GET /lists/{id}/members` (fields the sync asks for).
 * Fields the sync does not use are dropped, so a field Mailchimp adds one day changes nothing.
 */
export const memberSchema = z.object({
  id: z.string().regex(/^[0-9a-f]{32}$/, "is not a subscriber hash (32 lowercase hex digits)"),
  email_address: z.string().refine((e) => e.includes("@"), "is not an email address"),
  status: z.enum(MEMBER_STATUSES),
  merge_fields: z.record(z.string(), z.unknown()).optional().default({}),
  last_changed: z.string().refine(
    (t) => parseMailchimpTime(t) !== undefined,
    "is not a readable time",
  ),
  timestamp_opt: z.string().nullable().optional().transform((t) => t ?? ""),
  // Read only when a connection's field mapping asks for them (`fields=`), so absent
  // stays absent; a wrong type is a malformed member like any other.
  timestamp_signup: z.string().nullable().optional(),
  language: z.string().nullable().optional(),
  vip: z.boolean().nullable().optional(),
  member_rating: z.number().nullable().optional(),
  location: z.object({ country_code: z.string().nullable().optional() }).nullable().optional(),
  // The listing serves at most 50 tags; `tags_count` says how many the member has
  // (docs/API_NOTES.md, "Tags"): above what was served, the rest are read on their own.
  tags: z.array(z.object({ name: z.string() })).nullable().optional(),
  tags_count: z.number().int().nonnegative().nullable().optional(),
  interests: z.record(z.string(), z.boolean()).nullable().optional(),
});

/** One member as the sync uses it. */
export type Member = z.infer<typeof memberSchema>;

/** The fields the sync asks Mailchimp for (keeps responses small). */
export const MEMBER_FIELDS = [
  "members.id",
  "members.email_address",
  "members.status",
  "members.merge_fields",
  "members.last_changed",
  "members.timestamp_opt",
  "total_items",
] as const;

/**
 * Schema of a page of `GET /lists/{id}/members`. Members are validated one by one with
 * {@linkcode parseMember}, so one malformed member does not make the page unreadable.
 * `members` is checked to be an array and handed on as it is: `z.array(z.unknown())` would
 * build a copy of the page's array and a result object per member (about 155 bytes a
 * member, measured), garbage made on every page of a run.
 */
export const membersPageSchema = z.object({
  members: z.custom<unknown[]>((value) => Array.isArray(value), {
    message: "Invalid input: expected array",
  }),
  total_items: z.number().int().nonnegative(),
});

/**
 * A member Mailchimp served in a shape the sync cannot use: it is quarantined, not copied.
 * `id` is Mailchimp's id, or the hash of its email when the id itself is unusable, or null.
 */
export interface InvalidMember {
  id: string | null;
  /** What is wrong, e.g. `status: Invalid option: expected one of …`. */
  reason: string;
  /** Its `last_changed` when readable (where it sits in a sorted page). */
  lastChangedMs: number | undefined;
}

/** The subscriber hash of an email: the MD5 of its lowercased form, as Mailchimp computes it. */
export function subscriberHash(email: string): string {
  return createHash("md5").update(email.trim().toLowerCase()).digest("hex");
}

/**
 * Validates one member of an answer: the member, or why it cannot be used. A member that is
 * plainly well-formed (nearly all) is read by {@linkcode _wellFormed}, a hand-written check
 * of exactly what {@linkcode memberSchema} accepts, at a fraction of zod's cost and
 * allocation (it was the largest cost of a run per member); anything else goes to zod,
 * which decides and says why. tests/mailchimp/member_test.ts holds the two to one answer.
 */
export function parseMember(raw: unknown): { member: Member } | { invalid: InvalidMember } {
  const member = _wellFormed(raw);
  if (member !== undefined) return { member };
  return _parseUnusual(raw);
}

/**
 * Reads `raw` as {@linkcode parseMember} does, into `members` or `invalid`: a page's loop
 * reads 1,000 members, and this makes no result object for each.
 */
export function parseMemberInto(raw: unknown, members: Member[], invalid: InvalidMember[]): void {
  const member = _wellFormed(raw);
  if (member !== undefined) {
    members.push(member);
    return;
  }
  const parsed = _parseUnusual(raw);
  if ("member" in parsed) members.push(parsed.member);
  else invalid.push(parsed.invalid);
}

/** {@linkcode parseMember} of a member {@linkcode _wellFormed} does not take: zod decides. */
function _parseUnusual(raw: unknown): { member: Member } | { invalid: InvalidMember } {
  const parsed = memberSchema.safeParse(raw);
  if (parsed.success) return { member: parsed.data };
  const value = typeof raw === "object" && raw !== null ? raw as Record<string, unknown> : {};
  const id = typeof value.id === "string" && /^[0-9a-f]{32}$/.test(value.id)
    ? value.id
    : typeof value.email_address === "string" && value.email_address.includes("@")
    ? subscriberHash(value.email_address)
    : null;
  const lastChanged = typeof value.last_changed === "string"
    ? parseMailchimpTime(value.last_changed)
    : undefined;
  // The value first: a reason is often read truncated, and the value is what to look for.
  const reason = parsed.error.issues.slice(0, 3).map((issue) => {
    const field = issue.path.join(".") || "member";
    const got = issue.path.length === 1 ? value[String(issue.path[0])] : undefined;
    const shown = got === undefined ? "missing" : JSON.stringify(got)?.slice(0, 60);
    return `${field} ${shown}: ${issue.message}`;
  }).join("; ");
  return {
    invalid: { id, reason: `Mailchimp served it malformed: ${reason}`, lastChangedMs: lastChanged },
  };
}

const _STATUSES: ReadonlySet<string> = new Set(MEMBER_STATUSES);

/** A plain JSON object (what `JSON.parse` makes), not an array, null or anything else. */
function _plain(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    Object.getPrototypeOf(value) === Object.prototype && !Object.hasOwn(value, "__proto__");
}

function _nullableString(value: unknown): boolean {
  return value === undefined || value === null || typeof value === "string";
}

// Every field memberSchema knows: a served object with no other key is taken as it is.
const _KNOWN: ReadonlySet<string> = new Set(Object.keys(memberSchema.shape));

/**
 * What {@linkcode memberSchema} makes of `raw` when every field is plainly valid, or
 * undefined when anything is unusual (zod then decides). Gives the same object zod does:
 * known fields only, `merge_fields` defaulted to `{}`, a null `timestamp_opt` as `""`,
 * `location` and `tags` reduced to the fields asked for. When `raw` holds no other field (what
 * a `fields=` answer serves), `raw` itself is completed and returned instead of a copy (a
 * copy was about 270 bytes a member read, made and dropped on every page of a run), only a
 * `location` or tags served with more than their asked-for field being replaced.
 */
function _wellFormed(raw: unknown): Member | undefined {
  if (!_plain(raw)) return undefined;
  const { id, email_address, status, last_changed } = raw;
  if (typeof id !== "string" || !_subscriberHash(id)) return undefined;
  if (typeof email_address !== "string" || !email_address.includes("@")) return undefined;
  if (typeof status !== "string" || !_STATUSES.has(status)) return undefined;
  if (typeof last_changed !== "string" || parseMailchimpTime(last_changed) === undefined) {
    return undefined;
  }
  const merge = raw.merge_fields;
  if (merge !== undefined && !_plain(merge)) return undefined;
  const { timestamp_opt, timestamp_signup, language, vip, member_rating } = raw;
  if (!_nullableString(timestamp_opt) || !_nullableString(timestamp_signup)) return undefined;
  if (!_nullableString(language)) return undefined;
  if (vip !== undefined && vip !== null && typeof vip !== "boolean") return undefined;
  if (
    member_rating !== undefined && member_rating !== null &&
    (typeof member_rating !== "number" || !Number.isFinite(member_rating))
  ) {
    return undefined;
  }
  const { location, tags, interests, tags_count } = raw;
  if (
    tags_count != null &&
    !(typeof tags_count === "number" && Number.isSafeInteger(tags_count) && tags_count >= 0)
  ) {
    return undefined;
  }
  // Keys beyond memberSchema's: at the top, the member is copied; in `location` or a tag,
  // only that object is reduced (the sub-fields asked for may come with others).
  let exact = true;
  for (const key in raw) if (!_KNOWN.has(key)) exact = false;
  let locationExact = true;
  if (location != null) {
    if (!_plain(location) || !_nullableString(location.country_code)) return undefined;
    for (const key in location) if (key !== "country_code") locationExact = false;
  }
  let tagsExact = true;
  if (tags != null) {
    if (!Array.isArray(tags)) return undefined;
    for (const tag of tags) {
      if (!_plain(tag) || typeof tag.name !== "string") return undefined;
      for (const key in tag) if (key !== "name") tagsExact = false;
    }
  }
  if (interests != null) {
    if (!_plain(interests)) return undefined;
    for (const key in interests) if (typeof interests[key] !== "boolean") return undefined;
  }
  if (!exact) return _copy(raw);
  // Nothing else holds the raw page once it is read: its objects are taken as they are.
  if (merge === undefined) raw.merge_fields = {};
  if (typeof timestamp_opt !== "string") raw.timestamp_opt = "";
  if (!locationExact) raw.location = _location(location as Record<string, unknown>);
  if (!tagsExact) raw.tags = _tags(tags as { name: string }[]);
  return raw as Member;
}

/** A served `location` reduced to what memberSchema keeps. */
function _location(location: { country_code?: unknown }): Member["location"] {
  return Object.hasOwn(location, "country_code")
    ? { country_code: location.country_code as string | null | undefined }
    : {};
}

/** Served tags reduced to what memberSchema keeps. */
function _tags(tags: readonly { name: string }[]): { name: string }[] {
  return tags.map((tag) => ({ name: tag.name }));
}

/** Whether `id` is a subscriber hash, as memberSchema's RegExp says, read without one. */
function _subscriberHash(id: string): boolean {
  if (id.length !== 32) return false;
  for (let i = 0; i < 32; i++) {
    const c = id.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/** The member of a well-formed `raw` that holds more than memberSchema keeps: a reduced copy. */
function _copy(raw: Record<string, unknown>): Member {
  const member: Member = {
    id: raw.id as string,
    email_address: raw.email_address as string,
    status: raw.status as MemberStatus,
    merge_fields: (raw.merge_fields ?? {}) as Record<string, unknown>,
    last_changed: raw.last_changed as string,
    timestamp_opt: (raw.timestamp_opt as string | null | undefined) ?? "",
  };
  // As zod does, a field given (even as undefined) is in the result, one not given is not.
  if (Object.hasOwn(raw, "timestamp_signup")) {
    member.timestamp_signup = raw.timestamp_signup as string | null;
  }
  if (Object.hasOwn(raw, "language")) member.language = raw.language as string | null;
  if (Object.hasOwn(raw, "vip")) member.vip = raw.vip as boolean | null;
  if (Object.hasOwn(raw, "member_rating")) member.member_rating = raw.member_rating as number;
  if (Object.hasOwn(raw, "tags_count")) member.tags_count = raw.tags_count as number | null;
  if (Object.hasOwn(raw, "location")) {
    const location = raw.location as { country_code?: string | null } | null | undefined;
    member.location = location == null ? location : _location(location);
  }
  if (Object.hasOwn(raw, "tags")) {
    const tags = raw.tags as { name: string }[] | null | undefined;
    member.tags = tags == null ? tags : _tags(tags);
  }
  if (Object.hasOwn(raw, "interests")) {
    member.interests = raw.interests as Record<string, boolean> | null | undefined;
  }
  return member;
}
