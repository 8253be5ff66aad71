/**
 * A Mailchimp Marketing API v3 simulator over real HTTP, for the demo, the tests, the
 * benchmarks and `deno task simulate`. It plays what a client can observe (see
 * docs/API_NOTES.md): auth, problem+json errors, the members listing with its paging, fields,
 * filters and sorting, the 10-connection limit, and every behaviour that is not confirmed
 * (inclusive or exclusive `since`, tie order, archived members in the default listing) as
 * a switch, and so is each misbehaviour the docs do not rule out: pages torn by a member
 * changing while they are written, a wrong `total_items`, a clock stepped back, a member
 * re-keyed by an email change or deleted for good, a member served malformed. Lists of a
 * million members are served in O(log n + page) per request while no such fault is active
 * (see `_member_index.ts`). It takes the member writes this program makes (an unsubscribe's
 * PATCH, a permanent delete) with Mailchimp's refusals, and tells each change to the
 * webhooks whose `sources` include who made it.
 *
 * @module
 */
import { type Clock, systemClock } from "../clock/clock.ts";
import { MEMBER_STATUSES, type MemberStatus } from "../mailchimp/member.ts";
import {
  ALL_STATUSES_MASK,
  type ChangeWindow,
  type MemberExtras,
  MemberIndex,
  type MemberRecord,
  mix32,
  type PageRequest,
  type RecordPage,
  STATUS_CLASS,
  statusMask,
} from "./_member_index.ts";
import { droppedResponse, FaultInjector, type FaultPlan } from "./faults.ts";
import {
  changedMember,
  contactIdOf,
  extrasOf,
  generateMembers,
  INTEREST_CATEGORIES,
  type ListProfile,
  memberId,
  MERGE_FIELDS,
  newMember,
  renamedMember,
  type SimMergeField,
  uniqueEmailIdOf,
} from "./member_data.ts";
import {
  DEFAULT_LIST_FORMATS,
  type ListFormats,
  type MergeDateValues,
  mergeFieldOptions,
  servedMergeValue,
} from "./merge_formats.ts";
import { seededRandom } from "./random.ts";
import {
  SimWebhooks,
  type SimWebhooksOptions,
  type SmsEventType,
  type WebhookSource,
} from "./webhook_sender.ts";

/** Options of {@linkcode MailchimpSimulator.start}. */
export interface MailchimpSimulatorOptions {
  /**
   * The only key accepted, as the Basic auth password (any username) or as a Bearer token.
   * @default {"simkey0000000000000000000000000000-us1"}
   */
  apiKey?: string;
  /** Clock of `last_changed` stamps, the `Date` header, latency and slow faults. @default {systemClock} */
  clock?: Clock;
  /** Interface to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** Port to listen on; 0 picks a free one. @default {0} */
  port?: number;
  /** Whether `since_last_changed` keeps members changed exactly then (>=) or not (>). @default {true} */
  sinceInclusive?: boolean;
  /** Whether `before_last_changed` keeps members changed exactly then (<=) or not (<). @default {false} */
  beforeInclusive?: boolean;
  /**
   * Order of members sharing one `last_changed` when sorted by it: `"insertion"` is stable;
   * `"random"` shuffles each tie group afresh for every request (seeded by `tieSeed`),
   * playing the unconfirmed behaviour under which offset paging through ties is unsafe.
   * @default {"insertion"}
   */
  tieOrder?: "insertion" | "random";
  /** Seed of the per-request tie shuffles. @default {1} */
  tieSeed?: number;
  /** Whether archived members appear when no `status` filter is given. @default {true} */
  archivedInDefaultListing?: boolean;
  /**
   * Requests in flight at once beyond which the simulator answers 429, at once (before
   * latency, and without drawing a fault). @default {10}
   */
  maxConnections?: number;
  /** Delay before answering every request, in milliseconds (via `clock.sleep`). @default {0} */
  latencyMs?: number;
  /**
   * Milliseconds added to `clock` for everything the simulator stamps: `last_changed` of
   * every change, the `Date` header, the default range of `addList`. Setting it to
   * -600000 while serving steps Mailchimp's clock back ten minutes (members changed
   * afterwards get older stamps than members changed before), which no doc rules out.
   * @default {0}
   */
  clockOffsetMs?: number;
  /**
   * Added to the true `total_items` of every members listing answer (the result is clamped
   * to >= 0): negative plays a count that is too low, positive one that is too high.
   * @default {0}
   */
  totalItemsError?: number;
  /**
   * When > 0, every members listing answer also adds a seeded random integer drawn
   * uniformly from [-totalItemsJitter, totalItemsJitter] to `total_items` (then clamped).
   * @default {0}
   */
  totalItemsJitter?: number;
  /**
   * Probability in [0, 1] that a members listing answer with at least one member is torn
   * (see {@linkcode MailchimpSimulator.tearPages}); queued tears come first.
   * @default {0}
   */
  tornPageRate?: number;
  /** How random tears (`tornPageRate`) and `tearPages` without a mode tear a page. @default {"stamp"} */
  tornPageMode?: TornPageMode;
  /**
   * Seed of the torn-page draws (which answer, which member, its new names) and of
   * `totalItemsJitter`; setting it with `setOptions` restarts both sequences.
   * @default {1}
   */
  quirkSeed?: number;
  /** Random faults (see `faults.ts`); tests can also queue faults on `faults`. @default {{}} */
  faults?: FaultPlan;
  /**
   * Whether webhooks created through the API sign their deliveries and return a signing
   * secret once (`"on"`), or are unsigned like those created before signing existed.
   * @default {"on"}
   */
  webhookSigning?: SimWebhooksOptions["signing"];
  /**
   * How a retried delivery is signed (`webhooks.retryFailed`): afresh, or with its first
   * signature (undocumented either way). @default {"fresh"}
   */
  webhookRetrySignatures?: SimWebhooksOptions["retrySignatures"];
  /**
   * How date and birthday merge values are served: normalised (`"iso"`: `YYYY-MM-DD`,
   * birthdays `MM/DD`) or in each field's `date_format` (`"display"`). Undocumented, so
   * both are played. @default {"iso"}
   */
  mergeDateValues?: MergeDateValues;
  /**
   * Called before a members page is computed (after auth and validation), with a 0-based
   * index counting such calls: tests use it to change members in the middle of a run.
   */
  onMembersRequest?: (
    listId: string,
    query: URLSearchParams,
    requestIndex: number,
  ) => void | Promise<void>;
}

/** The settings {@linkcode MailchimpSimulator.setOptions} can change while serving. */
export type MailchimpSimulatorSettings = Pick<
  MailchimpSimulatorOptions,
  | "sinceInclusive"
  | "beforeInclusive"
  | "tieOrder"
  | "latencyMs"
  | "archivedInDefaultListing"
  | "maxConnections"
  | "clockOffsetMs"
  | "totalItemsError"
  | "totalItemsJitter"
  | "tornPageRate"
  | "tornPageMode"
  | "quirkSeed"
  | "mergeDateValues"
>;

/**
 * How a torn members page shows the member that changed while it was written out:
 * - `"stamp"`: at its old position, with its new state and new `last_changed` (so a
 *   `last_changed`-sorted page is out of order, and a bounded window can hold a member
 *   stamped at or after its `before_last_changed`);
 * - `"move"`: left out at its old position and appended at the end of the page with its
 *   new state (as if the writer met it again after its change);
 * - `"twice"`: at its old position with its old state, and again at the end of the page with
 *   its new state (the writer met it before and after its change: one member twice in a page).
 */
export type TornPageMode = "stamp" | "move" | "twice";

/** One torn page, as recorded in {@linkcode MailchimpSimulatorStats.tears}. */
export interface TornPage {
  /** The list whose page was torn. */
  listId: string;
  /** Id of the member that changed while the page was written. */
  id: string;
  /** Its 0-based position in the page as computed before the tear. */
  position: number;
  /** How the page shows it. */
  mode: TornPageMode;
}

/** Options of {@linkcode MailchimpSimulator.addList}. */
export interface AddListOptions {
  /** List name. @default {"Simulated list <id>"} */
  name?: string;
  /** Generated members (tie groups come on top). @default {0} */
  members?: number;
  /** Seed of the generated members. @default {1} */
  seed?: number;
  /** Earliest generated `last_changed`, epoch ms. @default {30 days before clock.now()} */
  lastChangedFrom?: number;
  /** Latest generated `last_changed`, epoch ms. @default {clock.now()} */
  lastChangedTo?: number;
  /** Extra members, `size` per group, all sharing `last_changed` = `at` (epoch ms). */
  tieGroups?: { at: number; size: number }[];
  /**
   * Bulk imports: `share` of `members` (0 to 1) come in groups of `size` that share one
   * `last_changed`, spread over the range; the rest are spread one by one. Real imports
   * stamp every member they add or update with the import's second (Mailchimp's import
   * docs: "Import contacts" updates each contact, and its `last_changed` is the time of
   * that update), so a list fed by imports has tie groups of thousands. @default {undefined}
   */
  bulkImports?: { share: number; size: number };
  /**
   * `"retail"`: the list has an address, a phone, a birthday, a dropdown, a number and a
   * date merge field, tags, two interest categories, and every member a language, VIP flag,
   * rating and country, derived from its id (some members with most of them empty).
   * @default {"names"}
   */
  profile?: ListProfile;
  /**
   * The `options` of the list's date, birthday and phone merge fields (a birthday may be
   * DD/MM, a date DD/MM/YYYY, a phone US-formatted). @default {DEFAULT_LIST_FORMATS}
   */
  formats?: Partial<ListFormats>;
}

