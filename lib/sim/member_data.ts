/**
 * Seeded, varied list members for the Mailchimp simulator: the same seed gives the same
 * members on every run, and the data carries what breaks naive code — Unicode and empty
 * names, quotes and backslashes, every status, mixed-case and plus-addressed emails, bulk
 * imports where thousands share one `last_changed`.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { MEMBER_STATUSES, type MemberStatus } from "../mailchimp/member.ts";
import type { MemberExtras, MemberRecord } from "./_member_index.ts";
import { seededRandom } from "./random.ts";

/** First names, including empty, accented, CJK, emoji and JSON-hostile ones. */
export const FIRST_NAMES: readonly string[] = [
  "Anna",
  "José",
  "Zoë",
  "Björn",
  "Jürgen",
  "Renée",
  "François",
  "Søren",
  "Łukasz",
  "中文",
  "明",
  "Мария",
  "Αλέξανδρος",
  "محمد",
  "😀",
  "Anne-Marie",
  "D'Arcy",
  'Say "Hi"',
  "Back\\slash",
  "",
  "Li",
  "Noël",
  "Ólafur",
  "Chloé 🌸",
];

/** Last names, same spirit as {@linkcode FIRST_NAMES}. */
export const LAST_NAMES: readonly string[] = [
  "Müller",
  "Straße",
  "Weiß",
  "García",
  "Nguyễn",
  "O'Connor",
  "van der Berg",
  "佐藤",
  "李",
  "🚀",
  "",
  "Smith",
  "Łęcki",
  "Ørsted",
  "Dvořák",
  "Tab\tSeparated",
];

const _LOCAL = [
  "anna",
  "jose",
  "zoe",
  "bjorn",
  "juergen",
  "renee",
  "francois",
  "soren",
  "lukasz",
  "wang",
  "ming",
  "maria",
  "alex",
  "mohammed",
  "anne.marie",
  "darcy",
  "li",
  "noel",
  "olafur",
  "chloe",
];
const _LAST_LOCAL = ["mueller", "strasse", "weiss", "garcia", "nguyen", "oconnor", "smith"];
const _DOMAINS = [
  "example.com",
  "Example.COM",
  "mail.example.org",
  "EXAMPLE.net",
  "sub.Example.co.uk",
  "example.io",
];
const _TAGS = ["news", "promo", "Shop", "x"];

/** Weights of each status in generated data, in {@linkcode MEMBER_STATUSES} order. */
const _STATUS_WEIGHTS = [0.6, 0.15, 0.05, 0.08, 0.07, 0.05];

/** Options of {@linkcode generateMembers}. */
export interface GenerateMembersOptions {
  /** How many members to generate (tie groups come on top). */
  count: number;
  /** Seed of the data. @default {1} */
  seed?: number;
  /** Earliest `last_changed`, epoch milliseconds (rounded up to the second). */
  fromMs: number;
  /** Latest `last_changed`, epoch milliseconds (rounded down to the second). */
  toMs: number;
  /** Extra members, `size` of them per group, all sharing `last_changed` = `at` (ms). */
  tieGroups?: readonly { at: number; size: number }[];
}

/**
 * Generates members in creation order. Each email embeds its member number right before
 * `@` or `+`, so two members never share a lowercased address (nor an id). The first six
 * members take each status in turn so that every status appears in any list of six or
 * more; `timestamp_opt` is set for every subscribed member and for some others.
 */
export function generateMembers(options: GenerateMembersOptions): MemberRecord[] {
  const { count } = options;
  const fromSec = Math.ceil(options.fromMs / 1000);
  const toSec = Math.floor(options.toMs / 1000);
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(`Cannot generate members as 'count' must be an integer >= 0: ${count}`);
  }
  if (count > 0 && toSec < fromSec) {
    throw new RangeError(
      `Cannot generate members as 'fromMs' must be <= 'toMs': current values ${options.fromMs} and ${options.toMs}`,
    );
  }
  const random = seededRandom(options.seed ?? 1);
  const out: MemberRecord[] = [];
  const span = toSec - fromSec + 1;
  for (let i = 0; i < count; i++) {
    out.push(_member(random, i, fromSec + Math.floor(random() * span)));
  }
  let n = count;
  for (const group of options.tieGroups ?? []) {
    const at = Math.floor(group.at / 1000);
    for (let j = 0; j < group.size; j++) out.push(_member(random, n++, at));
  }
  return out;
}

/**
 * The next state of `member` after a change at `nowSec`, drawn from `random`: new names,
 * a new status, or both. Becoming subscribed stamps `timestamp_opt` with the change time.
 */
