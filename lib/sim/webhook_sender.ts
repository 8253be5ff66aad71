/**
 * The Mailchimp simulator's list webhooks: registered through the API (`GET/POST
 * /lists/{id}/webhooks`, `PATCH /lists/{id}/webhooks/{webhook_id}`, the URL checked with a GET
 * first, as Mailchimp does) or pointed at a URL directly by a test, and delivered as
 * Mailchimp delivers them (docs/API_NOTES.md, "Mailchimp list webhooks"): one form-encoded
 * POST per change, with `type`, `fired_at` (`YYYY-MM-DD HH:MM:SS`, UTC) and `data[…]`, where
 * `data[id]` and `data[new_id]` are the 10-hex address id, not the subscriber hash
 * (documented samples `data[id]=8a25ff1d98`, `data[new_id]=51da8c3259`). SMS and campaign
 * events go to webhooks that ask for them. A webhook created through the API is signed
 * (`X-Mailchimp-Signature`, HMAC-SHA256 over `"{t}.{body}"`) and its secret returned once.
 * Deliveries run in the background; `settle` waits for them. A failed delivery is counted
 * and kept: `retryFailed` sends it again, signed afresh or with its first signature
 * (`retrySignatures`), since Mailchimp does not document which it does.
 *
 * @module
 */
import { createHmac } from "node:crypto";
import type { MemberRecord } from "./_member_index.ts";
import { uniqueEmailIdOf } from "./member_data.ts";

/** A webhook as the simulated API stores and lists it (never with its secret). */
export interface SimWebhook {
  id: string;
  url: string;
  events: Record<string, boolean>;
  sources: Record<string, boolean>;
  list_id: string;
  /**
   * Whether deliveries are HMAC-signed (Mailchimp's SDK, `ListWebhooks.signing_enabled`:
   * "Whether outbound deliveries are HMAC-signed.").
   */
  signing_enabled: boolean;
}

/** Delivery counters. */
export interface SimWebhookStats {
  /** Events POSTed (each URL counts, retries too). */
  sent: number;
  /** Deliveries answered with something else than 2xx, or not answered. */
  failed: number;
  /** The last delivered bodies, oldest first (the last 100). */
  bodies: string[];
  /** The `X-Mailchimp-Signature` of each of `bodies` (null when unsigned). */
  signatures: (string | null)[];
}

/**
 * Who made a change, as a webhook's `sources` tell them apart (Mailchimp's SDK,
 * `AddWebhook.sources`): the member (`user`), an admin in the app (`admin`), an API client
 * (`api`). A webhook whose source is off is not told of the change.
 */
export type WebhookSource = "user" | "admin" | "api";

/** The SMS event types Mailchimp's SDK lists ([BETA]; their fields are undocumented). */
export type SmsEventType = "sms_subscribe" | "sms_unsubscribe" | "upsms" | "sms_campaign";

/** Options of {@linkcode SimWebhooks}. */
export interface SimWebhooksOptions {
  /** @default {globalThis.fetch} */
  fetch?: typeof globalThis.fetch;
  /**
   * Whether webhooks created through the API are signed (`"on"`, what the current API
   * does) or not (`"off"`: a webhook created before signing existed, which DOCS-SKILL says
   * sends unsigned deliveries and never gets a secret).
   * @default {"on"}
   */
  signing?: "on" | "off";
  /**
   * How `retryFailed` signs a delivery again: `"fresh"`, a new `t` and signature per attempt;
   * `"original"`, the first attempt's (then a strict 5-minute window refuses late retries).
   * @default {"fresh"}
   */
  retrySignatures?: "fresh" | "original";
}

interface _Target {
  url: string;
  secret: string | undefined;
  /** The sources this target is told of; every one when absent. */
  sources?: Record<string, boolean> | undefined;
}

interface _Failed extends _Target {
  body: string;
  t: number;
}

/** Webhooks of every list of one simulator, and their deliveries. */
export class SimWebhooks {
  readonly stats: SimWebhookStats = { sent: 0, failed: 0, bodies: [], signatures: [] };
  readonly #registered = new Map<string, SimWebhook[]>();
  /** Signing secrets by webhook id (returned once at creation, never listed). */
  readonly #secrets = new Map<string, string>();
  readonly #direct = new Map<string, _Target[]>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #failed: _Failed[] = [];
  readonly #fetch: typeof globalThis.fetch;
  #signing: "on" | "off";
  #retrySignatures: "fresh" | "original";

  constructor(options: SimWebhooksOptions = {}) {
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#signing = options.signing ?? "on";
    this.#retrySignatures = options.retrySignatures ?? "fresh";
  }

  /** Changes `signing` (for webhooks created from now on) or `retrySignatures`. */
  setOptions(options: Pick<SimWebhooksOptions, "signing" | "retrySignatures">): void {
    if (options.signing !== undefined) this.#signing = options.signing;
    if (options.retrySignatures !== undefined) this.#retrySignatures = options.retrySignatures;
  }