/** A member as the simulator serves it (every field it knows). */
export interface SimMember {
  /** MD5 of the lowercased email. */
  id: string;
  /** Email address as written. */
  email_address: string;
  /** Status. */
  status: MemberStatus;
  /** Names (possibly empty strings), and the other merge fields of the list. */
  merge_fields: { FNAME: string; LNAME: string; [tag: string]: unknown };
  /** `YYYY-MM-DDTHH:MM:SS+00:00`. */
  last_changed: string;
  /** Opt-in time, or "". */
  timestamp_opt: string;
  /** Signup time, or "". */
  timestamp_signup: string;
  /** Contact id. */
  contact_id: string;
  /** Unique email id. */
  unique_email_id: string;
  /** Every tag, as the member's tags endpoint serves them (the listing serves 50 at most). */
  tags: { id: number; name: string }[];
  /** How many tags the member has. */
  tags_count: number;
  /** Interest id → whether the member has it (absent on a list without interests). */
  interests?: Record<string, boolean>;
  /** Language code, or "". */
  language: string;
  /** VIP flag. */
  vip: boolean;
  /** 1 to 5 stars. */
  member_rating: number;
  /** Where the member is (only `country_code` carries data in the simulator). */
  location: {
    latitude: number;
    longitude: number;
    gmtoff: number;
    dstoff: number;
    country_code: string;
    timezone: string;
  };
  /**
   * Only in `truth` of a member served malformed (`corruptMember`): the raw values served
   * instead of the true ones above (a key with value `undefined` is left out when served).
   */
  malformed?: Record<string, unknown>;
}

/** Request counters of a simulator, reset by {@linkcode MailchimpSimulator.resetStats}. */
export interface MailchimpSimulatorStats {
  /** Requests received (every path, every outcome). */
  requests: number;
  /** Requests received for a members listing. */
  membersRequests: number;
  /** Requests received for one member (`GET /lists/{id}/members/{subscriber_hash}`). */
  memberRequests: number;
  /** Member writes received: `PATCH`, `PUT`, `POST` of members and `delete-permanent`. */
  memberWrites: number;
  /** Members listing answers that were torn (see `tearPages`). */
  tornPages: number;
  /** The torn pages, oldest first (the last 1000, so a long random run stays small). */
  tears: TornPage[];
  /** Requests being answered now. */
  inFlight: number;
  /** Most requests in flight at once (rejected ones included: what the client attempted). */
  maxInFlight: number;
  /**
   * Members served with more than their id and `last_changed` (listing pages and single
   * members): what reading a list costs in Mailchimp's bandwidth, per member synced.
   */
  membersServed: number;
  /** Members served with only their id (and `last_changed`), as `fields` allows. */
  idsServed: number;
  /** 429 answers sent (connection limit and injected faults). */
  status429: number;
  /** Requests received by URL path. */
  byPath: Map<string, number>;
}

