/**
 * The shape of a Mailchimp list member as the sync uses it, validated with zod at the edge.
 *
 * @module
 */
import { z } from "zod";

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

/** Schema of one member as returned by `GET /lists/{id}/members` (fields the sync asks for). */
export const memberSchema = z.object({
  id: z.string().min(1),
  email_address: z.string(),
  status: z.enum(MEMBER_STATUSES),
  merge_fields: z.record(z.string(), z.unknown()).optional().default({}),
  last_changed: z.string(),
  timestamp_opt: z.string().optional().default(""),
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

/** Schema of a page of `GET /lists/{id}/members`. */
export const membersPageSchema = z.object({
  members: z.array(memberSchema),
  total_items: z.number().int().nonnegative(),
});

/** A validated page of members. */
export type MembersPage = z.infer<typeof membersPageSchema>;
