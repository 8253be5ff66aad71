/**
 * The Mailchimp simulator's list webhooks: registered through the API (`GET/POST
 * /lists/{id}/webhooks`, `PATCH /lists/{id}/webhooks/{webhook_id}`, the URL checked with a GET
 * first, as Mailchimp does) or pointed at a URL directly by a test, and delivered as
 * Mailchimp delivers them: one form-encoded POST per change, with `type`, `fired_at`
 * (`YYYY-MM-DD HH:MM:SS`, UTC) and `data[…]`. Deliveries run in the background; `settle`
 * waits for them, and a failed delivery is counted, not retried.
 *
 * @module
 */
import type { MemberRecord } from "./_member_index.ts";

/** A webhook as the simulated API stores it. */
export interface SimWebhook {
  id: string;
  url: string;
  events: Record<string, boolean>;
  sources: Record<string, boolean>;
  list_id: string;
}

/** Delivery counters. */
export interface SimWebhookStats {
  /** Events POSTed (each URL counts). */
  sent: number;
  /** Deliveries answered with something else than 2xx, or not answered. */
  failed: number;
  /** The last delivered bodies, oldest first (the last 100). */
  bodies: string[];
}

/** Webhooks of every list of one simulator, and their deliveries. */
export class SimWebhooks {
  readonly stats: SimWebhookStats = { sent: 0, failed: 0, bodies: [] };
  readonly #registered = new Map<string, SimWebhook[]>();
  readonly #direct = new Map<string, string[]>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #fetch: typeof globalThis.fetch;

  constructor(fetchFn: typeof globalThis.fetch = globalThis.fetch) {
    this.#fetch = fetchFn;
  }

  /** Sends every event of `listId` to `url` too (every type), besides registered webhooks. */
  sendTo(listId: string, url: string): void {
    this.#direct.set(listId, [...(this.#direct.get(listId) ?? []), url]);
  }

  /** The webhooks registered for a list. */
  list(listId: string): SimWebhook[] {
    return [...(this.#registered.get(listId) ?? [])];
  }

  /**
   * Creates (no `id`) or updates a webhook after checking its URL with a GET that must answer
   * 2xx; resolves with the webhook, or a problem's detail when the URL cannot be validated.
   */
  async save(
    listId: string,
    body: { url?: unknown; events?: unknown; sources?: unknown },
    id?: string,
  ): Promise<SimWebhook | string> {
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
    };
    this.#registered.set(listId, [...all.filter((w) => w.id !== webhook.id), webhook]);
    return webhook;
  }

  /** Delivers one event of `listId` to every URL that wants its type. */
  send(listId: string, type: string, data: Record<string, string>, nowMs: number): void {
    const urls = [
      ...(this.#direct.get(listId) ?? []),
      ...(this.#registered.get(listId) ?? []).filter((w) => w.events[type]).map((w) => w.url),
    ];
    if (urls.length === 0) return;
    const form = new URLSearchParams({ type, fired_at: formatFiredAt(nowMs) });
    for (const [k, v] of Object.entries({ list_id: listId, ...data })) form.set(`data[${k}]`, v);
    const body = form.toString();
    for (const url of urls) {
      this.stats.sent++;
      this.stats.bodies.push(body);
      if (this.stats.bodies.length > 100) this.stats.bodies.shift();
      const delivery = this.#fetch(url, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body,
      }).then(async (answer) => {
        await answer.body?.cancel();
        if (!answer.ok) this.stats.failed++;
      }, () => {
        this.stats.failed++;
      });
      this.#inFlight.add(delivery);
      delivery.finally(() => this.#inFlight.delete(delivery));
    }
  }

  /** The event Mailchimp sends for a member changing from `old` (absent: new) to `now`. */
  changed(listId: string, old: MemberRecord | undefined, now: MemberRecord, nowMs: number): void {
    const data = _memberData(now);
    if (old === undefined || (now.status === "subscribed" && old.status !== "subscribed")) {
      this.send(listId, "subscribe", data, nowMs);
    } else if (now.status === "unsubscribed" && old.status !== "unsubscribed") {
      this.send(listId, "unsubscribe", { ...data, action: "unsub", reason: "manual" }, nowMs);
    } else if (now.status === "cleaned" && old.status !== "cleaned") {
      this.send(listId, "cleaned", { email: now.email, reason: "hard" }, nowMs);
    } else {
      this.send(listId, "profile", data, nowMs);
    }
  }

  /** A member deleted for good: `unsubscribe` with `action=delete`. */
  deleted(listId: string, old: MemberRecord, nowMs: number): void {
    this.send(
      listId,
      "unsubscribe",
      { ..._memberData(old), action: "delete", reason: "manual" },
      nowMs,
    );
  }

  /** An email change: `upemail`. */
  emailChanged(listId: string, old: MemberRecord, now: MemberRecord, nowMs: number): void {
    this.send(listId, "upemail", {
      new_id: now.id,
      new_email: now.email,
      old_email: old.email,
    }, nowMs);
  }

  /** Resolves when every delivery started so far has been answered (or failed). */
  async settle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }
}

/** `fired_at` as Mailchimp writes it: `YYYY-MM-DD HH:MM:SS`, UTC. */
export function formatFiredAt(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19).replace("T", " ");
}

function _memberData(r: MemberRecord): Record<string, string> {
  return {
    id: r.id,
    email: r.email,
    email_type: "html",
    "merges][EMAIL": r.email,
    "merges][FNAME": r.fname,
    "merges][LNAME": r.lname,
  };
}