const _DEFAULT_KEY = "simkey0000000000000000000000000000-us1";
const _ERROR_DOC = "https://mailchimp.com/developer/marketing/docs/errors/";
const _DAY_MS = 86_400_000;
const _SORT_FIELDS = ["last_changed", "timestamp_opt", "timestamp_signup"] as const;
type _SortField = typeof _SORT_FIELDS[number];
const _NOT_ARCHIVED = ALL_STATUSES_MASK & ~statusMask(["archived"]);
const _FAULT_TITLES: Record<number, string> = {
  408: "Request Timeout",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

interface _List {
  id: string;
  name: string;
  index: MemberIndex;
  nextChangeSeed: number;
  /** Raw field values served instead of the true ones, by member id (`corruptMember`). */
  corrupt: Map<string, Record<string, unknown>>;
  /**
   * Ids deleted for good through `actions/delete-permanent`: the API refuses to add them
   * again ("Forgotten Email Not Subscribed"); only the person, through a signup form
   * (`upsertMember`), can come back.
   */
  forgotten: Set<string>;
  profile: ListProfile;
  formats: ListFormats;
}

/** What serving a member's JSON needs of its list and the settings. */
interface _Serve {
  profile: ListProfile;
  formats: ListFormats;
  dateValues: MergeDateValues;
  /** Merge tag → type, for the formatted ones. */
  types: ReadonlyMap<string, string>;
}

type _Route =
  | { kind: "ping" }
  | { kind: "list"; listId: string }
  | { kind: "members"; listId: string }
  | { kind: "member"; listId: string; hash: string }
  | { kind: "member-tags"; listId: string; hash: string }
  | { kind: "merge-fields"; listId: string }
  | { kind: "interest-categories"; listId: string }
  | { kind: "interests"; listId: string; categoryId: string };

/**
 * A Mailchimp API simulator listening on 127.0.0.1. Start it with
 * {@linkcode MailchimpSimulator.start}, seed lists with `addList`, change members with
 * `upsertMember`/`changeMembers`/`deleteMember`/`changeEmail`, misbehave with
 * `tearPages`/`corruptMember`/`setOptions`, compare with `truth`, and `close` it.
 * Clock going backwards: a change stamped earlier than existing ones keeps its true
 * `last_changed` and is sorted into place at the next read (an O(n log n) rebuild).
 */
export class MailchimpSimulator {
  /** Base URL including `/3.0`, e.g. `http://127.0.0.1:43121/3.0`. */
  readonly url: string;
  /** The accepted API key. */
  readonly apiKey: string;
  /** Fault injector: `queue(429, 500)` scripts the next answers, `set({...})` a random plan. */
  readonly faults: FaultInjector;
  /** Request counters. */
  readonly stats: MailchimpSimulatorStats = {
    requests: 0,
    membersRequests: 0,
    memberRequests: 0,
    memberWrites: 0,
    tornPages: 0,
    tears: [],
    inFlight: 0,
    maxInFlight: 0,
    membersServed: 0,
    idsServed: 0,
    status429: 0,
    byPath: new Map(),
  };

  #clock: Clock;
  #settings: Required<MailchimpSimulatorSettings>;
  #onMembersRequest: MailchimpSimulatorOptions["onMembersRequest"];
  #lists = new Map<string, _List>();
  #server: Deno.HttpServer<Deno.NetAddr>;
  #closing = new AbortController();
  #closed: Promise<void> | undefined;
  #hookCalls = 0;
  #tieRandom: () => number;
  #tearRandom: () => number;
  #totalRandom: () => number;
  #tearQueue: TornPageMode[] = [];
  /**
   * List webhooks: registered through `/lists/{id}/webhooks`, or pointed at a URL with
   * `webhooks.sendTo(listId, url)`; `upsertMember`, `changeMembers`, `deleteMember` and
   * `changeEmail` deliver Mailchimp's events to them. `webhooks.settle()` waits for deliveries.
   */
  readonly webhooks: SimWebhooks;

  private constructor(options: MailchimpSimulatorOptions) {
    this.webhooks = new SimWebhooks({
      ...(options.webhookSigning ? { signing: options.webhookSigning } : {}),
      ...(options.webhookRetrySignatures
        ? { retrySignatures: options.webhookRetrySignatures }
        : {}),
    });
    this.apiKey = options.apiKey ?? _DEFAULT_KEY;
    this.#clock = options.clock ?? systemClock;
    this.#settings = _settings({
      sinceInclusive: true,
      beforeInclusive: false,
      tieOrder: "insertion",
      latencyMs: 0,
      archivedInDefaultListing: true,
      maxConnections: 10,
      clockOffsetMs: 0,
      totalItemsError: 0,
      totalItemsJitter: 0,
      tornPageRate: 0,
      tornPageMode: "stamp",
      quirkSeed: 1,
      mergeDateValues: "iso",
    }, options);
    this.#onMembersRequest = options.onMembersRequest;
    this.#tieRandom = seededRandom(options.tieSeed ?? 1);
    [this.#tearRandom, this.#totalRandom] = _quirkRandoms(this.#settings.quirkSeed);
    this.faults = new FaultInjector(options.faults);
    this.#server = Deno.serve({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? 0,
      onListen: () => {},
      // Deno logs a failed response body by default; a dropped response is one on purpose.
      onError: () => new Response(null, { status: 500 }),
    }, (req) => this.#handle(req));
    const { hostname, port } = this.#server.addr;
    this.url = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}/3.0`;
  }

  /** Starts a simulator listening on `hostname:port` (a free port by default). */
  static start(options: MailchimpSimulatorOptions = {}): Promise<MailchimpSimulator> {
    return Promise.resolve(new MailchimpSimulator(options));
  }

  /** Changes behaviour switches while serving (later requests see them). */
  setOptions(partial: Partial<MailchimpSimulatorSettings>): void {
    this.#settings = _settings(this.#settings, partial);
    if (partial.quirkSeed !== undefined) {
      [this.#tearRandom, this.#totalRandom] = _quirkRandoms(partial.quirkSeed);
    }
  }

  /**
   * Tears the next `n` members listing answers that carry at least one member (an empty
   * page does not use a tear up), before any random tear of `tornPageRate`. In a torn
   * answer, one member of the computed page, chosen by the seeded random anywhere in the
   * page, really changes in the list while the page is written: new names, `last_changed`
   * = now (clock plus `clockOffsetMs`), and the page shows it as `mode` says (see
   * {@linkcode TornPageMode}). `total_items` stays what was counted before the change.
   * Applies to every listing order. Throws a RangeError unless `n` is an integer >= 0.
   */
  tearPages(n: number, options: { mode?: TornPageMode } = {}): void {
    if (!Number.isInteger(n) || n < 0) {
      throw new RangeError(`Cannot tear pages as 'n' must be an integer >= 0: current value ${n}`);
    }
    const mode = options.mode ?? this.#settings.tornPageMode;
    for (let i = 0; i < n; i++) this.#tearQueue.push(mode);
  }

  /**
   * Creates a list with `members` seeded members (plus tie groups). Throws a RangeError
   * when the list exists. Generating a million members takes a few seconds.
   */
  addList(listId: string, opts: AddListOptions = {}): void {
    if (this.#lists.has(listId)) {
      throw new RangeError(`Cannot add list '${listId}' as it already exists`);
    }
    const now = this.#now();
    const fromMs = opts.lastChangedFrom ?? now - 30 * _DAY_MS;
    const toMs = opts.lastChangedTo ?? now;
    const members = opts.members ?? 0;
    const tieGroups = [...(opts.tieGroups ?? [])];
    let single = members;
    if (opts.bulkImports !== undefined) {
      const { share, size } = opts.bulkImports;
      if (!(share >= 0 && share <= 1) || !Number.isInteger(size) || size < 1) {
        throw new RangeError(
          `Cannot add list '${listId}' as 'bulkImports' needs a share in [0, 1] and a size >= 1: current values ${share} and ${size}`,
        );
      }
      const groups = Math.floor(members * share / size);
      single = members - groups * size;
      for (let i = 0; i < groups; i++) {
        // Evenly spread, at whole seconds strictly inside the range.
        const at = fromMs + Math.floor((toMs - fromMs) * (i + 0.5) / groups / 1000) * 1000;
        tieGroups.push({ at, size });
      }
    }
    const records = generateMembers({
      count: single,
      seed: opts.seed ?? 1,
      fromMs,
      toMs,
      tieGroups,
    });
    const index = new MemberIndex();
    index.putAll(records);
    this.#lists.set(listId, {
      id: listId,
      name: opts.name ?? `Simulated list ${listId}`,
      index,
      nextChangeSeed: (opts.seed ?? 1) * 7919 + 1,
      corrupt: new Map(),
      forgotten: new Set(),
      profile: opts.profile ?? "names",
      formats: { ...DEFAULT_LIST_FORMATS, ...opts.formats },
    });
  }

  /**
   * Creates or updates the member with this email (matched case-insensitively); unset
   * fields keep their value (a new member: subscribed, empty names). `last_changed` is the
   * clock's now, floored to the second.
   */
  upsertMember(
    listId: string,
    m: {
      email: string;
      status?: MemberStatus;
      FNAME?: string;
      LNAME?: string;
      /** Fields beyond the names; given ones replace the member's (derived or set) ones. */
      extra?: Partial<MemberExtras>;
      /**
       * Who made the change, for the webhooks' `sources`: the member (`user`, a signup or
       * unsubscribe form), an admin in Mailchimp's app (`admin`) or an API client (`api`).
       * @default {"admin"}
       */
      source?: WebhookSource;
    },
  ): SimMember {
    const list = this.#list(listId);
    if (!m.email.includes("@")) {
      throw new TypeError(`Cannot upsert member as 'email' is not an address: '${m.email}'`);
    }
    const now = this.#nowSeconds();
    const old = list.index.get(memberId(m.email));
    const record: MemberRecord = old === undefined
      ? newMember(m.email, m.status ?? "subscribed", {
        fname: m.FNAME ?? "",
        lname: m.LNAME ?? "",
      }, now)
      : {
        ...old,
        status: m.status ?? old.status,
        fname: m.FNAME ?? old.fname,
        lname: m.LNAME ?? old.lname,
        changed: now,
        opt: m.status === "subscribed" && old.status !== "subscribed" ? now : old.opt,
      };
    const stored = m.extra === undefined
      ? record
      : { ...record, extra: { ...extrasOf(record, list.profile), ...m.extra } };
    // The person signing up again through a form is how a forgotten address comes back.
    list.forgotten.delete(stored.id);
    this.#store(list, stored);
    this.webhooks.changed(listId, old, stored, this.#now(), m.source);
    return _toSimMember(stored, list.profile);
  }

  /**
   * Changes `count` distinct existing members (at most every member), chosen and changed
   * deterministically from `seed` (by default a per-list sequence, so successive calls
   * differ): new names and/or a new status, `last_changed` = now. Returns their new state.
   */
  changeMembers(listId: string, count: number, seed?: number): SimMember[] {
    const list = this.#list(listId);
    const random = seededRandom(seed ?? list.nextChangeSeed++);
    const live = list.index.size;
    const k = Math.max(0, Math.min(Math.floor(count), live));
    let chosen: MemberRecord[];
    if (k * 2 > live) {
      chosen = list.index.all();
      for (let i = 0; i < k; i++) {
        const j = i + Math.floor(random() * (chosen.length - i));
        [chosen[i], chosen[j]] = [chosen[j]!, chosen[i]!];
      }
      chosen.length = k;
    } else {
      const ranks = new Set<number>();
      while (ranks.size < k) ranks.add(Math.floor(random() * live));
      chosen = [...ranks].map((r) => list.index.at(r)!);
    }
    const now = this.#nowSeconds();
    return chosen.map((old) => {
      const record = changedMember(old, random, now);
      this.#store(list, record);
      this.webhooks.changed(listId, old, record, this.#now());
      return _toSimMember(record, list.profile);
    });
  }

  /** Deletes the member with this email permanently (it simply disappears); no-op if absent. */
  deleteMember(listId: string, email: string): void {
    const list = this.#list(listId);
    const id = memberId(email);
    const old = list.index.get(id);
    list.index.delete(id);
    list.corrupt.delete(id);
    if (old !== undefined) this.webhooks.deleted(listId, old, this.#now());
  }

  /**
   * Changes a member's email address, as Mailchimp's "upemail": the id is the MD5 of the
   * lowercased address, so the member disappears under its old id (listings, `GET` of the
   * old hash, `truth`) and appears under the new one, last in creation order, with the same
   * status, names and opt-in time and `last_changed` = now. A change of case only keeps the
   * id. Throws a RangeError when no member has `oldEmail` or another member has `newEmail`,
   * a TypeError when `newEmail` is not an address. Returns the member's new state.
   */
  changeEmail(listId: string, oldEmail: string, newEmail: string): SimMember {
    const list = this.#list(listId);
    if (!newEmail.includes("@")) {
      throw new TypeError(`Cannot change email as 'newEmail' is not an address: '${newEmail}'`);
    }
    const old = list.index.get(memberId(oldEmail));
    if (old === undefined) {
      throw new RangeError(`Cannot change email as list '${listId}' has no member '${oldEmail}'`);
    }
    const id = memberId(newEmail);
    if (id !== old.id) {
      if (list.index.get(id) !== undefined) {
        throw new RangeError(
          `Cannot change email of '${oldEmail}' as list '${listId}' already has '${newEmail}'`,
        );
      }
      list.index.delete(old.id);
      list.corrupt.delete(old.id);
    }
    const record: MemberRecord = { ...old, id, email: newEmail, changed: this.#nowSeconds() };
    this.#store(list, record);
    if (id === old.id) this.webhooks.changed(listId, old, record, this.#now());
    else this.webhooks.emailChanged(listId, old, record, this.#now());
    return _toSimMember(record, list.profile);
  }

  /**
   * Delivers an SMS event, or the `profile` of an SMS-only contact (no email), of the
   * contact with `phone` to the list's webhooks that ask for that type (fields undocumented:
   * see `SimWebhooks.sms`). Nothing in the members listing changes.
   */
  sendSmsEvent(listId: string, type: SmsEventType | "profile", phone: string): void {
    this.#list(listId);
    this.webhooks.sms(listId, type, phone, this.#now());
  }

  /** Delivers a `campaign` event (a campaign sent to the list) to webhooks that ask for it. */
  sendCampaign(listId: string, subject: string): void {
    this.#list(listId);
    this.webhooks.campaign(listId, subject, this.#now());
  }

  /** Retries every failed webhook delivery now (Mailchimp retries for 75 minutes). */
  retryWebhooks(): void {
    this.webhooks.retryFailed(this.#now());
  }

  /**
   * Serves the member with this email malformed from now on, in listings and in `GET` of
   * the member: each key of `overrides` replaces that field's value in what is served, raw
   * (e.g. `{ status: "weird" }`, `{ email_address: null }`, `{ last_changed: "not a date" }`);
   * a key whose value is `undefined` is left out (`{ id: undefined }`). Overrides of member
   * fields the request did not select are not served; unknown keys (unexpected extra fields)
   * always are. Sorting and filtering still use the member's true state, and `truth` reports
   * the overrides as `malformed`. A later change of the member (upsert, `changeMembers`, a
   * torn page, `changeEmail`) or `uncorruptMember` restores normal serving. Calling it again
   * replaces the overrides. Throws a RangeError when no member has this email.
   */
  corruptMember(listId: string, email: string, overrides: Record<string, unknown>): void {
    const list = this.#list(listId);
    const id = memberId(email);
    if (list.index.get(id) === undefined) {
      throw new RangeError(`Cannot corrupt member as list '${listId}' has no member '${email}'`);
    }
    list.corrupt.set(id, { ...overrides });
  }

  /** Serves the member with this email normally again; no-op if it is not corrupted. */
  uncorruptMember(listId: string, email: string): void {
    this.#list(listId).corrupt.delete(memberId(email));
  }

  /**
   * Every live member of the list, in creation order, in its true state; a member served
   * malformed (`corruptMember`) also carries the served overrides as `malformed`.
   */
  truth(listId: string): SimMember[] {
    const list = this.#list(listId);
    return list.index.all().map((r) => {
      const member = _toSimMember(r, list.profile);
      const overrides = list.corrupt.get(r.id);
      if (overrides !== undefined) member.malformed = { ...overrides };
      return member;
    });
  }

  /**
   * The list's merge fields (tag, type, name) and interest names by id, as its endpoints
   * serve them: what `compareCopies` needs to check the mapped fields.
   */
  fieldDefinitions(
    listId: string,
  ): {
    mergeFields: (SimMergeField & { options: Record<string, unknown> })[];
    interestNames: Map<string, string>;
  } {
    const list = this.#list(listId);
    return {
      mergeFields: MERGE_FIELDS[list.profile].map((f) => ({
        ...f,
        options: mergeFieldOptions(f.type, list.formats),
      })),
      interestNames: new Map(
        INTEREST_CATEGORIES[list.profile].flatMap((c) => c.interests.map((i) => [i.id, i.name])),
      ),
    };
  }

  /** Zeroes the counters (`inFlight` stays true; `maxInFlight` restarts from it). */
  resetStats(): void {
    const s = this.stats;
    s.requests = 0;
    s.membersRequests = 0;
    s.memberRequests = 0;
    s.memberWrites = 0;
    s.tornPages = 0;
    s.tears = [];
    s.maxInFlight = s.inFlight;
    s.membersServed = 0;
    s.idsServed = 0;
    s.status429 = 0;
    s.byPath.clear();
  }

  /** Stops listening; requests still waiting on latency or a slow fault get a 503. */
  close(): Promise<void> {
    if (this.#closed === undefined) {
      this.#closing.abort(new Error("simulator closing"));
      this.#closed = this.webhooks.settle().then(() => this.#server.shutdown());
    }
    return this.#closed;
  }

  #list(listId: string): _List {
    const list = this.#lists.get(listId);
    if (list === undefined) throw new RangeError(`Cannot find list '${listId}'`);
    return list;
  }

  /** The simulated Mailchimp's time: the clock stepped by `clockOffsetMs`. */
  #now(): number {
    return this.#clock.now() + this.#settings.clockOffsetMs;
  }

  #nowSeconds(): number {
    return Math.floor(this.#now() / 1000);
  }

  /** Stores a member's new state; any change ends malformed serving (`corruptMember`). */
  #store(list: _List, record: MemberRecord): void {
    list.index.put(record);
    if (list.corrupt.size > 0) list.corrupt.delete(record.id);
  }

  async #handle(req: Request): Promise<Response> {
    const requestId = crypto.randomUUID();
    const url = new URL(req.url);
    const stats = this.stats;
    const route = _route(url.pathname);
    stats.requests++;
    stats.byPath.set(url.pathname, (stats.byPath.get(url.pathname) ?? 0) + 1);
    if (route?.kind === "members") stats.membersRequests++;
    if (route?.kind === "member") stats.memberRequests++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    try {
      const max = this.#settings.maxConnections;
      if (stats.inFlight > max) {
        return this.#problem(
          429,
          "Too Many Requests",
          `You have exceeded the limit of ${max} simultaneous connections.`,
          requestId,
        );
      }
      const fault = this.faults.next();
      const wait = this.#settings.latencyMs + (fault === "slow" ? this.faults.slowMs : 0);
      if (wait > 0) {
        await this.#clock.sleep(wait, this.#closing.signal);
      }
      if (fault === 403) return this.#stamp(new Response(null, { status: 403 }), requestId);
      if (typeof fault === "number") {
        return this.#problem(fault, _FAULT_TITLES[fault] ?? "Error", "Simulated fault.", requestId);
      }
      const response = await this.#answer(req, url, route, requestId);
      if (fault !== "drop") return response;
      await response.body?.cancel();
      return this.#stamp(droppedResponse(), requestId);
    } catch (error) {
      if (this.#closing.signal.aborted) {
        return this.#problem(503, "Service Unavailable", "The simulator is closing.", requestId);
      }
      return this.#problem(500, "Internal Server Error", String(error), requestId);
    } finally {
      stats.inFlight--;
    }
  }

  async #answer(
    req: Request,
    url: URL,
    route: _Route | undefined,
    requestId: string,
  ): Promise<Response> {
    if (!this.#authorized(req.headers.get("authorization"))) {
      return this.#problem(
        401,
        "API Key Invalid",
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        requestId,
      );
    }
    const hooks = /^\/3\.0\/lists\/([^/]+)\/webhooks(?:\/([^/]+))?\/?$/.exec(url.pathname);
    if (hooks) return await this.#webhooksRoute(req, hooks[1]!, hooks[2], requestId);
    if (req.method !== "GET") return await this.#memberWrite(req, url.pathname, requestId);
    if (route === undefined) return this.#notFound(requestId);
    if (route.kind === "ping") {
      return this.#json('{"health_status":"Everything\'s Chimpy!"}', requestId);
    }
    const list = this.#lists.get(route.listId);
    if (list === undefined) return this.#notFound(requestId);
    if (route.kind === "list") return this.#json(_listJson(list), requestId);
    if (route.kind === "member") return this.#member(list, route.hash, url.searchParams, requestId);
    if (route.kind === "member-tags") {
      return this.#memberTags(list, route.hash, url.searchParams, requestId);
    }
    if (route.kind === "merge-fields") {
      const fields = MERGE_FIELDS[list.profile].map((f, i) => ({
        merge_id: i + 1,
        tag: f.tag,
        name: f.name,
        type: f.type,
        required: false,
        options: mergeFieldOptions(f.type, list.formats),
        list_id: list.id,
      }));
      return this.#json(_listing("merge_fields", fields, url.searchParams), requestId);
    }
    if (route.kind === "interest-categories") {
      const categories = INTEREST_CATEGORIES[list.profile].map((c) => ({
        list_id: list.id,
        id: c.id,
        title: c.title,
        type: "checkboxes",
      }));
      return this.#json(_listing("categories", categories, url.searchParams), requestId);
    }
    if (route.kind === "interests") {
      const category = INTEREST_CATEGORIES[list.profile].find((c) => c.id === route.categoryId);
      if (category === undefined) return this.#notFound(requestId);
      const interests = category.interests.map((i) => ({
        category_id: category.id,
        list_id: list.id,
        id: i.id,
        name: i.name,
      }));
      return this.#json(_listing("interests", interests, url.searchParams), requestId);
    }
    return await this.#members(list, url.searchParams, requestId);
  }

  async #members(list: _List, params: URLSearchParams, requestId: string): Promise<Response> {
    const query = _parseMembersQuery(params);
    if ("errors" in query) {
      return this.#problem(
        400,
        "Invalid Resource",
        "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
        requestId,
        { errors: query.errors },
      );
    }
    await this.#onMembersRequest?.(list.id, params, this.#hookCalls++);
    const s = this.#settings;
    const page: PageRequest = {
      mask: query.status !== undefined
        ? statusMask([query.status])
        : s.archivedInDefaultListing
        ? ALL_STATUSES_MASK
        : _NOT_ARCHIVED,
      offset: query.offset,
      count: query.count,
      desc: query.desc,
      tieKey: s.tieOrder === "random" ? Math.floor(this.#tieRandom() * 2 ** 32) : undefined,
    };
    const window: ChangeWindow = {
      since: query.since,
      sinceInclusive: s.sinceInclusive,
      before: query.before,
      beforeInclusive: s.beforeInclusive,
    };
    let result: RecordPage;
    if (query.sortField === "last_changed") {
      result = list.index.pageByChange(window, page);
    } else if (
      query.sortField === undefined && query.since === undefined && query.before === undefined
    ) {
      result = list.index.pageByCreation(page);
    } else {
      result = _scanPage(list.index.all(), window, page, query.sortField);
    }
    const tear = this.#nextTear(result.records.length);
    if (tear !== undefined) result = this.#tear(list, result, tear);
    const total = this.#reportedTotal(result.total);
    if (query.selection.top.has("members")) {
      // `fields` ("A comma-separated list of fields to return. Reference parameters of
      // sub-objects with dot notation", PY-SDK `get_list_members_info`) serves only what is
      // named: a page of `members.id,members.last_changed` is counted apart, as ids only.
      const idsOnly = (query.selection.memberFields & ~(_F_ID | _F_CHANGED)) === 0;
      if (idsOnly) this.stats.idsServed += result.records.length;
      else this.stats.membersServed += result.records.length;
    }
    return this.#json(
      _pageJson(list, { total, records: result.records }, query.selection, this.#serve(list)),
      requestId,
    );
  }

  /**
   * The member writes Mailchimp's API takes (docs/API_NOTES.md, "Consent"), each made as an
   * `api` change (its webhook goes only to webhooks whose `sources.api` is on):
   * - `PATCH /lists/{id}/members/{hash}`: a new `status`; 404 for a member Mailchimp lacks,
   *   400 "Member In Compliance State" for `subscribed` after an unsubscribe or a bounce;
   * - `PUT /lists/{id}/members/{hash}` and `POST /lists/{id}/members`: add or update, with
   *   400 "Forgotten Email Not Subscribed" for an address deleted permanently;
   * - `POST /lists/{id}/members/{hash}/actions/delete-permanent`: 204, then 404 for good.
   */
  async #memberWrite(req: Request, pathname: string, requestId: string): Promise<Response> {
    const route = _writeRoute(req.method, pathname);
    const list = route && this.#lists.get(route.listId);
    if (route === undefined || list === undefined) {
      await req.body?.cancel();
      return this.#notFound(requestId);
    }
    this.stats.memberWrites++;
    if (route.kind === "delete-permanent") {
      await req.body?.cancel();
      const old = list.index.get(route.hash);
      if (old === undefined) return this.#notFound(requestId);
      list.index.delete(old.id);
      list.corrupt.delete(old.id);
      list.forgotten.add(old.id);
      this.webhooks.deleted(list.id, old, this.#now(), "api");
      return this.#stamp(new Response(null, { status: 204 }), requestId);
    }
    let body: Record<string, unknown>;
    try {
      body = await req.json();
    } catch {
      return this.#problem(400, "Invalid Resource", "The request body is not JSON.", requestId);
    }
    const email = typeof body.email_address === "string" ? body.email_address : undefined;
    const id = route.hash ?? (email === undefined ? undefined : memberId(email));
    const old = id === undefined ? undefined : list.index.get(id);
    const status = (old === undefined ? body.status_if_new ?? body.status : body.status) ??
      old?.status;
    if (!(MEMBER_STATUSES as readonly unknown[]).includes(status) || status === "archived") {
      return this.#problem(400, "Invalid Resource", "The status is not valid.", requestId);
    }
    if (old === undefined) {
      if (route.kind === "patch" || email === undefined || !email.includes("@")) {
        return this.#notFound(requestId);
      }
      if (list.forgotten.has(memberId(email))) {
        return this.#problem(
          400,
          "Forgotten Email Not Subscribed",
          `${email} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back on the list.`,
          requestId,
        );
      }
    } else if (
      status === "subscribed" && (old.status === "unsubscribed" || old.status === "cleaned")
    ) {
      return this.#problem(
        400,
        "Member In Compliance State",
        `${old.email} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed.`,
        requestId,
      );
    }
    const now = this.#nowSeconds();
    const record: MemberRecord = old === undefined
      ? newMember(email!, status as MemberStatus, { fname: "", lname: "" }, now)
      : {
        ...old,
        status: status as MemberStatus,
        changed: old.status === status ? old.changed : now,
        opt: status === "subscribed" && old.status !== "subscribed" ? now : old.opt,
      };
    this.#store(list, record);
    if (old?.status !== record.status) {
      this.webhooks.changed(list.id, old, record, this.#now(), "api");
    }
    const json = _servedMemberJson(record, _ALL_MEMBER_FIELDS, list.corrupt, this.#serve(list));
    return this.#json(json, requestId);
  }

  /**
   * `GET /lists/{id}/members/{subscriber_hash}`: the hash is the member id (MD5 of the
   * lowercased email); an email is accepted too, as Mailchimp does. Member fields sit at
   * the top level, so `fields` names them without the `members.` prefix.
   */
  #member(list: _List, hash: string, params: URLSearchParams, requestId: string): Response {
    const id = hash.includes("@") ? memberId(hash) : hash.toLowerCase();
    const record = list.index.get(id);
    if (record === undefined) return this.#notFound(requestId);
    const selection = _memberSelection(
      _list(params.get("fields")),
      _list(params.get("exclude_fields")) ?? [],
    );
    const extras: string[] = [];
    if (selection.top.has("list_id")) extras.push(`"list_id":${JSON.stringify(list.id)}`);
    if (selection.top.has("_links")) extras.push(`"_links":[]`);
    const json = _servedMemberJson(
      record,
      selection.memberFields,
      list.corrupt,
      this.#serve(list),
      selection.location,
    );
    this.stats.membersServed++;
    const body = extras.length === 0
      ? json
      : json === "{}"
      ? `{${extras.join(",")}}`
      : `${json.slice(0, -1)},${extras.join(",")}}`;
    return this.#json(body, requestId);
  }

  /**
   * `GET /lists/{id}/members/{subscriber_hash}/tags`: every tag, `{id, name, date_added}`,
   * paged with `count` (default 10, at most 1000) and `offset`, with `total_items`
   * (Mailchimp's SDK, `ListMemberTagsListsResponse.ts`).
   */
  #memberTags(list: _List, hash: string, params: URLSearchParams, requestId: string): Response {
    const id = hash.includes("@") ? memberId(hash) : hash.toLowerCase();
    const record = list.index.get(id);
    if (record === undefined) return this.#notFound(requestId);
    const added = _formatSeconds(Math.max(0, record.signup, record.opt));
    const tags = _tagsJson(extrasOf(record, list.profile).tags).map((t) => ({
      ...t,
      date_added: added,
    }));
    return this.#json(_listing("tags", tags, params), requestId);
  }

  /** What serving a member of `list` needs now. */
  #serve(list: _List): _Serve {
    return {
      profile: list.profile,
      formats: list.formats,
      dateValues: this.#settings.mergeDateValues,
      types: new Map(MERGE_FIELDS[list.profile].map((f) => [f.tag, f.type])),
    };
  }

  /** The tear mode of the listing answer being written, if it is to be torn. */
  #nextTear(members: number): TornPageMode | undefined {
    if (members === 0) return undefined;
    const queued = this.#tearQueue.shift();
    if (queued !== undefined) return queued;
    const rate = this.#settings.tornPageRate;
    return rate > 0 && this.#tearRandom() < rate ? this.#settings.tornPageMode : undefined;
  }

  /**
   * Changes one member of the computed page for real (new names, `last_changed` = now) and
   * shows it as `mode` says; `total` was counted before the change and stays.
   */
  #tear(list: _List, page: RecordPage, mode: TornPageMode): RecordPage {
    const random = this.#tearRandom;
    const records = page.records.slice();
    const position = Math.floor(random() * records.length);
    const changed = renamedMember(records[position]!, random, this.#nowSeconds());
    this.#store(list, changed);
    if (mode === "stamp") {
      records[position] = changed;
    } else if (mode === "twice") {
      records.push(changed);
    } else {
      records.splice(position, 1);
      records.push(changed);
    }
    this.stats.tornPages++;
    const tears = this.stats.tears;
    tears.push({ listId: list.id, id: changed.id, position, mode });
    if (tears.length > 1000) tears.splice(0, tears.length - 1000);
    return { total: page.total, records };
  }

  /** `total_items` as answered: the true count stepped by `totalItemsError` and jitter. */
  #reportedTotal(total: number): number {
    const { totalItemsError, totalItemsJitter } = this.#settings;
    if (totalItemsError === 0 && totalItemsJitter === 0) return total;
    const jitter = totalItemsJitter === 0
      ? 0
      : Math.floor(this.#totalRandom() * (2 * totalItemsJitter + 1)) - totalItemsJitter;
    return Math.max(0, total + totalItemsError + jitter);
  }

  #authorized(header: string | null): boolean {
    if (header === null) return false;
    const space = header.indexOf(" ");
    if (space < 0) return false;
    const scheme = header.slice(0, space).toLowerCase();
    const value = header.slice(space + 1).trim();
    if (scheme === "bearer") return value === this.apiKey;
    if (scheme !== "basic") return false;
    let decoded: string;
    try {
      decoded = atob(value);
    } catch {
      return false;
    }
    const colon = decoded.indexOf(":");
    return colon >= 0 && decoded.slice(colon + 1) === this.apiKey;
  }

  async #webhooksRoute(
    req: Request,
    listId: string,
    webhookId: string | undefined,
    requestId: string,
  ): Promise<Response> {
    if (!this.#lists.has(listId)) {
      await req.body?.cancel();
      return this.#notFound(requestId);
    }
    if (req.method === "GET" && webhookId === undefined) {
      const webhooks = this.webhooks.list(listId);
      return this.#json(
        JSON.stringify({ webhooks, list_id: listId, total_items: webhooks.length }),
        requestId,
      );
    }
    if (req.method === "DELETE" && webhookId !== undefined) {
      await req.body?.cancel();
      if (!this.webhooks.delete(listId, webhookId)) return this.#notFound(requestId);
      return this.#stamp(new Response(null, { status: 204 }), requestId);
    }
    const create = req.method === "POST" && webhookId === undefined;
    const update = req.method === "PATCH" && webhookId !== undefined;
    if (!create && !update) {
      await req.body?.cancel();
      return this.#notFound(requestId);
    }
    let body: Record<string, unknown>;
    try {
      body = await req.json();
    } catch {
      return this.#problem(400, "Invalid Resource", "The request body is not JSON.", requestId);
    }
    const saved = await this.webhooks.save(listId, body, webhookId);
    if (saved === "not found") return this.#notFound(requestId);
    if (typeof saved === "string") return this.#problem(400, "Invalid Resource", saved, requestId);
    // The secret is in the create response only ("Returned exactly once at creation").
    const answer = saved.signingSecret === undefined
      ? saved.webhook
      : { ...saved.webhook, signing_secret: saved.signingSecret };
    return this.#json(JSON.stringify(answer), requestId);
  }

  #notFound(requestId: string): Response {
    return this.#problem(
      404,
      "Resource Not Found",
      "The requested resource could not be found.",
      requestId,
    );
  }

  #json(body: string, requestId: string): Response {
    return this.#stamp(
      new Response(body, { headers: { "content-type": "application/json; charset=utf-8" } }),
      requestId,
    );
  }

  #problem(
    status: number,
    title: string,
    detail: string,
    requestId: string,
    extra: Record<string, unknown> = {},
  ): Response {
    if (status === 429) this.stats.status429++;
    const headers = new Headers({ "content-type": "application/problem+json; charset=utf-8" });
    const retryAfter = this.faults.retryAfterSeconds;
    if ((status === 429 || status === 503) && retryAfter !== undefined) {
      headers.set("retry-after", String(retryAfter));
    }
    const body = { type: _ERROR_DOC, title, status, detail, instance: requestId, ...extra };
    return this.#stamp(new Response(JSON.stringify(body), { status, headers }), requestId);
  }

  #stamp(response: Response, requestId: string): Response {
    response.headers.set("date", new Date(this.#now()).toUTCString());
    response.headers.set("x-request-id", requestId);
    return response;
  }
}

function _settings(
  base: Required<MailchimpSimulatorSettings>,
  changes: Partial<MailchimpSimulatorSettings>,
): Required<MailchimpSimulatorSettings> {
  const next = { ...base };
  for (const key of Object.keys(base) as (keyof MailchimpSimulatorSettings)[]) {
    const value = changes[key];
    if (value !== undefined) Object.assign(next, { [key]: value });
  }
  if (!Number.isInteger(next.maxConnections) || next.maxConnections < 1) {
    throw new RangeError(
      `Cannot configure the simulator as 'maxConnections' must be an integer >= 1: current value ${next.maxConnections}`,
    );
  }
  if (!(next.tornPageRate >= 0 && next.tornPageRate <= 1)) {
    throw new RangeError(
      `Cannot configure the simulator as 'tornPageRate' must be in [0, 1]: current value ${next.tornPageRate}`,
    );
  }
  if (!["stamp", "move", "twice"].includes(next.tornPageMode)) {
    throw new RangeError(
      `Cannot configure the simulator as 'tornPageMode' must be "stamp", "move" or "twice": current value ${next.tornPageMode}`,
    );
  }
  for (const key of ["totalItemsError", "totalItemsJitter", "clockOffsetMs"] as const) {
    const value = next[key];
    if (!Number.isInteger(value) || (key === "totalItemsJitter" && value < 0)) {
      throw new RangeError(
        `Cannot configure the simulator as '${key}' must be an integer${
          key === "totalItemsJitter" ? " >= 0" : ""
        }: current value ${value}`,
      );
    }
  }
  if (!(next.latencyMs >= 0)) {
    throw new RangeError(
      `Cannot configure the simulator as 'latencyMs' must be >= 0: current value ${next.latencyMs}`,
    );
  }
  return next;
}

/** Two independent sequences from one seed: tears, and `total_items` jitter. */
function _quirkRandoms(seed: number): [() => number, () => number] {
  return [seededRandom(seed), seededRandom((seed ^ 0x5bd1e995) >>> 0)];
}

/** A member write's route (see `#memberWrite`), or undefined for any other path or method. */
function _writeRoute(
  method: string,
  pathname: string,
):
  | { kind: "patch" | "put" | "delete-permanent"; listId: string; hash: string }
  | { kind: "add"; listId: string; hash: undefined }
  | undefined {
  const m = /^\/3\.0\/lists\/([^/]+)\/members(?:\/([^/]+)(\/actions\/delete-permanent)?)?\/?$/
    .exec(pathname);
  if (m === null) return undefined;
  try {
    const listId = decodeURIComponent(m[1]!);
    if (m[2] === undefined) {
      return method === "POST" ? { kind: "add", listId, hash: undefined } : undefined;
    }
    const raw = decodeURIComponent(m[2]);
    const hash = raw.includes("@") ? memberId(raw) : raw.toLowerCase();
    if (m[3] !== undefined) {
      return method === "POST" ? { kind: "delete-permanent", listId, hash } : undefined;
    }
    if (method === "PATCH") return { kind: "patch", listId, hash };
    return method === "PUT" ? { kind: "put", listId, hash } : undefined;
  } catch {
    return undefined;
  }
}