export function changedMember(
  member: MemberRecord,
  random: () => number,
  nowSec: number,
): MemberRecord {
  const what = random();
  const names = what < 0.7;
  const status = what >= 0.4 ? _otherStatus(member.status, random) : member.status;
  return {
    ...member,
    ...(names ? { fname: _pick(FIRST_NAMES, random), lname: _pick(LAST_NAMES, random) } : {}),
    status,
    changed: nowSec,
    opt: status === "subscribed" && member.status !== "subscribed" ? nowSec : member.opt,
  };
}

/**
 * `member` renamed at `nowSec`: new first and/or last names drawn from `random`, always
 * different from the old pair, status untouched so that the member stays in any
 * status-filtered listing it was in (what a torn page needs).
 */
export function renamedMember(
  member: MemberRecord,
  random: () => number,
  nowSec: number,
): MemberRecord {
  let fname = member.fname;
  let lname = member.lname;
  while (fname === member.fname && lname === member.lname) {
    fname = _pick(FIRST_NAMES, random);
    lname = _pick(LAST_NAMES, random);
  }
  return { ...member, fname, lname, changed: nowSec };
}

/**
 * A member created by hand (`upsertMember`): given email and names, `timestamp_opt` set
 * when subscribed, no signup time.
 */
export function newMember(
  email: string,
  status: MemberStatus,
  names: { fname: string; lname: string },
  nowSec: number,
): MemberRecord {
  return {
    id: memberId(email),
    email,
    status,
    fname: names.fname,
    lname: names.lname,
    changed: nowSec,
    opt: status === "subscribed" ? nowSec : -1,
    signup: -1,
  };
}

/** Mailchimp's member id: the hex MD5 of the lowercased email address. */
export function memberId(email: string): string {
  return createHash("md5").update(email.toLowerCase()).digest("hex");
}

/**
 * A member's `contact_id`, derived from its id rather than stored: stable, distinct from
 * the id, and free of memory on a million-member list.
 */
export function contactIdOf(id: string): string {
  return id.slice(16) + id.slice(0, 16);
}

/** A member's `unique_email_id` (10 hex digits), derived from its id like `contactIdOf`. */
export function uniqueEmailIdOf(id: string): string {
  return id.slice(3, 13);
}

function _member(random: () => number, n: number, changed: number): MemberRecord {
  const status = n < MEMBER_STATUSES.length ? MEMBER_STATUSES[n]! : _status(random);
  const email = _email(random, n);
  const hasOpt = status === "subscribed" || random() < 0.4;
  const opt = hasOpt ? changed - Math.floor(random() * 86400 * 400) : -1;
  const signup = random() < 0.3 ? (hasOpt ? opt : changed) - Math.floor(random() * 86400) : -1;
  return {
    id: memberId(email),
    email,
    status,
    fname: _pick(FIRST_NAMES, random),
    lname: _pick(LAST_NAMES, random),
    changed,
    opt,
    signup,
  };
}

function _email(random: () => number, n: number): string {
  const first = _pick(_LOCAL, random);
  const domain = _pick(_DOMAINS, random);
  const form = random();
  if (form < 0.5) return `${first}.${_pick(_LAST_LOCAL, random)}${n}@${domain}`;
  if (form < 0.8) {
    const capital = first.charAt(0).toUpperCase() + first.slice(1);
    return `${capital}${n}+${_pick(_TAGS, random)}@${domain}`;
  }
  return `${first.toUpperCase()}_${n}@${domain}`;
}

function _status(random: () => number): MemberStatus {
  let r = random();
  for (let i = 0; i < MEMBER_STATUSES.length; i++) {
    r -= _STATUS_WEIGHTS[i]!;
    if (r < 0) return MEMBER_STATUSES[i]!;
  }
  return MEMBER_STATUSES[0];
}

function _otherStatus(current: MemberStatus, random: () => number): MemberStatus {
  const others = MEMBER_STATUSES.filter((s) => s !== current);
  return _pick(others, random);
}

function _pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)]!;
}

/** Which fields a simulated list has: names only (the default), or a retailer's set. */
export type ListProfile = "names" | "retail";

/** A merge field definition as the simulator serves it. */
export interface SimMergeField {
  tag: string;
  type: string;
  name: string;
}

/** A category of interests (groups), as the simulator serves it. */
export interface SimInterestCategory {
  id: string;
  title: string;
  interests: readonly { id: string; name: string }[];
}

const _NAME_FIELDS: readonly SimMergeField[] = [
  { tag: "FNAME", type: "text", name: "First Name" },
  { tag: "LNAME", type: "text", name: "Last Name" },
];

