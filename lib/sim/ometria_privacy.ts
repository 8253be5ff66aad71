/**
 * The Ometria simulator's consent and erasure side (docs/API_NOTES.md, "Consent and
 * erasure"): `GET /v2/unsubscribes` and `/v2/data-deletion-requests`, and the subscription
 * rule they rest on.
 *
 * - **Unsubscribes.** {@linkcode SimOmetriaPrivacy.unsubscribe} plays a contact opting out in
 *   Ometria itself (its preference centre, an app, an email's unsubscribe link or header).
 *   The listing serves these events, documented as `{email_address, profile_id, reason,
 *   timestamp: "2017-05-17 22:08:07+00", type}`, filtered by `since`/`before`/`type`. An
 *   opt-out pushed through the API is never listed ("API unsubscribes are not available
 *   through this endpoint"). Served on the Data API's own per-second limit; an event can be
 *   listed late (`unsubscribesDelayMs`: undocumented, so played).
 * - **Subscription.** Ometria's rule ([FORCE] in the research notes): a listing sent with
 *   `@force_optin: true` decides; otherwise opt-outs win, an Ometria-side unsubscribe among
 *   them, and only a forced listing overrides that. {@linkcode SimOmetriaPrivacy.subscription}
 *   answers what a contact's address is, after that rule.
 * - **Data deletion.** `POST` files a request (`{email, comment}`), `GET` lists them with
 *   `timestamp_completed`, set once `deletionDelayMs` has passed (Ometria: "processed within
 *   14 days"); completing one anonymises every contact with that address. 6 requests a
 *   minute ("GDPR anonymisation API | 6 requests per minute"), beyond which it answers 429.
 *   What a `POST` answers is undocumented: the created object, or `{status, request_id}`
 *   (`deletionAnswer`).
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { Clock } from "../clock/clock.ts";

/** Options of {@linkcode SimOmetriaPrivacy}. */
export interface SimOmetriaPrivacyOptions {
  /**
   * How long after an unsubscribe its event appears in the listing (Ometria does not say
   * whether the listing is immediate). @default {0}
   */
  unsubscribesDelayMs?: number;
  /**
   * Whether listing entries also name the contact listing of the address (`collection`,
   * `contact_id`): undocumented, though Fivetran models more columns than the five shown.
   * @default {false}
   */
  unsubscribesNameListing?: boolean;
  /** How long Ometria takes to complete a deletion request. @default {14 days} */
  deletionDelayMs?: number;
  /**
   * What `POST /v2/data-deletion-requests` answers: the request as the listing shows it
   * (`"object"`), or `{"status": "OK", "request_id"}` like a push (`"status"`): which one is
   * undocumented. @default {"object"}
   */
  deletionAnswer?: "object" | "status";
  /** Most GDPR requests in one clock minute; 0 means unlimited. @default {6} */
  gdprPerMinute?: number;
}

/** The settings {@linkcode SimOmetriaPrivacy.setOptions} changes while serving. */
export type SimOmetriaPrivacySettings = Partial<SimOmetriaPrivacyOptions>;

/** An unsubscribe event as the simulator keeps it. */
interface _Unsubscribe {
  email: string;
  type: string;
  atMs: number;
}

/** A data deletion request as the simulator keeps it. */
export interface SimDeletionRequest {
  id: string;
  /** The address, lowercased (only here, in the simulator, for tests to look at). */
  email: string;
  comment: string | null;
  apiRequestId: string;
  createdAtMs: number;
  completedAtMs: number | null;
}

/** What the consent side needs of the contacts the simulator stores. */
export interface SimContactsAccess {
  /** Every stored contact record (live objects: anonymising changes them in place). */
  contacts(): Iterable<Record<string, unknown>>;
}

const _DAY_MS = 86_400_000;
const _EMAIL_TYPES = new Set(["preferences_centre", "app", "list_unsubscribe", "link_unsubscribe"]);

/** Requests the consent side answered, since start or `resetStats`. */
export interface SimOmetriaPrivacyStats {
  /** `GET /v2/unsubscribes` requests answered (429s of the Data API limit not included). */
  unsubscribesRequests: number;
  /** Requests to `/v2/data-deletion-requests`, 429s included. */
  deletionRequests: number;
  /** Those answered 429 (more than `gdprPerMinute` in a minute). */
  deletion429: number;
}