function _route(pathname: string): _Route | undefined {
  const d =
    /^\/3\.0\/lists\/([^/]+)\/(merge-fields|interest-categories)(?:\/([^/]+)\/interests)?\/?$/
      .exec(pathname);
  if (d !== null) {
    try {
      const listId = decodeURIComponent(d[1]!);
      if (d[2] === "merge-fields") {
        return d[3] === undefined ? { kind: "merge-fields", listId } : undefined;
      }
      return d[3] === undefined
        ? { kind: "interest-categories", listId }
        : { kind: "interests", listId, categoryId: decodeURIComponent(d[3]) };
    } catch {
      return undefined;
    }
  }
  const m = /^\/3\.0\/(?:(ping)|lists\/([^/]+)(\/members(?:\/([^/]+)(\/tags)?)?)?)\/?$/.exec(
    pathname,
  );
  if (m === null) return undefined;
  if (m[1] !== undefined) return { kind: "ping" };
  let listId: string;
  let hash: string | undefined;
  try {
    listId = decodeURIComponent(m[2]!);
    hash = m[4] === undefined ? undefined : decodeURIComponent(m[4]);
  } catch {
    return undefined;
  }
  if (hash !== undefined) {
    return m[5] === undefined
      ? { kind: "member", listId, hash }
      : { kind: "member-tags", listId, hash };
  }
  return m[3] === undefined ? { kind: "list", listId } : { kind: "members", listId };
}

