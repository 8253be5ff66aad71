/**
 * The Mailchimp Marketing API v3 client: Basic auth, members paging parameters, a shared
 * per-key connection limit, retries of transient failures, problem+json errors and zod
 * validation of every answer.
 *
 * @module
 */
import { z } from "zod";
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { DEFAULT_MAILCHIMP_TIMEOUT_SECONDS } from "../config/defaults.ts";
import { mailchimpBaseUrlFor } from "./mailchimp_url.ts";
import type { ConcurrencyLimiter } from "../http/concurrency_limiter.ts";
import {
  type ApiAnswer,
  type ApiErrorAnswer,
  apiRequest,
  type ApiRequestEvent,
  type ApiSettings,
} from "../http/api_request.ts";
import { bodySnippet, isRetryableStatus, parseJson } from "../http/request_json.ts";
import type { RetryPolicy } from "../http/retry.ts";
import { ThrottleLog } from "../http/throttle_log.ts";
import { quietLogger } from "../log/logging.ts";
import { MailchimpError } from "./errors.ts";
import {
  type InvalidMember,
  type Member,
  MEMBER_FIELDS,
  membersPageSchema,
  type MemberStatus,
  parseMember,
  parseMemberInto,
} from "./member.ts";
import { formatMailchimpTime, parseMailchimpTime } from "./time.ts";
import type { InterestDefinition, MergeFieldDefinition } from "./list_definitions.ts";

/**
 * The API base of a key's account, `https://{dc}.api.mailchimp.com/3.0`, with `dc` the key's
 * suffix after its last `-` (`…-us9` → `us9`), else `dataCenter`. Throws a `TypeError` when
 * neither names a data center.
 */
export function mailchimpBaseUrl(apiKey: string, dataCenter?: string): string {
  const url = mailchimpBaseUrlFor(apiKey, dataCenter);
  if (url === undefined) {
    throw new TypeError(
      "Cannot tell the Mailchimp data center: the API key has no '-<dc>' suffix (like '-us9') " +
        `and no data center was given${
          dataCenter === undefined ? "" : ` (got ${JSON.stringify(dataCenter)})`
        }`,
    );
  }
  return url;
}

/** One HTTP exchange with Mailchimp, for metrics; reported after every attempt. */
export type MailchimpRequestEvent = ApiRequestEvent;

/** Options of {@linkcode MailchimpClient}. */
export interface MailchimpClientOptions {
  /** The API key (sent only in the `Authorization` header). */
  apiKey: string;
  /** API base including `/3.0`, e.g. from {@linkcode mailchimpBaseUrl} or a simulator. */
  baseUrl: string;
  /** @default {globalThis.fetch} */
  fetch?: typeof globalThis.fetch;
  /** Time of timeouts, backoff and durations. */
  clock: Clock;
  /** Where retries are logged. @default {quietLogger()} */
  logger?: Logger;
  /**
   * The key's shared connection limit (see `MailchimpLimiters`): every attempt holds a slot
   * while in flight, never while backing off.
   */
  limiter: ConcurrencyLimiter;
  /** Retry tuning (attempts, budget, delays, jitter, `onFailedAttempt`). */
  retry?: RetryPolicy;
  /**
   * The deadline of the run in progress (clock time), read at each request: a 429 is
   * retried until then, and one whose wait would end after it fails the request at once.
   * @default {() => undefined} (429s bounded by the retry budget)
   */
  deadline?: () => number | undefined;
  /**
   * Per-attempt limit for the whole answer, in milliseconds. Mailchimp itself gives up at
   * 120 s, but a page of at most 1000 members restricted with `fields` comes back in
   * seconds; 30 s is half the default retry budget, so a stalled attempt still gets a retry.
   * @default {30_000}
   */
  timeoutMs?: number;
  /** Called after every attempt (metrics). */
  onRequest?: (event: MailchimpRequestEvent) => void;
  /**
   * Where the user set the key, named in messages about it (never the key itself).
   * @default {"MAILCHIMP_API_KEY"}
   */
  keyName?: string;
  /**
   * Member fields to read beyond what the sync always reads (`members.tags`, …): what the
   * connection's field mapping needs, so that `fields=` asks for nothing else.
   * @default {[]}
   */
  memberFields?: readonly string[];
}

