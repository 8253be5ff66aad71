/**
 * One Mailchimp list webhook event, read from its form-encoded body and validated with zod.
 * Only what says *which* members to look at is kept: an event's other fields (names, merges)
 * may be stale by the time it arrives, or replayed, so the sync never copies them; it
 * fetches the members named here and pushes what Mailchimp holds now.
 *
 * Members are named by the subscriber hash of their address (the MD5 of the lowercased
 * email), computed here from `data[email]` (`data[old_email]`/`data[new_email]` for
 * `upemail`): `data[id]` and `data[new_id]` are Mailchimp's 10-hex address id
 * (`unique_email_id`), not the hash (docs/API_NOTES.md, "Mailchimp list webhooks").
 *
 * @module
 */
import { z } from "zod";
import { subscriberHash } from "../mailchimp/member.ts";

/**
 * Types of a {@linkcode WebhookEvent}. `campaign` stays for events queued by earlier versions;
 * a `campaign` delivery is now answered and counted without becoming an event.
 */
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
 * Types Mailchimp sends that say nothing the sync acts on: a campaign was sent, or a
 * contact's SMS channel changed ([BETA] in Mailchimp's SDK, `AddWebhook.ts`; their form
 * fields are undocumented).
 */
export const IGNORED_WEBHOOK_TYPES = [
  "campaign",
  "sms_subscribe",
  "sms_unsubscribe",
  "upsms",
  "sms_campaign",
] as const;

/**
 * Why a valid delivery is answered without being acted on, the label it is counted under
 * (`ignored_<kind>`): its type (SMS, campaign); `no_email`, a member event without a usable
 * address (a `profile` of an SMS-only contact); `other_list`, another list's event;
 * `unknown_type`, a type this version does not know, in Mailchimp's envelope; `stale`, a
 * signed delivery outside the signature's time window (see `signature.ts`).
 */
export type IgnoredKind =
  | typeof IGNORED_WEBHOOK_TYPES[number]
  | "no_email"
  | "other_list"
  | "unknown_type"
  | "stale";

/**
 * A webhook event as the sync uses it (a plain object, so it can travel through a Deno KV
 * queue). `memberIds` are the subscriber hashes to fetch and push as they are now; for
 * `upemail` they are the old id (expected gone: opted out) and the new one.
 */
export interface WebhookEvent {
  type: WebhookType;
  /** Mailchimp's `fired_at` read as UTC (its zone is undocumented), epoch ms; null when absent. */
  firedAtMs: number | null;
  /** `fired_at` as sent, part of the de-duplication key. */
  firedAtText: string;
  /** `data[list_id]`, when sent. */
  listId: string | null;
  /** `data[action]` of an unsubscribe: `unsub`, or `delete` (the member was deleted). */
  action: "unsub" | "delete" | null;
  /** Subscriber hashes (32 hex) the event is about, computed from its addresses. */
  memberIds: string[];
}

/** What {@linkcode parseWebhookEvent} made of a body. */
export type ParsedWebhook =
  | { event: WebhookEvent }
  | { ignored: IgnoredKind; type: string; listId: string | null }
  | { problem: string };

const _KNOWN: ReadonlySet<string> = new Set([...WEBHOOK_TYPES, ...IGNORED_WEBHOOK_TYPES]);
const _IGNORED: ReadonlySet<string> = new Set(IGNORED_WEBHOOK_TYPES);

/** `fired_at` as Mailchimp writes it (documented samples: `2009-03-26 21:35:57`). */
const _FIRED_AT = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})$/;

// Every field is read leniently: a delivery Mailchimp really sent must not get a 4xx for a
// value this version did not expect (Mailchimp retries for 75 minutes, then may disable the
// webhook). Only the envelope decides whether a body is a Mailchimp event at all.
const _text = (max: number) => z.string().max(max).optional();
const _formSchema = z.object({
  type: z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, "is not a Mailchimp event type"),
  fired_at: _text(40),
  "data[list_id]": _text(64),
  "data[email]": _text(320),
  "data[merges][EMAIL]": _text(320),
  "data[action]": _text(20),
  "data[old_email]": _text(320),
  "data[new_email]": _text(320),
});

/** `fired_at` is `YYYY-MM-DD HH:MM:SS`, read as UTC. */
function _firedAt(text: string | undefined): number | null {
  const m = _FIRED_AT.exec(text?.trim() ?? "");
  if (!m) return null;
  const ms = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  return Number.isNaN(ms) ? null : ms;
}

/** The subscriber hash of a usable address, else undefined. */
function _hashOf(email: string | undefined): string | undefined {
  const e = email?.trim() ?? "";
  return e.length > 2 && e.includes("@") && !/\s/.test(e) ? subscriberHash(e) : undefined;
}

/**
 * Reads a webhook body (`application/x-www-form-urlencoded`): the event; or that it is a
 * valid delivery the sync does not act on, and why (to answer 2xx and count); or why it is
 * not a Mailchimp event at all, in words for the 400 answer and the log. A type this version
 * does not know counts as Mailchimp's when it comes in Mailchimp's envelope (`fired_at` as
 * Mailchimp writes it and `data[list_id]`). With `listId`, an event naming another list is
 * ignored (`other_list`): a URL reused on a second list is a setup mistake, not a reason for
 * Mailchimp to retry and disable the webhook.
 */
export function parseWebhookEvent(form: URLSearchParams, listId?: string): ParsedWebhook {
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
  const sentList = f["data[list_id]"] ?? null;
  const ignored = (kind: IgnoredKind) => ({ ignored: kind, type: f.type, listId: sentList });
  if (!_KNOWN.has(f.type)) {
    const envelope = _FIRED_AT.test(f.fired_at?.trim() ?? "") && sentList !== null;
    return envelope
      ? ignored("unknown_type")
      : { problem: `type "${f.type}" is not an event Mailchimp sends` };
  }
  if (listId !== undefined && sentList !== null && sentList !== listId) {
    return ignored("other_list");
  }
  if (_IGNORED.has(f.type)) return ignored(f.type as IgnoredKind);
  const memberIds: string[] = [];
  if (f.type === "upemail") {
    for (const email of [f["data[old_email]"], f["data[new_email]"]]) {
      const id = _hashOf(email);
      if (id !== undefined && !memberIds.includes(id)) memberIds.push(id);
    }
  } else {
    const id = _hashOf(f["data[email]"]) ?? _hashOf(f["data[merges][EMAIL]"]);
    if (id !== undefined) memberIds.push(id);
  }
  if (memberIds.length === 0) return ignored("no_email");
  const action = f["data[action]"];
  return {
    event: {
      type: f.type as WebhookType,
      firedAtMs: _firedAt(f.fired_at),
      firedAtText: f.fired_at ?? "",
      listId: sentList,
      action: action === "unsub" || action === "delete" ? action : null,
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