// ---- members query ------------------------------------------------------------------

/** Member fields in Mailchimp's order, each with its bit in a selection. */
const _MEMBER_FIELDS = [
  "id",
  "email_address",
  "unique_email_id",
  "contact_id",
  "status",
  "merge_fields",
  "timestamp_signup",
  "timestamp_opt",
  "last_changed",
  "interests",
  "language",
  "vip",
  "member_rating",
  "location",
  "tags",
  "tags_count",
] as const;
/** A selection of every member field (what a write answers). */
const _ALL_MEMBER_FIELDS = (1 << _MEMBER_FIELDS.length) - 1;
const _F_ID = 1 << 0;
const _F_EMAIL = 1 << 1;
const _F_UNIQUE = 1 << 2;
const _F_CONTACT = 1 << 3;
const _F_STATUS = 1 << 4;
const _F_MERGE = 1 << 5;
const _F_SIGNUP = 1 << 6;
const _F_OPT = 1 << 7;
const _F_CHANGED = 1 << 8;
const _F_INTERESTS = 1 << 9;
const _F_LANGUAGE = 1 << 10;
const _F_VIP = 1 << 11;
const _F_RATING = 1 << 12;
const _F_LOCATION = 1 << 13;
const _F_TAGS = 1 << 14;
const _F_TAGS_COUNT = 1 << 15;
const _F_EXTRAS = _F_MERGE | _F_INTERESTS | _F_LANGUAGE | _F_VIP | _F_RATING | _F_LOCATION |
  _F_TAGS | _F_TAGS_COUNT;