/** List details from `GET /lists/{id}`. */
export interface MailchimpList {
  /** List id. */
  id: string;
  /** List name. */
  name: string;
  /** Subscribed members. */
  member_count: number;
  /** Unsubscribed members. */
  unsubscribe_count: number;
  /** Cleaned members. */
  cleaned_count: number;
}

/** Query of {@linkcode MailchimpClient.getMembers}. */
export interface MembersQuery {
  /** Page size, 1 to 1000. */
  count: number;
  /** Members to skip. @default {0} */
  offset?: number;
  /** `since_last_changed`, epoch ms (sent as UTC whole seconds). */
  sinceMs?: number;
  /** `before_last_changed`, epoch ms (sent as UTC whole seconds). */
  beforeMs?: number;
  /** Only members with this status. */
  status?: MemberStatus;
  /** Sort field. */
  sortField?: "last_changed";
  /** Sort direction. */
  sortDir?: "ASC" | "DESC";
  /** Ask only for `total_items` (no members): a cheap count. */
  fieldsOnlyTotal?: boolean;
}

/** A page of members. */
export interface MembersResult {
  /** The members of this page that are valid, in the page's order. */
  members: Member[];
  /** The members of this page Mailchimp served malformed (to quarantine). */
  invalid: InvalidMember[];
  /** Members in the page, valid or not (a full page has `count`). */
  size: number;
  /** Members matching the query in all pages. */
  totalItems: number;
  /** Mailchimp's clock from the `Date` header, epoch ms; undefined when absent. */
  serverTimeMs: number | undefined;
}

/** One member of {@linkcode MemberStampsResult}: where it stands in a listing, nothing more. */
export interface MemberStamp {
  /** The subscriber hash; null when the answer's was missing or not a string. */
  id: string | null;
  /** `last_changed` in epoch ms; undefined when missing or unreadable. */
  lastChangedMs: number | undefined;
}

/** A page of {@linkcode MailchimpClient.getMemberStamps}. */
export interface MemberStampsResult {
  /** Each member's id and `last_changed`, in the page's order. */
  stamps: MemberStamp[];
  /** Members in the page (a full page has `count`). */
  size: number;
  /** Members matching the query in all pages (a hint). */
  totalItems: number;
  /** Mailchimp's clock from the `Date` header, epoch ms; undefined when absent. */
  serverTimeMs: number | undefined;
}

/**
 * One member looked up by its subscriber hash, with Mailchimp's clock at the answer (what
 * tells a newer read from an older one, see docs/ARCHITECTURE.md): the member as it is now,
 * served malformed, or `gone` (404: deleted permanently, or re-keyed by an email change).
 */
export type MemberLookup =
  & ({ member: Member } | { invalid: InvalidMember } | { gone: true })
  & { serverTimeMs: number | undefined };

const _MAX_COUNT = 1000;

const _pingSchema = z.object({ health_status: z.string() });

const _listSchema = z.object({
  id: z.string(),
  name: z.string(),
  stats: z.object({
    member_count: z.number(),
    unsubscribe_count: z.number(),
    cleaned_count: z.number(),
  }),
});

const _totalSchema = z.object({ total_items: z.number().int().nonnegative() });

// Members are left unparsed (only `id` is read): a million ids make a lot of garbage otherwise.
const _idsSchema = z.object({
  members: z.array(z.unknown()),
  total_items: z.number().int().nonnegative(),
});

const _mergeFieldsSchema = z.object({
  merge_fields: z.array(z.object({
    tag: z.string(),
    type: z.string(),
    name: z.string(),
    // Only the formats are read; a field whose options are unusual keeps its other facts.
    options: z.object({
      date_format: z.string().optional().catch(undefined),
      phone_format: z.string().optional().catch(undefined),
    }).nullable().optional().catch(undefined),
  })),
  total_items: z.number().int().nonnegative(),
});

const _memberTagsSchema = z.object({
  tags: z.array(z.object({ name: z.string() })),
  total_items: z.number().int().nonnegative(),
});

const _categoriesSchema = z.object({
  categories: z.array(z.object({ id: z.string(), title: z.string() })),
  total_items: z.number().int().nonnegative(),
});

const _interestsSchema = z.object({
  interests: z.array(z.object({ id: z.string(), name: z.string() })),
  total_items: z.number().int().nonnegative(),
});

const _problemSchema = z.object({
  title: z.string().optional(),
  detail: z.string().optional(),
});