/**
 * The merge fields of a list of each profile: the retail one has one of every type a
 * retailer uses — an address (an object), a phone, a year-less birthday, a dropdown, a
 * number, a full date.
 */
export const MERGE_FIELDS: Readonly<Record<ListProfile, readonly SimMergeField[]>> = {
  names: _NAME_FIELDS,
  retail: [
    ..._NAME_FIELDS,
    { tag: "ADDRESS", type: "address", name: "Address" },
    { tag: "PHONE", type: "phone", name: "Phone Number" },
    { tag: "BIRTHDAY", type: "birthday", name: "Birthday" },
    { tag: "GENDER", type: "dropdown", name: "Gender" },
    { tag: "SHOESIZE", type: "number", name: "Shoe size" },
    { tag: "CARDSINCE", type: "date", name: "Store card since" },
  ],
};

/** The interest categories of a list of each profile. */
export const INTEREST_CATEGORIES: Readonly<Record<ListProfile, readonly SimInterestCategory[]>> = {
  names: [],
  retail: [
    {
      id: "c1a2b3c4d5",
      title: "Favourite department",
      interests: [
        { id: "a1b2c3d4e5", name: "Shoes" },
        { id: "f6a7b8c9d0", name: "Bags" },
        { id: "0a1b2c3d4e", name: "Menswear" },
      ],
    },
    {
      id: "c6d7e8f9a0",
      title: "Nearest store",
      interests: [
        { id: "5f6e7d8c9b", name: "London" },
        { id: "9b8a7f6e5d", name: "Paris" },
      ],
    },
  ],
};

/** Tag names retail members carry, Unicode and spaces included. */
export const RETAIL_TAGS: readonly string[] = ["VIP", "Newsletter", "Black Friday 2025", "Café"];

const _NO_EXTRAS: MemberExtras = {
  merge: {},
  tags: [],
  interests: {},
  language: "",
  vip: false,
  member_rating: 2,
  country_code: "",
};

const _CITIES = [
  { city: "London", state: "", zip: "SW1A 1AA", country: "GB", language: "en" },
  { city: "München", state: "Bayern", zip: "80331", country: "DE", language: "de" },
  { city: "Paris", state: "", zip: "75001", country: "FR", language: "fr" },
  { city: "Austin", state: "TX", zip: "78701", country: "US", language: "" },
];

/**
 * A member's extras: those set by hand, else derived from its id for a retail list (the
 * same id always gives the same fields, empty ones included), else a names-only member's.
 */
export function extrasOf(record: MemberRecord, profile: ListProfile): MemberExtras {
  if (record.extra !== undefined) return record.extra;
  if (profile === "names") return _NO_EXTRAS;
  const n = (from: number) => parseInt(record.id.slice(from, from + 4), 16);
  const place = _CITIES[n(0) % _CITIES.length]!;
  const empty = n(4) % 7 === 0; // some members left most fields empty, as real ones do
  const interests: Record<string, boolean> = {};
  let bit = 0;
  for (const category of INTEREST_CATEGORIES.retail) {
    for (const interest of category.interests) interests[interest.id] = ((n(8) >> bit++) & 1) === 1;
  }
  const month = 1 + n(12) % 12;
  const day = 1 + n(16) % 28;
  return {
    merge: empty
      ? { ADDRESS: "", PHONE: "", BIRTHDAY: "", GENDER: "", SHOESIZE: "", CARDSINCE: "" }
      : {
        ADDRESS: {
          addr1: `${1 + n(20) % 200} High Street`,
          addr2: n(20) % 3 === 0 ? "Flat 2" : "",
          city: place.city,
          state: place.state,
          zip: place.zip,
          country: place.country,
        },
        PHONE: `+44 7700 ${String(n(24) % 1_000_000).padStart(6, "0")}`,
        BIRTHDAY: `${String(month).padStart(2, "0")}/${String(day).padStart(2, "0")}`,
        GENDER: ["Female", "Male", "Non-binary", ""][n(28) % 4]!,
        SHOESIZE: 36 + n(28) % 11,
        CARDSINCE: `20${String(10 + n(0) % 15)}-${String(month).padStart(2, "0")}-${
          String(day).padStart(2, "0")
        }`,
      },
    tags: RETAIL_TAGS.filter((_, i) => ((n(4) >> i) & 1) === 1),
    interests,
    language: place.language,
    vip: n(8) % 5 === 0,
    member_rating: 1 + n(12) % 5,
    country_code: empty ? "" : place.country,
  };
}