/** Tags a members listing serves per member: "Returns up to 50 tags" (Mailchimp's SDK). */
const _LISTED_TAGS = 50;
const _TOP_FIELDS = ["members", "list_id", "total_items", "_links"] as const;

interface _Selection {
  top: Set<string>;
  memberFields: number;
  /**
   * The keys of `location` asked for with dot notation (`members.location.country_code`), or
   * undefined for the whole object. The listing's `fields`: "Reference parameters of
   * sub-objects with dot notation" (PY-SDK `get_list_members_info`; docs/API_NOTES.md).
   */
  location?: readonly string[] | undefined;
}

interface _MembersQuery {
  count: number;
  offset: number;
  status?: MemberStatus | undefined;
  since?: number | undefined;
  before?: number | undefined;
  sortField?: _SortField | undefined;
  desc: boolean;
  selection: _Selection;
}

interface _FieldError {
  field: string;
  message: string;
}

function _parseMembersQuery(params: URLSearchParams): _MembersQuery | { errors: _FieldError[] } {
  const errors: _FieldError[] = [];
  const integer = (name: string, fallback: number, max: number): number => {
    const text = params.get(name);
    if (text === null) return fallback;
    if (/^\d+$/.test(text) && Number(text) <= max) return Number(text);
    errors.push({
      field: name,
      message: `The ${name} parameter must be an integer between 0 and ${max}: got '${text}'.`,
    });
    return fallback;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[]): T | undefined => {
    const text = params.get(name);
    if (text === null) return undefined;
    const found = allowed.find((a) => a === text);
    if (found === undefined) {
      errors.push({
        field: name,
        message: `The ${name} parameter must be one of ${allowed.join(", ")}: got '${text}'.`,
      });
    }
    return found;
  };
  const time = (name: string): number | undefined => {
    const text = params.get(name);
    if (text === null) return undefined;
    const parsed = _parseWallClock(text);
    if (parsed === undefined) {
      errors.push({ field: name, message: `The ${name} parameter is not a date: '${text}'.` });
    }
    // Mailchimp's reported bug: fractional seconds make the filter match everything.
    return typeof parsed === "number" ? parsed : undefined;
  };
  const count = integer("count", 10, 1000);
  const offset = integer("offset", 0, Number.MAX_SAFE_INTEGER);
  const status = oneOf("status", MEMBER_STATUSES);
  const sortField = oneOf("sort_field", _SORT_FIELDS);
  const sortDir = params.get("sort_dir");
  if (sortDir !== null && !/^(asc|desc)$/i.test(sortDir)) {
    errors.push({ field: "sort_dir", message: `The sort_dir parameter must be ASC or DESC.` });
  }
  const since = time("since_last_changed");
  const before = time("before_last_changed");
  if (errors.length > 0) return { errors };
  return {
    count,
    offset,
    status,
    since,
    before,
    sortField,
    desc: sortField !== undefined && sortDir?.toUpperCase() === "DESC",
    selection: _selection(_list(params.get("fields")), _list(params.get("exclude_fields")) ?? []),
  };
}