/** Unsubscribe events, forced listings and deletion requests of one simulated account. */
export class SimOmetriaPrivacy {
  /** Request counters. */
  readonly stats: SimOmetriaPrivacyStats = {
    unsubscribesRequests: 0,
    deletionRequests: 0,
    deletion429: 0,
  };
  #clock: Clock;
  #contacts: SimContactsAccess;
  #settings: Required<SimOmetriaPrivacyOptions>;
  #unsubscribes: _Unsubscribe[] = [];
  /** Addresses opted out in Ometria itself: only a forced listing overrides them. */
  #optedOut = new Set<string>();
  /** The status of the last `@force_optin` listing of an address. */
  #forced = new Map<string, string>();
  #requests: SimDeletionRequest[] = [];
  #minute = Number.NEGATIVE_INFINITY;
  #inMinute = 0;

  constructor(clock: Clock, contacts: SimContactsAccess, options: SimOmetriaPrivacyOptions = {}) {
    this.#clock = clock;
    this.#contacts = contacts;
    this.#settings = {
      unsubscribesDelayMs: 0,
      unsubscribesNameListing: false,
      deletionDelayMs: 14 * _DAY_MS,
      deletionAnswer: "object",
      gdprPerMinute: 6,
    };
    this.setOptions(options);
  }

  /** Changes the settings from the next request on. */
  setOptions(options: SimOmetriaPrivacySettings): void {
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined) Object.assign(this.#settings, { [key]: value });
    }
  }

  /**
   * A contact opts out in Ometria itself (`type`: `preferences_centre`, `app`,
   * `list_unsubscribe`, `link_unsubscribe`, or an SMS stop word), at `atMs` (now by default).
   * Email types opt the address out until a forced listing says otherwise.
   */
  unsubscribe(email: string, options: { type?: string; atMs?: number } = {}): void {
    const type = options.type ?? "preferences_centre";
    const address = email.trim().toLowerCase();
    this.#unsubscribes.push({ email: address, type, atMs: options.atMs ?? this.#clock.now() });
    if (_EMAIL_TYPES.has(type)) this.#optedOut.add(address);
  }

  /**
   * The address's email subscription after Ometria's rule: the last forced listing's status;
   * else opted out when Ometria itself or any listing says so; else opted in when a listing
   * does; undefined when nothing says.
   */
  subscription(email: string): string | undefined {
    const address = email.trim().toLowerCase();
    const forced = this.#forced.get(address);
    if (forced !== undefined) return forced;
    if (this.#optedOut.has(address)) return "EXPLICITLY_OPTEDOUT";
    let optedIn = false;
    for (const c of this.#contacts.contacts()) {
      if (typeof c.email !== "string" || c.email.toLowerCase() !== address) continue;
      if (c.marketing_optin === "EXPLICITLY_OPTEDOUT") return "EXPLICITLY_OPTEDOUT";
      if (c.marketing_optin === "EXPLICITLY_OPTEDIN") optedIn = true;
    }
    return optedIn ? "EXPLICITLY_OPTEDIN" : undefined;
  }

  /** Every deletion request filed, oldest first (with its address: a test's view). */
  deletionRequests(): SimDeletionRequest[] {
    this.#complete();
    return this.#requests.map((r) => ({ ...r }));
  }

  /**
   * A contact listing was stored from a push (`stored`, after merging): a forced one
   * decides the address's status. Pushes never add to the unsubscribes listing.
   */
  sawContact(sent: Record<string, unknown>, stored: Record<string, unknown>): void {
    if (sent["@force_optin"] !== true || typeof stored.email !== "string") return;
    const optin = sent.marketing_optin;
    if (optin === "EXPLICITLY_OPTEDIN" || optin === "EXPLICITLY_OPTEDOUT") {
      this.#forced.set(stored.email.toLowerCase(), optin);
    }
  }

  /** `GET /v2/unsubscribes`: the events in `[since, before)`, of `type` when given. */
  unsubscribesAnswer(req: Request): Response {
    this.stats.unsubscribesRequests++;
    if (req.method !== "GET") return _json(405, { status: "error", message: "Method not allowed" });
    const params = new URL(req.url).searchParams;
    const since = _time(params.get("since"));
    const before = _time(params.get("before"));
    if (since === undefined || before === undefined) {
      return _json(400, {
        status: "error",
        message: "since and before are required, as YYYY-MM-DDTH:I:S in UTC",
      });
    }
    const type = params.get("type");
    const listedBy = this.#clock.now() - this.#settings.unsubscribesDelayMs;
    const events = this.#unsubscribes.filter((u) =>
      u.atMs >= since && u.atMs < before && u.atMs <= listedBy && (type === null || u.type === type)
    );
    return _json(200, events.map((u) => this.#entry(u)));
  }

  /** `/v2/data-deletion-requests`: `POST` files one, `GET` lists them; 6 a minute. */
  async deletionAnswer(req: Request, path: string, requestId: string): Promise<Response> {
    const minute = Math.floor(this.#clock.now() / 60_000);
    if (minute !== this.#minute) [this.#minute, this.#inMinute] = [minute, 0];
    const max = this.#settings.gdprPerMinute;
    this.stats.deletionRequests++;
    if (max > 0 && ++this.#inMinute > max) {
      this.stats.deletion429++;
      await req.body?.cancel();
      const retryAfter = Math.max(1, Math.ceil(((minute + 1) * 60_000 - this.#clock.now()) / 1000));
      return _json(429, { status: "error", message: "Rate limit exceeded" }, {
        "Retry-After": String(retryAfter),
      });
    }
    this.#complete();
    if (req.method === "GET") {
      const id = path.slice("/v2/data-deletion-requests".length).replace(/^\//, "");
      if (id === "") return _json(200, this.#requests.map((r) => _requestJson(r)));
      const one = this.#requests.find((r) => r.id === id);
      return one
        ? _json(200, _requestJson(one))
        : _json(404, { status: "error", message: "Not found" });
    }
    if (req.method !== "POST" || path !== "/v2/data-deletion-requests") {
      await req.body?.cancel();
      return _json(405, { status: "error", message: "Method not allowed" });
    }
    let body: unknown;
    try {
      body = await req.json();
    } catch {
      return _json(400, { status: "error", message: "Body is not valid JSON" });
    }
    const b = typeof body === "object" && body !== null ? body as Record<string, unknown> : {};
    if (typeof b.email !== "string" || !b.email.includes("@")) {
      return _json(400, { status: "error", message: "email is required" });
    }
    const request: SimDeletionRequest = {
      id: crypto.randomUUID(),
      email: b.email.trim().toLowerCase(),
      comment: typeof b.comment === "string" ? b.comment : null,
      apiRequestId: requestId,
      createdAtMs: this.#clock.now(),
      completedAtMs: null,
    };
    this.#requests.push(request);
    return this.#settings.deletionAnswer === "object"
      ? _json(201, _requestJson(request))
      : _json(202, { status: "OK", request_id: requestId });
  }

  /** Completes the requests whose time has come, anonymising their contacts. */
  #complete(): void {
    const now = this.#clock.now();
    for (const r of this.#requests) {
      if (r.completedAtMs !== null || now - r.createdAtMs < this.#settings.deletionDelayMs) {
        continue;
      }
      r.completedAtMs = now;
      const anonymous = _hashedEmail(r.email);
      for (const c of this.#contacts.contacts()) {
        if (typeof c.email !== "string" || c.email.toLowerCase() !== r.email) continue;
        c.email = anonymous;
        c.firstname = "";
        c.lastname = "";
        delete c.phone_number;
        delete c.properties;
      }
    }
  }

  #entry(u: _Unsubscribe): Record<string, unknown> {
    const entry: Record<string, unknown> = {
      email_address: u.email,
      profile_id: _md5(u.email).slice(0, 16),
      reason: null,
      timestamp: _ometriaTime(u.atMs),
      type: u.type,
    };
    if (this.#settings.unsubscribesNameListing) {
      for (const c of this.#contacts.contacts()) {
        if (typeof c.email === "string" && c.email.toLowerCase() === u.email) {
          entry.collection = c["@collection"];
          entry.contact_id = c.id;
          break;
        }
      }
    }
    return entry;
  }
}

/** The request as Ometria's reference shows it (`timestamp_completed` null while open). */
function _requestJson(r: SimDeletionRequest): Record<string, unknown> {
  return {
    id: r.id,
    action: "anonymise",
    comment: r.comment,
    identities: [{ hashed_email: _hashedEmail(r.email) }],
    source: { api_request_id: r.apiRequestId, origin: "api", user: null },
    summary: r.completedAtMs === null ? null : "1 contact record anonymised",
    timestamp_created: _ometriaTime(r.createdAtMs),
    timestamp_completed: r.completedAtMs === null ? null : _ometriaTime(r.completedAtMs),
  };
}

function _hashedEmail(email: string): string {
  return `${_md5(email)}@anonymous.ometria`;
}

function _md5(text: string): string {
  return createHash("md5").update(text).digest("hex");
}

/** `2017-05-17 22:08:07+00`, as the reference's examples write times. */
function _ometriaTime(ms: number): string {
  return `${
    new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19).replace("T", " ")
  }+00`;
}

/** A `since`/`before` value (`YYYY-MM-DDTHH:MM:SS`, UTC), epoch ms. */
function _time(text: string | null): number | undefined {
  if (text === null || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/.test(text)) return undefined;
  const ms = Date.parse(`${text}Z`);
  return Number.isNaN(ms) ? undefined : ms;
}

function _json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}
