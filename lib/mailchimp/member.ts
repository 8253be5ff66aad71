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
  tags: z.array(z.object({ name: z.string() })).nullable().optional(),
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
 */
export const membersPageSchema = z.object({
  members: z.array(z.unknown()),
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

/** Validates one member of an answer: the member, or why it cannot be used. */
export function parseMember(raw: unknown): { member: Member } | { invalid: InvalidMember } {
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