function _list(text: string | null): string[] | undefined {
  if (text === null) return undefined;
  return text.split(",").map((f) => f.trim()).filter((f) => f !== "");
}

/**
 * Applies `fields`/`exclude_fields`. `merge_fields` is atomic: asking for any path below
 * it returns the whole object, and only excluding `members.merge_fields` itself drops it.
 */
function _selection(fields: string[] | undefined, exclude: string[]): _Selection {
  const excluded = new Set(exclude);
  const asked = (path: string): boolean =>
    fields === undefined || fields.some((f) => f === path || f.startsWith(path + "."));
  const top = new Set(_TOP_FIELDS.filter((f) => asked(f) && !excluded.has(f)));
  let memberFields = 0;
  const wholeMembers = fields === undefined || fields.includes("members");
  _MEMBER_FIELDS.forEach((name, bit) => {
    const path = `members.${name}`;
    if ((wholeMembers || asked(path)) && !excluded.has(path)) memberFields |= 1 << bit;
  });
  return {
    top,
    memberFields,
    location: wholeMembers ? undefined : _subKeys(fields, "members.location"),
  };
}

/**
 * The keys below `path` that `fields` names with dot notation, or undefined when it names
 * `path` itself (or nothing below it): the whole object is served then.
 */
function _subKeys(fields: string[] | undefined, path: string): string[] | undefined {
  if (fields === undefined || fields.includes(path)) return undefined;
  const keys = fields.filter((f) => f.startsWith(path + ".")).map((f) => f.slice(path.length + 1));
  return keys.length === 0 ? undefined : keys;
}

/**
 * Applies `fields`/`exclude_fields` to a single member's answer, where member fields sit at
 * the top level (`fields=id,email_address,merge_fields`) next to `list_id` and `_links`.
 */
function _memberSelection(fields: string[] | undefined, exclude: string[]): _Selection {
  const excluded = new Set(exclude);
  const asked = (name: string): boolean =>
    fields === undefined || fields.some((f) => f === name || f.startsWith(name + "."));
  let memberFields = 0;
  _MEMBER_FIELDS.forEach((name, bit) => {
    if (asked(name) && !excluded.has(name)) memberFields |= 1 << bit;
  });
  const top = new Set(["list_id", "_links"].filter((f) => asked(f) && !excluded.has(f)));
  return { top, memberFields, location: _subKeys(fields, "location") };
}

/**
 * Parses `since_last_changed`/`before_last_changed` as Mailchimp does: the wall-clock
 * digits are read as UTC whatever the offset says (a `+` sent unencoded arrives as a
 * space and is accepted too). Returns whole seconds, `"fractional"` for a value with
 * fractional seconds, or undefined when it is not a date.
 */
function _parseWallClock(text: string): number | "fractional" | undefined {
  const m =
    /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?(?:Z|[+\- ]\d{2}(?::?\d{2})?)?$/i
      .exec(text);
  if (m === null) return undefined;
  const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? "0")) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  const date = new Date(ms);
  if (date.getUTCDate() !== d || date.getUTCMonth() !== mo - 1 || h > 23 || mi > 59 || s > 59) {
    return undefined;
  }
  return m[7] !== undefined ? "fractional" : ms / 1000;
}

/** The O(n) path: default order with a window, or sorting by a timestamp other than last_changed. */
function _scanPage(
  all: MemberRecord[],
  window: ChangeWindow,
  page: PageRequest,
  sortField: _SortField | undefined,
): RecordPage {
  const { since, before } = window;
  const matching = all.filter((r) =>
    ((page.mask >> STATUS_CLASS[r.status]) & 1) === 1 &&
    (since === undefined || r.changed > since || (window.sinceInclusive && r.changed === since)) &&
    (before === undefined || r.changed < before ||
      (window.beforeInclusive && r.changed === before))
  );
  let ordered = matching;
  if (sortField !== undefined) {
    const key = (r: MemberRecord): number =>
      sortField === "last_changed" ? r.changed : sortField === "timestamp_opt" ? r.opt : r.signup;
    const tie = page.tieKey;
    const keyed = matching.map((r, i) => ({
      r,
      i,
      k: key(r),
      t: tie === undefined ? 0 : mix32(tie ^ mix32(i)),
    }));
    keyed.sort((a, b) => a.k - b.k || a.t - b.t || a.i - b.i);
    ordered = keyed.map((e) => e.r);
    if (page.desc) ordered.reverse();
  }
  return {
    total: matching.length,
    records: ordered.slice(page.offset, page.offset + page.count),
  };
}

