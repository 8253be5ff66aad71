/**
 * A connection's `fields` resolved against its list's definitions (merge fields with their
 * types, interests with their names), and the pure function that applies it to a member.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import type { MergeFieldDefinition } from "../mailchimp/list_definitions.ts";
import type { FieldTarget, FullFieldsConfig, MemberSource } from "./fields_config.ts";

/** Where each merge tag goes, with its Mailchimp type. */
export interface MergeFieldRoute {
  target: FieldTarget;
  type: string;
}

/**
 * A mapping ready to apply: every merge tag of the list routed, member fields routed, tags
 * and interests with what they need. Built by {@linkcode resolveMapping}.
 */
export interface ContactMapping {
  mergeFields: ReadonlyMap<string, MergeFieldRoute>;
  /** Merge tags the list did not define when the mapping was resolved (added since). */
  otherMergeFields: "properties" | "ignore";
  member: Readonly<Record<MemberSource, FieldTarget>>;
  tags: FullFieldsConfig["tags"];
  interests: `properties.${string}` | null;
  /** Interest id → name (empty until a member with an interest is met). */
  interestNames: ReadonlyMap<string, string>;
}

/** Mailchimp's address sub-fields, in its order: each becomes `<property>_<sub-field>`. */
export const ADDRESS_PARTS = ["addr1", "addr2", "city", "state", "zip", "country"] as const;

/**
 * Resolves `fields` against a list's merge fields: explicit tags the list lacks, and
 * impossible routes (a year-less `birthday` to `date_of_birth`, an address to anything but
 * a property), are returned as problems naming them; otherwise the mapping.
 */
export function resolveMapping(
  fields: FullFieldsConfig,
  definitions: readonly MergeFieldDefinition[],
  interestNames: ReadonlyMap<string, string> = new Map(),
): { mapping: ContactMapping } | { problems: string[] } {
  const byTag = new Map(definitions.map((d) => [d.tag, d]));
  const problems: string[] = [];
  const unknown = Object.keys(fields.mergeFields).filter((t) => !byTag.has(t));
  if (unknown.length > 0) {
    problems.push(
      `"fields.merge_fields" names merge tag(s) the list does not have: ${unknown.join(", ")}` +
        ` (it has ${[...byTag.keys()].join(", ") || "none"}); fix the spelling or remove them`,
    );
  }
  const routes = new Map<string, MergeFieldRoute>();
  const explicitTargets = new Set(Object.values(fields.mergeFields));
  let phoneTaken = explicitTargets.has("phone_number");
  for (const d of definitions) {
    if (d.tag === "FNAME" || d.tag === "LNAME") continue;
    let target: FieldTarget;
    if (d.tag in fields.mergeFields) {
      target = fields.mergeFields[d.tag]!;
    } else if (fields.otherMergeFields === "ignore") {
      target = null;
    } else {
      target = defaultTarget(d, phoneTaken, explicitTargets);
      if (target === "phone_number") phoneTaken = true;
    }
    if (d.type === "birthday" && target === "date_of_birth") {
      problems.push(
        `merge tag ${d.tag} is a birthday (MM/DD, no year) and cannot be date_of_birth; ` +
          `map it to properties.<name>`,
      );
    }
    if (d.type === "address" && target !== null && !target.startsWith("properties.")) {
      problems.push(`merge tag ${d.tag} is an address (an object): map it to properties.<name>`);
    }
    routes.set(d.tag, { target, type: d.type });
  }
  if (problems.length > 0) return { problems };
  return {
    mapping: {
      mergeFields: routes,
      otherMergeFields: fields.otherMergeFields,
      member: fields.member,
      tags: fields.tags,
      interests: fields.interests,
      interestNames,
    },
  };
}

/**
 * Where a merge tag nobody named goes: a phone field to `phone_number` (the first one,
 * unless another field already goes there), `GENDER` to `gender`, the rest to
 * `properties.<tag in lower case>` (a birthday has no year, so never `date_of_birth`).
 */
export function defaultTarget(
  d: Pick<MergeFieldDefinition, "tag" | "type">,
  phoneTaken = false,
  taken: ReadonlySet<FieldTarget> = new Set(),
): FieldTarget {
  if (d.type === "phone" && !phoneTaken) return "phone_number";
  if (d.tag.toUpperCase() === "GENDER" && !taken.has("gender")) return "gender";
  return `properties.${d.tag.toLowerCase()}`;
}

