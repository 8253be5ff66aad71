/**
 * One Mailchimp list webhook event, read from its form-encoded body and validated with zod.
 * Only what says *which* members to look at is kept: an event's other fields (names, merges)
 * may be stale by the time it arrives, or replayed, so the sync never copies them; it
 * fetches the members named here and pushes what Mailchimp holds now.
 *
 * @module
 */
import { z } from "zod";
import { subscriberHash } from "../mailchimp/member.ts";

/** Event types Mailchimp sends for a list. */
export const WEBHOOK_TYPES = [
  "subscribe",
  "unsubscribe",
  "profile",
  "upemail",
  "cleaned",
  "campaign",
] as const;

/** One event type. */
export type WebhookType = typeof WEBHOOK_TYPES[number];

/**
 * A webhook event as the sync uses it (a plain object, so it can travel through a Deno KV
 * queue). `memberIds` are the subscriber hashes to fetch and push as they are now; for
 * `upemail` they are the old id (expected gone: opted out) and the new one.
 */
export interface WebhookEvent {
  type: WebhookType;
  /** Mailchimp's `fired_at` (its clock, UTC), epoch ms; null when absent or unreadable. */
  firedAtMs: number | null;
  /** `fired_at` as sent, part of the de-duplication key. */
  firedAtText: string;
  /** `data[list_id]`, when sent. */
  listId: string | null;
  /** `data[action]` of an unsubscribe: `unsub`, or `delete` (the member was deleted). */
  action: "unsub" | "delete" | null;
  /** Subscriber hashes the event is about (empty for `campaign`). */
  memberIds: string[];
}

const _HASH = /^[0-9a-f]{32}$/;
const _hash = z.string().trim().toLowerCase().regex(_HASH, "is not a subscriber hash");
const _email = z.string().trim().refine((e) => e.includes("@"), "is not an email address");

const _formSchema = z.object({
  type: z.enum(WEBHOOK_TYPES, { error: `must be one of ${WEBHOOK_TYPES.join(", ")}` }),
  fired_at: z.string().max(40).optional(),
  "data[list_id]": z.string().max(64).optional(),
  "data[id]": _hash.optional(),
  "data[email]": _email.optional(),
  "data[action]": z.enum(["unsub", "delete"]).optional(),
  "data[old_email]": _email.optional(),
  "data[new_email]": _email.optional(),
  "data[new_id]": _hash.optional(),
});

/** `fired_at` is `YYYY-MM-DD HH:MM:SS` in UTC. */
function _firedAt(text: string | undefined): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})$/.exec(text?.trim() ?? "");
  if (!m) return null;
  const ms = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * Reads a webhook body (`application/x-www-form-urlencoded`): the event, or why it cannot be
 * used, in words for the 400 answer and the log. Every type but `campaign` must name a member
 * (`data[id]` or `data[email]`); `upemail` must name the old address and the new id or
 * address.
 */
export function parseWebhookEvent(
  form: URLSearchParams,
): { event: WebhookEvent } | { problem: string } {
  const raw: Record<string, string> = {};
  for (const [key, value] of form) raw[key] = value;
  const parsed = _formSchema.safeParse(raw);
  if (!parsed.success) {
    return {
      problem: parsed.error.issues.slice(0, 3).map((i) =>
        `${i.path.join(".") || "body"} ${i.message}`
      ).join("; "),
    };
  }
  const f = parsed.data;
  const memberIds: string[] = [];
  if (f.type === "upemail") {
    const newId = f["data[new_id]"] ??
      (f["data[new_email]"] ? subscriberHash(f["data[new_email]"]) : undefined);
    if (!f["data[old_email]"] || !newId) {
      return { problem: "upemail needs data[old_email] and data[new_id] (or data[new_email])" };
    }
    memberIds.push(subscriberHash(f["data[old_email]"]));
    if (!memberIds.includes(newId)) memberIds.push(newId);
  } else if (f.type !== "campaign") {
    const id = f["data[id]"] ?? (f["data[email]"] ? subscriberHash(f["data[email]"]) : undefined);
    if (!id) return { problem: `${f.type} needs data[id] or data[email]` };
    memberIds.push(id);
  }
  return {
    event: {
      type: f.type,
      firedAtMs: _firedAt(f.fired_at),
      firedAtText: f.fired_at ?? "",
      listId: f["data[list_id]"] ?? null,
      action: f["data[action]"] ?? null,
      memberIds,
    },
  };
}

/**
 * The de-duplication key of an event of one connection: Mailchimp delivers at least once and
 * retries a delivery for 75 minutes, so a retry carries the same type, members, action and
 * `fired_at`. Two different changes of one member within one second share a key, which is
 * harmless: both fetch the member as it is now.
 */
export function webhookEventKey(connectionId: string, event: WebhookEvent): string {
  return [
    connectionId,
    event.type,
    event.action ?? "",
    event.memberIds.join("+"),
    event.firedAtText,
  ]
    .join("|");
}