  /**
   * Sends every event of `listId` to `url` too (every type), besides registered webhooks,
   * signed with `signingSecret` when one is given, and from the `sources` not switched off
   * (every one by default).
   */
  sendTo(
    listId: string,
    url: string,
    options: { signingSecret?: string; sources?: Record<string, boolean> } = {},
  ): void {
    const target = { url, secret: options.signingSecret, sources: options.sources };
    this.#direct.set(listId, [...(this.#direct.get(listId) ?? []), target]);
  }

  /** The webhooks registered for a list. */
  list(listId: string): SimWebhook[] {
    return [...(this.#registered.get(listId) ?? [])];
  }

  /**
   * Creates (no `id`) or updates a webhook after checking its URL with a GET that must answer
   * 2xx; resolves with the webhook and, on creation of a signed one, its signing secret (the
   * only time it is given, as `CreateWebhookListsResponse.signingSecret` says: "Returned
   * exactly once at creation"), or a problem's detail when the URL cannot be validated.
   */
  async save(
    listId: string,
    body: { url?: unknown; events?: unknown; sources?: unknown },
    id?: string,
  ): Promise<{ webhook: SimWebhook; signingSecret?: string } | string> {
    const all = this.#registered.get(listId) ?? [];
    const old = id === undefined ? undefined : all.find((w) => w.id === id);
    if (id !== undefined && old === undefined) return "not found";
    const url = typeof body.url === "string" ? body.url : old?.url;
    if (url === undefined) return "url is required";
    try {
      const answer = await this.#fetch(url, { method: "GET" });
      await answer.body?.cancel();
      if (!answer.ok) return `The resource submitted could not be validated (GET ${answer.status})`;
    } catch {
      return "The resource submitted could not be validated (no answer)";
    }
    const flags = (v: unknown, fallback: Record<string, boolean>) =>
      typeof v === "object" && v !== null
        ? { ...fallback, ...(v as Record<string, boolean>) }
        : fallback;
    const webhook: SimWebhook = {
      id: old?.id ?? crypto.randomUUID().replaceAll("-", "").slice(0, 10),
      url,
      events: flags(body.events, old?.events ?? {}),
      sources: flags(body.sources, old?.sources ?? {}),
      list_id: listId,
      signing_enabled: old?.signing_enabled ?? this.#signing === "on",
    };
    this.#registered.set(listId, [...all.filter((w) => w.id !== webhook.id), webhook]);
    if (old !== undefined || !webhook.signing_enabled) return { webhook };
    const signingSecret = crypto.randomUUID().replaceAll("-", "");
    this.#secrets.set(webhook.id, signingSecret);
    return { webhook, signingSecret };
  }

  /** Deletes a webhook (`DELETE /lists/{id}/webhooks/{webhook_id}`); false when unknown. */
  delete(listId: string, id: string): boolean {
    const all = this.#registered.get(listId) ?? [];
    if (!all.some((w) => w.id === id)) return false;
    this.#registered.set(listId, all.filter((w) => w.id !== id));
    this.#secrets.delete(id);
    return true;
  }

  /**
   * Delivers one event of `listId` to every URL that wants its type and its `source` (a
   * source a webhook does not name counts as on: what an omitted one means is undocumented).
   */
  send(
    listId: string,
    type: string,
    data: Record<string, string>,
    nowMs: number,
    source: WebhookSource = "admin",
  ): void {
    const targets: _Target[] = [
      ...(this.#direct.get(listId) ?? []),
      ...(this.#registered.get(listId) ?? []).filter((w) => w.events[type]).map((w) => ({
        url: w.url,
        secret: w.signing_enabled ? this.#secrets.get(w.id) : undefined,
        sources: w.sources,
      })),
    ].filter((t) => t.sources?.[source] !== false);
    if (targets.length === 0) return;
    const form = new URLSearchParams({ type, fired_at: formatFiredAt(nowMs) });
    for (const [k, v] of Object.entries({ ...data, list_id: listId })) form.set(`data[${k}]`, v);
    const body = form.toString();
    for (const target of targets) this.#deliver({ ...target, body, t: Math.floor(nowMs / 1000) });
  }

  /**
   * Sends every failed delivery again at `nowMs`, as Mailchimp's retries do ("at increasing
   * intervals over the course of 75 minutes"); one that fails again stays for the next call.
   */
  retryFailed(nowMs: number): void {
    const failed = this.#failed.splice(0);
    for (const f of failed) {
      this.#deliver(this.#retrySignatures === "fresh" ? { ...f, t: Math.floor(nowMs / 1000) } : f);
    }
  }

  /** Failed deliveries waiting for `retryFailed`. */
  get pendingRetries(): number {
    return this.#failed.length;
  }

  /**
   * The event Mailchimp sends for a member changing from `old` (absent: new) to `now`, made
   * by `source`.
   */
  changed(
    listId: string,
    old: MemberRecord | undefined,
    now: MemberRecord,
    nowMs: number,
    source?: WebhookSource,
  ): void {
    const data = _memberData(now);
    if (old === undefined || (now.status === "subscribed" && old.status !== "subscribed")) {
      this.send(listId, "subscribe", data, nowMs, source);
    } else if (now.status === "unsubscribed" && old.status !== "unsubscribed") {
      const unsub = { action: "unsub", reason: "manual", ...data };
      this.send(listId, "unsubscribe", unsub, nowMs, source);
    } else if (now.status === "cleaned" && old.status !== "cleaned") {
      // The legacy sample: no data[id], a campaign id and "hard" (or "abuse").
      this.send(
        listId,
        "cleaned",
        {
          campaign_id: "4fjk2ma9xd",
          reason: "hard",
          email: now.email,
        },
        nowMs,
        source,
      );
    } else {
      this.send(listId, "profile", data, nowMs, source);
    }
  }

  /** A member deleted for good: `unsubscribe` with `action=delete`, made by `source`. */
  deleted(listId: string, old: MemberRecord, nowMs: number, source?: WebhookSource): void {
    this.send(
      listId,
      "unsubscribe",
      { action: "delete", reason: "manual", ..._memberData(old) },
      nowMs,
      source,
    );
  }

  /** An email change: `upemail`, with no `data[id]` and the new address's 10-hex id. */
  emailChanged(listId: string, old: MemberRecord, now: MemberRecord, nowMs: number): void {
    this.send(listId, "upemail", {
      new_id: uniqueEmailIdOf(now.id),
      new_email: now.email,
      old_email: old.email,
    }, nowMs);
  }

  /**
   * An SMS event of a contact with phone `phone`, or the `profile` of an SMS-only contact
   * (`type: "profile"`: no email). Their fields are not documented; this is the plausible
   * shape (docs/API_NOTES.md): the usual envelope, a phone, an empty email.
   */
  sms(listId: string, type: SmsEventType | "profile", phone: string, nowMs: number): void {
    const id = [...phone].reduce((h, c) => (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0, 7);
    const data: Record<string, string> = {
      id: id.toString(16).padStart(10, "0").slice(-10),
      sms_phone_number: phone,
    };
    if (type === "profile") Object.assign(data, { email: "", "merges][EMAIL": "" });
    this.send(listId, type, data, nowMs);
  }

  /** A campaign sent to the list: `campaign`, `data[id]` the campaign's (legacy sample). */
  campaign(listId: string, subject: string, nowMs: number): void {
    this.send(listId, "campaign", {
      id: "5aa2102003",
      subject,
      status: "sent",
      reason: "",
    }, nowMs);
  }

  /** Resolves when every delivery started so far has been answered (or failed). */
  async settle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  #deliver(d: _Failed): void {
    const headers: Record<string, string> = {
      "content-type": "application/x-www-form-urlencoded",
      "user-agent": "MailChimp.com",
    };
    let signature: string | null = null;
    if (d.secret !== undefined) {
      // Written out from Mailchimp's guide rather than shared with lib/webhooks, so that the
      // receiver is checked against the documented recipe, not against itself.
      const hex = createHmac("sha256", d.secret).update(`${d.t}.${d.body}`).digest("hex");
      signature = `t=${d.t},v1=${hex}`;
      headers["x-mailchimp-signature"] = signature;
    }
    this.stats.sent++;
    this.stats.bodies.push(d.body);
    this.stats.signatures.push(signature);
    if (this.stats.bodies.length > 100) {
      this.stats.bodies.shift();
      this.stats.signatures.shift();
    }
    const failed = () => {
      this.stats.failed++;
      this.#failed.push(d);
    };
    const delivery = this.#fetch(d.url, { method: "POST", headers, body: d.body }).then(
      async (answer) => {
        await answer.body?.cancel();
        if (!answer.ok) failed();
      },
      failed,
    );
    this.#inFlight.add(delivery);
    delivery.finally(() => this.#inFlight.delete(delivery));
  }
}

/** `fired_at` as Mailchimp writes it: `YYYY-MM-DD HH:MM:SS`, UTC. */
export function formatFiredAt(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19).replace("T", " ");
}

/**
 * A member's fields as the documented `subscribe`/`profile` samples carry them: the 10-hex
 * `data[id]`, the address, its merges.
 */
function _memberData(r: MemberRecord): Record<string, string> {
  return {
    id: uniqueEmailIdOf(r.id),
    email: r.email,
    email_type: "html",
    "merges][EMAIL": r.email,
    "merges][FNAME": r.fname,
    "merges][LNAME": r.lname,
    ip_opt: "10.20.10.30",
  };
}