const _webhookSchema = z.object({
  id: z.string(),
  url: z.string(),
  events: z.record(z.string(), z.boolean()).default({}),
  sources: z.record(z.string(), z.boolean()).default({}),
  // Absent on accounts that predate signing: unknown, not false.
  signing_enabled: z.boolean().optional(),
});

const _webhooksSchema = z.object({ webhooks: z.array(_webhookSchema) });

// Only the create answer carries the secret (docs/API_NOTES.md, "Signed deliveries").
const _createdWebhookSchema = _webhookSchema.extend({
  signing_secret: z.string().min(1).nullable().optional(),
});

/** Options of the member writes ({@linkcode MailchimpClient.unsubscribeMember}, …). */
export interface MemberWriteOptions {
  /** Aborting stops the write and its retries. */
  signal?: AbortSignal | undefined;
  /**
   * Called before every attempt; a throw stops the write: the connection's writer checks its
   * lease there, so no write goes out for a connection this process may no longer write.
   */
  beforeAttempt?: (() => void) | undefined;
}

/** A list webhook as Mailchimp describes it (`/lists/{id}/webhooks`). */
export type MailchimpWebhook = z.infer<typeof _webhookSchema>;

/** The webhook as saved, and its signing secret when Mailchimp just created a signed one. */
export interface SavedWebhook {
  webhook: MailchimpWebhook;
  /** Returned exactly once, at creation: whoever registers must hand it on or lose it. */
  signingSecret?: string;
}

/** What {@linkcode MailchimpClient.saveWebhook} sends: a webhook without its id. */
export type WebhookSettings = Pick<MailchimpWebhook, "url" | "events" | "sources">;

/**
 * Talks to one Mailchimp account with one API key. Every attempt goes through the key's
 * shared {@linkcode ConcurrencyLimiter}; network errors, timeouts, 408, 5xx and answers that
 * are not JSON are retried, a bare 403 (Mailchimp's edge) once, and a 429 until the run's
 * deadline while the limiter lets fewer requests in; other errors and malformed answers
 * throw a {@linkcode MailchimpError} at once. Giving up on retries throws a `RetryError` whose
 * `cause` is the last `MailchimpError`.
 */
export class MailchimpClient {
  #api: ApiSettings;
  #limiter: ConcurrencyLimiter;
  #authorization: string;
  #keyName: string;
  #memberFields: readonly string[];

