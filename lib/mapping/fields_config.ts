/**
 * The `fields` entry of a connection: which Mailchimp member fields go to which Ometria
 * contact fields. Validated with zod when the connections file is read; every key is
 * optional and falls back to {@linkcode DEFAULT_FIELDS}, so an entry names only what it
 * changes. The field names on the Ometria side, and where each was confirmed, are in the
 * README ("Fields").
 *
 * @module
 */
import { z } from "zod";

/**
 * Ometria contact fields (beside `email`, `firstname`, `lastname`, `marketing_optin` and
 * `timestamp_subscribed`, which the sync always sets) that a Mailchimp field may be mapped
 * to. Anything else goes to `properties.<name>`.
 */
export const OMETRIA_CONTACT_FIELDS = [
  "phone_number",
  "date_of_birth",
  "gender",
  "country_id",
  "timestamp_acquired",
  "timestamp_unsubscribed",
  "prefix",
  "middlename",
] as const;

/** One of {@linkcode OMETRIA_CONTACT_FIELDS}. */
export type OmetriaContactField = typeof OMETRIA_CONTACT_FIELDS[number];

/**
 * Where a value goes: an Ometria contact field, `properties.<name>`, or null (not sent).
 */
export type FieldTarget = OmetriaContactField | `properties.${string}` | null;

const _PROPERTY = /^properties\.[A-Za-z0-9_]{1,64}$/;

const propertyTarget = z.string().regex(
  _PROPERTY,
  "must be properties.<name> (letters, digits, '_', at most 64)",
).transform((s) => s as `properties.${string}`);

const fieldTarget = z.union([z.null(), z.enum(OMETRIA_CONTACT_FIELDS), propertyTarget], {
  error: `must be null, properties.<name>, or one of ${OMETRIA_CONTACT_FIELDS.join(", ")}`,
});

/** Schema of a connection's `fields` entry (see the README, "Fields"). */
export const fieldsConfigSchema = z.strictObject({
  /** Merge tag → target; tags not named here follow `other_merge_fields`. */
  merge_fields: z.record(
    z.string().regex(/^[A-Za-z0-9_]{1,50}$/, "must be a merge tag such as PHONE"),
    fieldTarget,
  ).refine(
    (m) => !Object.keys(m).some((t) => t === "FNAME" || t === "LNAME"),
    "FNAME and LNAME always go to firstname and lastname; leave them out",
  ).optional(),
  /** Merge tags not named in `merge_fields`: by type (see README) or not sent. */
  other_merge_fields: z.enum(["properties", "ignore"]).optional(),
  language: fieldTarget.optional(),
  vip: fieldTarget.optional(),
  member_rating: fieldTarget.optional(),
  timestamp_signup: fieldTarget.optional(),
  /** `location.country_code`. */
  country: fieldTarget.optional(),
  /** `last_changed` of an unsubscribed or cleaned member (Mailchimp has no such field). */
  unsubscribed_at: fieldTarget.optional(),
  /** Tag names as a property, or tags mapped to Ometria list ids, or null. */
  tags: z.union([
    z.null(),
    propertyTarget,
    z.strictObject({
      lists: z.record(z.string().min(1), z.string().min(1)).refine(
        (l) => Object.keys(l).length > 0,
        "must map at least one tag name to an Ometria list id",
      ),
    }),
  ], { error: 'must be null, properties.<name>, or {"lists": {"<tag>": "<Ometria list id>"}}' })
    .optional(),
  /** Names of the interests (groups) a member has, as a property, or null. */
  interests: z.union([z.null(), propertyTarget], {
    error: "must be null or properties.<name>",
  }).optional(),
  /**
   * How a field emptied in Mailchimp is sent: `"null"` (default), `"empty"` (`""`), or
   * `"omit"` (left out, so Ometria keeps its old value): see docs/API_NOTES.md.
   */
  cleared: z.enum(["null", "empty", "omit"]).optional(),
});

/** A connection's `fields` entry as written (every key optional). */
export type FieldsConfig = z.infer<typeof fieldsConfigSchema>;

/** The member fields (besides merge fields) a mapping can read. */
export type MemberSource =
  | "language"
  | "vip"
  | "member_rating"
  | "timestamp_signup"
  | "country"
  | "unsubscribed_at";

/** Every {@linkcode MemberSource}, in the order the README lists them. */
export const MEMBER_SOURCES: readonly MemberSource[] = [
  "language",
  "vip",
  "member_rating",
  "timestamp_signup",
  "country",
  "unsubscribed_at",
];

/** A `fields` entry with every key filled in. */
export interface FullFieldsConfig {
  mergeFields: Readonly<Record<string, FieldTarget>>;
  otherMergeFields: "properties" | "ignore";
  member: Readonly<Record<MemberSource, FieldTarget>>;
  tags: `properties.${string}` | { lists: Readonly<Record<string, string>> } | null;
  interests: `properties.${string}` | null;
  cleared: "null" | "empty" | "omit";
}

/**
 * The documented default: every merge tag by its type (a `phone` field to `phone_number`,
 * `GENDER` to `gender`, everything else to `properties.<tag in lower case>`), Ometria's
 * own fields for the signup time, country and unsubscribe time, properties for the rest.
 */
export const DEFAULT_FIELDS: FullFieldsConfig = {
  mergeFields: {},
  otherMergeFields: "properties",
  member: {
    language: "properties.language",
    vip: "properties.vip",
    member_rating: "properties.member_rating",
    timestamp_signup: "timestamp_acquired",
    country: "country_id",
    unsubscribed_at: "timestamp_unsubscribed",
  },
  tags: "properties.mailchimp_tags",
  interests: "properties.mailchimp_interests",
  cleared: "null",
};

/** `fields` as written, completed with {@linkcode DEFAULT_FIELDS}. */
export function fullFieldsConfig(fields: FieldsConfig | undefined): FullFieldsConfig {
  const f = fields ?? {};
  const member = { ...DEFAULT_FIELDS.member };
  for (const source of MEMBER_SOURCES) {
    const target = f[source];
    if (target !== undefined) member[source] = target;
  }
  return {
    mergeFields: f.merge_fields ?? {},
    otherMergeFields: f.other_merge_fields ?? DEFAULT_FIELDS.otherMergeFields,
    member,
    tags: f.tags === undefined ? DEFAULT_FIELDS.tags : f.tags,
    interests: f.interests === undefined ? DEFAULT_FIELDS.interests : f.interests,
    cleared: f.cleared ?? DEFAULT_FIELDS.cleared,
  };
}

/**
 * The `members.*` paths a mapping needs beyond what the sync always reads, for `fields=`:
 * a field nobody maps is not asked for, which keeps pages small.
 */
export function memberFieldsFor(fields: FullFieldsConfig): string[] {
  const out: string[] = [];
  const m = fields.member;
  if (m.language !== null) out.push("members.language");
  if (m.vip !== null) out.push("members.vip");
  if (m.member_rating !== null) out.push("members.member_rating");
  if (m.timestamp_signup !== null) out.push("members.timestamp_signup");
  if (m.country !== null) out.push("members.location.country_code");
  if (fields.tags !== null) out.push("members.tags", "members.tags_count");
  if (fields.interests !== null) out.push("members.interests");
  return out;
}