// ---- JSON ---------------------------------------------------------------------------

function _pageJson(list: _List, page: RecordPage, selection: _Selection, serve: _Serve): string {
  const parts: string[] = [];
  if (selection.top.has("members")) {
    const f = selection.memberFields;
    const corrupt = list.corrupt;
    const members = corrupt.size === 0
      ? page.records.map((r) => _memberJson(r, f, serve, selection.location))
      : page.records.map((r) => _servedMemberJson(r, f, corrupt, serve, selection.location));
    parts.push(`"members":[${members.join(",")}]`);
  }
  if (selection.top.has("list_id")) parts.push(`"list_id":${JSON.stringify(list.id)}`);
  if (selection.top.has("total_items")) parts.push(`"total_items":${page.total}`);
  if (selection.top.has("_links")) parts.push(`"_links":[]`);
  return `{${parts.join(",")}}`;
}

/** One member as JSON, built by hand: ids and times need no escaping, strings use JSON.stringify. */
function _memberJson(
  r: MemberRecord,
  f: number,
  serve: _Serve,
  location?: readonly string[],
): string {
  let s = "";
  const profile = serve.profile;
  const x = (f & _F_EXTRAS) === 0 ? undefined : extrasOf(r, profile);
  if (f & _F_ID) s += `,"id":"${r.id}"`;
  if (f & _F_EMAIL) s += `,"email_address":${JSON.stringify(r.email)}`;
  if (f & _F_UNIQUE) s += `,"unique_email_id":"${uniqueEmailIdOf(r.id)}"`;
  if (f & _F_CONTACT) s += `,"contact_id":"${contactIdOf(r.id)}"`;
  if (f & _F_STATUS) s += `,"status":"${r.status}"`;
  if (f & _F_MERGE) {
    s += `,"merge_fields":{"FNAME":${JSON.stringify(r.fname)},"LNAME":${JSON.stringify(r.lname)}`;
    for (const [tag, value] of Object.entries(x!.merge)) {
      const served = servedMergeValue(serve.types.get(tag), value, serve.formats, serve.dateValues);
      s += `,${JSON.stringify(tag)}:${JSON.stringify(served)}`;
    }
    s += "}";
  }
  if (f & _F_SIGNUP) s += `,"timestamp_signup":"${_formatOptional(r.signup)}"`;
  if (f & _F_OPT) s += `,"timestamp_opt":"${_formatOptional(r.opt)}"`;
  if (f & _F_CHANGED) s += `,"last_changed":"${_formatSeconds(r.changed)}"`;
  // Mailchimp leaves `interests` out on a list without interest categories.
  if ((f & _F_INTERESTS) && (profile === "retail" || Object.keys(x!.interests).length > 0)) {
    s += `,"interests":${JSON.stringify(x!.interests)}`;
  }
  if (f & _F_LANGUAGE) s += `,"language":${JSON.stringify(x!.language)}`;
  if (f & _F_VIP) s += `,"vip":${x!.vip}`;
  if (f & _F_RATING) s += `,"member_rating":${x!.member_rating}`;
  if (f & _F_LOCATION && location !== undefined) {
    s += `,"location":${JSON.stringify(_locationOf(x!, location))}`;
  } else if (f & _F_LOCATION) {
    s += `,"location":{"latitude":0,"longitude":0,"gmtoff":0,"dstoff":0,"country_code":${
      JSON.stringify(x!.country_code)
    },"timezone":""}`;
  }
  if (f & _F_TAGS) s += `,"tags":${JSON.stringify(_tagsJson(x!.tags.slice(0, _LISTED_TAGS)))}`;
  if (f & _F_TAGS_COUNT) s += `,"tags_count":${x!.tags.length}`;
  return s === "" ? "{}" : `{${s.slice(1)}}`;
}

/** The member's whole `location`, as a member's answer serves it. */
function _wholeLocation(x: MemberExtras): SimMember["location"] {
  return {
    latitude: 0,
    longitude: 0,
    gmtoff: 0,
    dstoff: 0,
    country_code: x.country_code,
    timezone: "",
  };
}

/** The member's `location`, only the keys asked for (unknown keys are left out, as Mailchimp does). */
function _locationOf(x: MemberExtras, keys: readonly string[]): Record<string, unknown> {
  const whole: Record<string, unknown> = _wholeLocation(x);
  return Object.fromEntries(keys.filter((k) => k in whole).map((k) => [k, whole[k]]));
}

/**
 * One member as served: its true JSON, or, for a member served malformed, that JSON with
 * the overrides applied (selected member fields replaced or removed, unknown keys added).
 */
function _servedMemberJson(
  r: MemberRecord,
  f: number,
  corrupt: ReadonlyMap<string, Record<string, unknown>>,
  serve: _Serve,
  location?: readonly string[],
): string {
  const json = _memberJson(r, f, serve, location);
  const overrides = corrupt.get(r.id);
  if (overrides === undefined) return json;
  const member = JSON.parse(json) as Record<string, unknown>;
  for (const [key, value] of Object.entries(overrides)) {
    const bit = (_MEMBER_FIELDS as readonly string[]).indexOf(key);
    if (bit >= 0 && (f & (1 << bit)) === 0) continue;
    if (value === undefined) delete member[key];
    else member[key] = value;
  }
  return JSON.stringify(member);
}

function _listJson(list: _List): string {
  const count = (s: MemberStatus) => list.index.count(statusMask([s]));
  return JSON.stringify({
    id: list.id,
    name: list.name,
    stats: {
      member_count: count("subscribed"),
      unsubscribe_count: count("unsubscribed"),
      cleaned_count: count("cleaned"),
      total_contacts: list.index.size,
    },
    _links: [],
  });
}

/** Tags as Mailchimp serves them: `{id, name}`, the id stable for a name. */
function _tagsJson(names: readonly string[]): { id: number; name: string }[] {
  return names.map((name) => ({ id: _tagId(name), name }));
}

function _tagId(name: string): number {
  let h = 0;
  for (const c of name) h = (Math.imul(h, 31) + c.codePointAt(0)!) >>> 0;
  return h % 1_000_000;
}

/**
 * A `fields`-style listing (`merge_fields`, `categories`, `interests`) with `count`,
 * `offset` and `total_items`; `fields` is not applied (the whole items are served).
 */
function _listing(key: string, items: readonly object[], params: URLSearchParams): string {
  const count = Math.min(1000, Number(params.get("count") ?? 10) || 10);
  const offset = Number(params.get("offset") ?? 0) || 0;
  return JSON.stringify({
    [key]: items.slice(offset, offset + count),
    total_items: items.length,
    _links: [],
  });
}

function _toSimMember(r: MemberRecord, profile: ListProfile): SimMember {
  const x = extrasOf(r, profile);
  return {
    id: r.id,
    email_address: r.email,
    status: r.status,
    merge_fields: { FNAME: r.fname, LNAME: r.lname, ...x.merge },
    tags: _tagsJson(x.tags),
    tags_count: x.tags.length,
    ...(profile === "retail" || Object.keys(x.interests).length > 0
      ? { interests: { ...x.interests } }
      : {}),
    language: x.language,
    vip: x.vip,
    member_rating: x.member_rating,
    location: _wholeLocation(x),
    last_changed: _formatSeconds(r.changed),
    timestamp_opt: _formatOptional(r.opt),
    timestamp_signup: _formatOptional(r.signup),
    contact_id: contactIdOf(r.id),
    unique_email_id: uniqueEmailIdOf(r.id),
  };
}

const _TWO_DIGITS = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, "0"));
const _dayPrefixes = new Map<number, string>();

/**
 * `formatMailchimpTime` for whole seconds, about ten times faster (a page has up to 3000
 * times to format): the `YYYY-MM-DDT` prefix of each day is computed once.
 */
function _formatSeconds(sec: number): string {
  const day = Math.floor(sec / 86400);
  let prefix = _dayPrefixes.get(day);
  if (prefix === undefined) {
    if (_dayPrefixes.size >= 100_000) _dayPrefixes.clear();
    prefix = new Date(day * _DAY_MS).toISOString().slice(0, 11);
    _dayPrefixes.set(day, prefix);
  }
  const rest = sec - day * 86400;
  return `${prefix}${_TWO_DIGITS[Math.floor(rest / 3600)]}:${
    _TWO_DIGITS[Math.floor(rest / 60) % 60]
  }:${_TWO_DIGITS[rest % 60]}+00:00`;
}

function _formatOptional(sec: number): string {
  return sec < 0 ? "" : _formatSeconds(sec);
}