  constructor(options: MailchimpClientOptions) {
    if (!options.apiKey) throw new TypeError("Cannot create a Mailchimp client without an API key");
    const timeoutMs = options.timeoutMs ?? DEFAULT_MAILCHIMP_TIMEOUT_SECONDS * 1000;
    if (!(timeoutMs > 0)) {
      throw new RangeError(
        `Cannot create a Mailchimp client as 'timeoutMs' must be > 0: current value ${timeoutMs}`,
      );
    }
    this.#authorization = `Basic ${_base64(`anystring:${options.apiKey}`)}`;
    this.#keyName = options.keyName ?? "MAILCHIMP_API_KEY";
    this.#memberFields = [...MEMBER_FIELDS, ...(options.memberFields ?? [])];
    const { limiter } = options;
    this.#limiter = limiter;
    this.#api = {
      api: "Mailchimp",
      baseUrl: options.baseUrl.replace(/\/+$/, ""),
      fetch: options.fetch ?? globalThis.fetch,
      clock: options.clock,
      logger: options.logger ?? quietLogger(),
      timeoutMs,
      retry: options.retry ?? {},
      // The slot is held while a request is in flight, never while backing off.
      gate: (attempt, signal) => limiter.run(attempt, signal),
      throttles: new ThrottleLog({
        api: "Mailchimp",
        logger: options.logger ?? quietLogger(),
        clock: options.clock,
      }),
      ...(options.deadline ? { deadline: options.deadline } : {}),
      onRequest: options.onRequest,
      newError: (init) => new MailchimpError(init),
      statusError: (answer) => this.#statusError(answer),
    };
  }

  /** `GET /ping`: checks the key and the connection; resolves with the health status. */
  async ping(signal?: AbortSignal): Promise<string> {
    const { value } = await this.#get("/ping", new URLSearchParams(), _pingSchema, signal);
    return value.health_status;
  }

  /** `GET /lists/{id}`: the list's name and member counts. */
  async getList(listId: string, signal?: AbortSignal): Promise<MailchimpList> {
    const query = new URLSearchParams({
      fields: "id,name,stats.member_count,stats.unsubscribe_count,stats.cleaned_count",
    });
    const { value } = await this.#get(`/lists/${_segment(listId)}`, query, _listSchema, signal);
    return {
      id: value.id,
      name: value.name,
      member_count: value.stats.member_count,
      unsubscribe_count: value.stats.unsubscribe_count,
      cleaned_count: value.stats.cleaned_count,
    };
  }

  /**
   * `GET /lists/{id}/members`: one page. Times are sent as UTC whole seconds
   * (`YYYY-MM-DDTHH:MM:SS+00:00`) whatever the machine's zone, since Mailchimp ignores the
   * offset and misreads fractions; `fields` always restricts the answer to what the sync
   * uses.
   */
  async getMembers(listId: string, q: MembersQuery, signal?: AbortSignal): Promise<MembersResult> {
    const query = _listingQuery(q, "members");
    const path = `/lists/${_segment(listId)}/members`;
    if (q.fieldsOnlyTotal) {
      query.set("fields", "total_items");
      const { value, exchange } = await this.#get(path, query, _totalSchema, signal);
      return {
        members: [],
        invalid: [],
        size: 0,
        totalItems: value.total_items,
        serverTimeMs: _date(exchange.headers),
      };
    }
    query.set("fields", this.#memberFields.join(","));
    const { value, exchange } = await this.#get(path, query, membersPageSchema, signal);
    const members: Member[] = [];
    const invalid: InvalidMember[] = [];
    for (const raw of value.members) parseMemberInto(raw, members, invalid);
    return {
      members,
      invalid,
      size: value.members.length,
      totalItems: value.total_items,
      serverTimeMs: _date(exchange.headers),
    };
  }

  /**
   * `GET /lists/{id}/members/{subscriber_hash}`: one member as it is now, or undefined when
   * Mailchimp has no such member (deleted permanently, or re-keyed by an email change).
   */
  async getMember(
    listId: string,
    id: string,
    signal?: AbortSignal,
  ): Promise<MemberLookup> {
    const query = new URLSearchParams({
      fields: this.#memberFields.filter((f) => f.startsWith("members.")).map((f) => f.slice(8))
        .join(","),
    });
    const path = `/lists/${_segment(listId)}/members/${_segment(id)}`;
    return await _lookup(this.#get(path, query, z.unknown(), signal));
  }

  /**
   * `PATCH /lists/{id}/members/{subscriber_hash}` with `{"status":"unsubscribed"}`: opts a
   * member out in Mailchimp (an unsubscribe made in Ometria), and answers the member as it
   * is now, or `gone` when Mailchimp has no such member. Retried like a read: setting the
   * same status twice leaves the member as once. Only ever `unsubscribed`: Mailchimp refuses
   * to subscribe again through the API someone who unsubscribed ("Member In Compliance
   * State"), and that decision is the member's (docs/API_NOTES.md, "Consent").
   */
  async unsubscribeMember(
    listId: string,
    id: string,
    options: MemberWriteOptions = {},
  ): Promise<MemberLookup> {
    const path = `/lists/${_segment(listId)}/members/${_segment(id)}`;
    return await _lookup(this.#write("PATCH", path, { status: "unsubscribed" }, options));
  }

  /**
   * `POST /lists/{id}/members/{subscriber_hash}/actions/delete-permanent`: deletes the member
   * and all its personal data for good (a data-protection erasure); Mailchimp then refuses
   * to import the address again ("Forgotten Email Not Subscribed"). Resolves `false` when
   * Mailchimp had no such member (404: deleted already, or never there). Retried: a second
   * delete of a deleted member is that 404, which counts as done.
   */
  async deleteMemberPermanently(
    listId: string,
    id: string,
    options: MemberWriteOptions = {},
  ): Promise<boolean> {
    const path = `/lists/${_segment(listId)}/members/${_segment(id)}/actions/delete-permanent`;
    try {
      await this.#write("POST", path, undefined, options);
      return true;
    } catch (error) {
      if (error instanceof MailchimpError && error.status === 404) return false;
      throw error;
    }
  }

  /**
   * One page of a list's member ids, in Mailchimp's default order (`fields=members.id`):
   * about 40 KB for 1000 ids, which is what makes reconciliation cheap.
   */
  async getMemberIds(
    listId: string,
    q: { offset: number; count: number },
    signal?: AbortSignal,
  ): Promise<{ ids: string[]; size: number; totalItems: number }> {
    const query = new URLSearchParams({
      count: String(q.count),
      offset: String(q.offset),
      fields: "members.id,total_items",
    });
    const { value } = await this.#get(
      `/lists/${_segment(listId)}/members`,
      query,
      _idsSchema,
      signal,
    );
    return {
      ids: value.members.flatMap((m) => {
        const id = typeof m === "object" && m !== null ? (m as { id?: unknown }).id : undefined;
        return typeof id === "string" ? [id] : [];
      }),
      size: value.members.length,
      totalItems: value.total_items,
    };
  }

  /**
   * One page of the members listing with only each member's id and `last_changed`
   * (`fields=members.id,members.last_changed,total_items`; the listing's `fields` parameter,
   * "A comma-separated list of fields to return. Reference parameters of sub-objects with
   * dot notation", PY-SDK `get_list_members_info`): the same query as
   * {@linkcode MailchimpClient.getMembers}, about a tenth of its bytes. What proves a tie
   * group complete once its members have been read (window_reader.ts). A stamp whose id (a
   * subscriber hash) or time cannot be read keeps its place with `id: null` or
   * `lastChangedMs: undefined`.
   */
  async getMemberStamps(
    listId: string,
    q: MembersQuery,
    signal?: AbortSignal,
  ): Promise<MemberStampsResult> {
    const query = _listingQuery(q, "member stamps");
    query.set("fields", "members.id,members.last_changed,total_items");
    const { value, exchange } = await this.#get(
      `/lists/${_segment(listId)}/members`,
      query,
      _idsSchema,
      signal,
    );
    return {
      stamps: value.members.map((m) => {
        const o = typeof m === "object" && m !== null ? m as Record<string, unknown> : {};
        // As parseMember reads ids: a subscriber hash or nothing.
        const id = typeof o.id === "string" && /^[0-9a-f]{32}$/.test(o.id) ? o.id : null;
        const at = typeof o.last_changed === "string"
          ? parseMailchimpTime(o.last_changed)
          : undefined;
        return { id, lastChangedMs: at };
      }),
      size: value.members.length,
      totalItems: value.total_items,
      serverTimeMs: _date(exchange.headers),
    };
  }

  /** `GET /lists/{id}/webhooks`: the list's webhooks (URLs hold their secrets: mask them). */
  async listWebhooks(listId: string, signal?: AbortSignal): Promise<MailchimpWebhook[]> {
    const { value } = await this.#get(
      `/lists/${_segment(listId)}/webhooks`,
      new URLSearchParams(),
      _webhooksSchema,
      signal,
    );
    return value.webhooks;
  }

  /**
   * `POST /lists/{id}/webhooks` (create) or, with `webhookId`, `PATCH
   * /lists/{id}/webhooks/{webhook_id}` (update). Mailchimp checks the URL with a GET before
   * it answers. Sent once, without retries: a create that timed out may still have happened,
   * and registering again (which lists first and updates) is the way to repair it. A create
   * answers the webhook's signing secret, once; it is returned apart from the webhook so that
   * nothing that keeps or prints webhooks holds it by accident.
   */
  async saveWebhook(
    listId: string,
    webhook: WebhookSettings,
    webhookId?: string,
    signal?: AbortSignal,
  ): Promise<SavedWebhook> {
    const base = `/lists/${_segment(listId)}/webhooks`;
    const path = webhookId === undefined ? base : `${base}/${_segment(webhookId)}`;
    const { value } = await apiRequest(path, _createdWebhookSchema, {
      ...this.#api,
      retry: false,
      method: webhookId === undefined ? "POST" : "PATCH",
      headers: {
        Authorization: this.#authorization,
        Accept: "application/json",
        "Content-Type": "application/json",
      },
      body: JSON.stringify(webhook),
      signal,
    });
    const { signing_secret, ...saved } = value;
    return signing_secret ? { webhook: saved, signingSecret: signing_secret } : { webhook: saved };
  }

  /**
   * `DELETE /lists/{id}/webhooks/{webhook_id}`: how a webhook gets a new signing secret (it
   * is deleted, then created again). Sent once, without retries, as a save is.
   */
  async deleteWebhook(listId: string, webhookId: string, signal?: AbortSignal): Promise<void> {
    await apiRequest(
      `/lists/${_segment(listId)}/webhooks/${_segment(webhookId)}`,
      z.unknown(),
      {
        ...this.#api,
        retry: false,
        method: "DELETE",
        headers: { Authorization: this.#authorization, Accept: "application/json" },
        signal,
      },
    );
  }

  /**
   * `GET /lists/{id}/merge-fields`: every merge field of the list (tag, type, name and the
   * formats its `options` name), all pages, for the field mapping.
   */
  async getMergeFields(listId: string, signal?: AbortSignal): Promise<MergeFieldDefinition[]> {
    const fields = await this.#listing(
      `/lists/${_segment(listId)}/merge-fields`,
      "merge_fields",
      ["tag", "type", "name", "options"],
      _mergeFieldsSchema,
      signal,
    );
    return fields.map(({ options, ...f }) => {
      const o = { date_format: options?.date_format, phone_format: options?.phone_format };
      return o.date_format || o.phone_format ? { ...f, options: o } : f;
    });
  }

  /**
   * `GET /lists/{id}/members/{subscriber_hash}/tags`: the names of every tag of a member, all
   * pages: the members listing serves at most 50 of them.
   */
  async getMemberTags(listId: string, id: string, signal?: AbortSignal): Promise<string[]> {
    const path = `/lists/${_segment(listId)}/members/${_segment(id)}/tags`;
    const tags = await this.#listing(path, "tags", ["name"], _memberTagsSchema, signal);
    return tags.map((t) => t.name);
  }

  /**
   * Every interest (group) of the list with its name and category title: `GET
   * /lists/{id}/interest-categories`, then each category's `interests`.
   */
  async getInterests(listId: string, signal?: AbortSignal): Promise<InterestDefinition[]> {
    const base = `/lists/${_segment(listId)}/interest-categories`;
    const categories = await this.#listing(
      base,
      "categories",
      ["id", "title"],
      _categoriesSchema,
      signal,
    );
    const out: InterestDefinition[] = [];
    for (const c of categories) {
      const path = `${base}/${_segment(c.id)}/interests`;
      const interests = await this.#listing(
        path,
        "interests",
        ["id", "name"],
        _interestsSchema,
        signal,
      );
      for (const i of interests) out.push({ id: i.id, name: i.name, category: c.title });
    }
    return out;
  }

  /**
   * Every item of the listing at `path` (its items under `key`, each with `fields`), 1000 a
   * page, until a short page or `total_items`.
   */
  async #listing<K extends string, T>(
    path: string,
    key: K,
    fields: readonly string[],
    schema: z.ZodType<{ [k in K]: T[] } & { total_items: number }>,
    signal: AbortSignal | undefined,
  ): Promise<T[]> {
    const out: T[] = [];
    for (;;) {
      const query = new URLSearchParams({
        count: String(_MAX_COUNT),
        offset: String(out.length),
        fields: [...fields.map((f) => `${key}.${f}`), "total_items"].join(","),
      });
      const { value } = await this.#get(path, query, schema, signal);
      const items = value[key];
      out.push(...items);
      if (items.length < _MAX_COUNT || out.length >= value.total_items) return out;
    }
  }

  #get<S extends z.ZodType>(
    path: string,
    query: URLSearchParams,
    schema: S,
    signal: AbortSignal | undefined,
  ): Promise<ApiAnswer<z.output<S>>> {
    return apiRequest(path, schema, {
      ...this.#api,
      query,
      headers: { Authorization: this.#authorization, Accept: "application/json" },
      signal,
    });
  }

  /** A write whose answer is JSON (a member) or empty (204); retried as `#get` is. */
  #write(
    method: "PATCH" | "POST",
    path: string,
    body: unknown,
    options: MemberWriteOptions,
  ): Promise<ApiAnswer<unknown>> {
    return apiRequest(path, z.unknown(), {
      ...this.#api,
      method,
      headers: {
        Authorization: this.#authorization,
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: options.signal,
      beforeAttempt: options.beforeAttempt,
    });
  }

  /** Mailchimp's rule for an error answer: its problem's words and whether to retry. */
  #statusError(answer: ApiErrorAnswer): MailchimpError {
    const { exchange: { status, text }, endpoint, requestId, retryAfterMs } = answer;
    const json = parseJson(text);
    const problem = json.ok ? _problemSchema.safeParse(json.value) : undefined;
    const title = problem?.success ? problem.data.title : undefined;
    const detail = problem?.success ? problem.data.detail : undefined;
    const hasProblem = title !== undefined || detail !== undefined;
    const said = hasProblem
      ? [title, detail].filter((s) => s !== undefined && s !== "").join(" — ")
      : text.trim()
      ? bodySnippet(text)
      : "(empty body)";
    const id = requestId ? `, request id ${requestId}` : "";
    // Fewer requests at once while Mailchimp says there are too many (its 10 per key are
    // shared with whatever else uses the key).
    if (status === 429) this.#limiter.throttled();
    // A 403 without Mailchimp's problem body comes from its edge (seen under heavy
    // throttling, and when it blocks an address): one more try, not the full eight; after
    // that the list's own backoff, minutes long, is the better wait.
    const bare403 = status === 403 && !hasProblem;
    const retryable = isRetryableStatus(status) || bare403;
    let message: string;
    if (bare403) {
      message = `Mailchimp ${endpoint} answered 403 without a reason, as its edge does when it ` +
        "throttles heavily or blocks this machine's address; tried twice, the list is retried " +
        `after its backoff. If it persists, check that this machine may reach Mailchimp and ` +
        `that ${this.#keyName} is right${requestId ? ` (request id ${requestId})` : ""}`;
    } else if (status === 401) {
      message = `Mailchimp rejected the API key (401): ${
        said.replace(/\.$/, "")
      }. Check ${this.#keyName} (${endpoint}${id})`;
    } else if (status === 404 && /^GET \/lists\/[^/]+(\/members)?$/.test(endpoint)) {
      const list = decodeURIComponent(endpoint.split("/")[2]!);
      message = `Mailchimp has no list "${list}" (${endpoint} answered 404 ${said}): check ` +
        `the list id, and that the API key belongs to the account that owns it${
          requestId ? ` (request id ${requestId})` : ""
        }`;
    } else {
      message = `Mailchimp ${endpoint} failed: ${status} ${said}${
        requestId ? ` (request id ${requestId})` : ""
      }`;
    }
    return new MailchimpError({
      message,
      endpoint,
      status,
      title,
      detail,
      requestId,
      retryable,
      retryAfterMs,
      serverTimeMs: _date(answer.exchange.headers),
      ...(bare403 ? { maxAttempts: 2 } : {}),
    });
  }
}