/**
 * The fields `mapping` adds to a contact for `member`: Ometria's own fields at the top
 * level, the rest under `properties`, tags as a property or as `@add_to_lists` /
 * `@remove_from_lists`. Empty values are left out, so a field cleared in Mailchimp is
 * cleared in Ometria when the record replaces the old one. Throws a `TypeError` for a value
 * Ometria's field cannot hold (a `date_of_birth` that is not YYYY-MM-DD): the member is
 * then quarantined with that reason rather than sent wrong.
 */
export function mappedFields(member: Member, mapping: ContactMapping): Record<string, unknown> {
  const top: Record<string, unknown> = {};
  const properties: Record<string, unknown> = {};
  const put = (target: FieldTarget, value: unknown, from: string) => {
    if (target === null || value === undefined || value === null || value === "") return;
    if (target.startsWith("properties.")) {
      properties[target.slice(11)] = value;
      return;
    }
    top[target] = _ometriaValue(target, value, from);
  };
  const merge = member.merge_fields;
  for (const tag in merge) {
    if (tag === "FNAME" || tag === "LNAME" || !Object.hasOwn(merge, tag)) continue;
    const value = merge[tag];
    const route = mapping.mergeFields.get(tag) ??
      (mapping.otherMergeFields === "ignore"
        ? { target: null, type: "text" }
        : { target: defaultTarget({ tag, type: "text" }, true), type: "text" });
    if (route.target === null) continue;
    if (typeof value === "object" && value !== null && route.target.startsWith("properties.")) {
      // An address (the only object Mailchimp serves in merge fields): one property per
      // part, since Ometria segments on flat values.
      const parts = value as Record<string, unknown>;
      for (const part of ADDRESS_PARTS) {
        put(`${route.target}_${part}` as FieldTarget, _text(parts[part]), `${tag}.${part}`);
      }
      continue;
    }
    put(route.target, typeof value === "object" ? undefined : value, tag);
  }
  const m = mapping.member;
  put(m.language, member.language, "language");
  put(m.vip, member.vip, "vip");
  put(m.member_rating, member.member_rating, "member_rating");
  put(m.timestamp_signup, member.timestamp_signup || member.timestamp_opt, "timestamp_signup");
  put(m.country, member.location?.country_code?.toUpperCase(), "location.country_code");
  if (member.status === "unsubscribed" || member.status === "cleaned") {
    put(m.unsubscribed_at, member.last_changed, "last_changed");
  }
  if (mapping.tags !== null && member.tags != null) {
    const names = member.tags.map((t) => t.name);
    if (typeof mapping.tags === "string") {
      properties[mapping.tags.slice(11)] = [...names].sort();
    } else {
      const has = new Set(names);
      const add: string[] = [];
      const remove: string[] = [];
      for (const [tag, list] of Object.entries(mapping.tags.lists)) {
        (has.has(tag) ? add : remove).push(list);
      }
      if (add.length > 0) top["@add_to_lists"] = add;
      if (remove.length > 0) top["@remove_from_lists"] = remove;
    }
  }
  if (mapping.interests !== null && member.interests != null) {
    const names = Object.entries(member.interests)
      .filter(([, on]) => on)
      .map(([id]) => mapping.interestNames.get(id) ?? id)
      .sort();
    properties[mapping.interests.slice(11)] = names;
  }
  if (Object.keys(properties).length > 0) top.properties = properties;
  return top;
}

function _text(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}

/** A value in the form Ometria's field takes. */
function _ometriaValue(target: string, value: unknown, from: string): unknown {
  switch (target) {
    case "date_of_birth": {
      const text = String(value).trim();
      if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) {
        throw new TypeError(
          `${from} ${JSON.stringify(value)} is not a date (YYYY-MM-DD) for date_of_birth`,
        );
      }
      return text;
    }
    case "gender": {
      // Single letters, as Ometria's integrations send them; anything else stated is "o".
      const g = String(value).trim().toLowerCase();
      return g === "f" || g === "female" || g === "woman"
        ? "f"
        : g === "m" || g === "male" || g === "man"
        ? "m"
        : "o";
    }
    case "country_id":
      return String(value).trim().toUpperCase();
    default:
      return typeof value === "number" || typeof value === "boolean" ? String(value) : value;
  }
}