/** A member's answer read as a lookup: the member (or malformed), or `gone` for a 404. */
async function _lookup(answer: Promise<ApiAnswer<unknown>>): Promise<MemberLookup> {
  try {
    const { value, exchange } = await answer;
    return { ...parseMember(value), serverTimeMs: _date(exchange.headers) };
  } catch (error) {
    if (error instanceof MailchimpError && error.status === 404) {
      return { gone: true, serverTimeMs: error.serverTimeMs };
    }
    throw error;
  }
}

function _base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function _segment(id: string): string {
  if (!id) throw new TypeError("Cannot build a Mailchimp path with an empty list id");
  return encodeURIComponent(id);
}

function _date(headers: Headers): number | undefined {
  const value = headers.get("date");
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The query of a members listing (`GET /lists/{id}/members`) without `fields`: what
 * {@linkcode MailchimpClient.getMembers} and {@linkcode MailchimpClient.getMemberStamps}
 * share. `what` names the call in the message of a bad `count` or `offset`.
 */
function _listingQuery(q: MembersQuery, what: string): URLSearchParams {
  if (!Number.isInteger(q.count) || q.count < 1 || q.count > _MAX_COUNT) {
    throw new RangeError(
      `Cannot get ${what} as 'count' must be an integer from 1 to ${_MAX_COUNT}: current value ${q.count}`,
    );
  }
  if (q.offset !== undefined && (!Number.isInteger(q.offset) || q.offset < 0)) {
    throw new RangeError(
      `Cannot get ${what} as 'offset' must be an integer >= 0: current value ${q.offset}`,
    );
  }
  const query = new URLSearchParams({ count: String(q.count) });
  if (q.offset) query.set("offset", String(q.offset));
  if (q.sinceMs !== undefined) query.set("since_last_changed", formatMailchimpTime(q.sinceMs));
  if (q.beforeMs !== undefined) query.set("before_last_changed", formatMailchimpTime(q.beforeMs));
  if (q.status !== undefined) query.set("status", q.status);
  if (q.sortField !== undefined) query.set("sort_field", q.sortField);
  if (q.sortDir !== undefined) query.set("sort_dir", q.sortDir);
  return query;
}
