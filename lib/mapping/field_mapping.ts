/**
 * A connection's `fields` resolved against its list's definitions (merge fields with their
 * types, interests with their names), and the pure function that applies it to a member.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import type { MergeFieldDefinition } from "../mailchimp/list_definitions.ts";
import type { FieldTarget, FullFieldsConfig, MemberSource } from "./fields_config.ts";
import { type DroppedReason, normaliseBirthday, normaliseDate, toE164 } from "./formats.ts";

/** Where each merge tag goes, with its Mailchimp type and the formats its options name. */
export interface MergeFieldRoute {
  target: FieldTarget;
  type: string;
  options?: MergeFieldDefinition["options"];
}

/** A value the mapping left out: where it was going, where from, and why. */
export interface DroppedValue {
  /** The Ometria field, e.g. `phone_number` or `properties.birthday`. */
  target: string;
  /** The Mailchimp field, e.g. the merge tag `PHONE`. */
  from: string;
  reason: DroppedReason;
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
  /** How a field emptied in Mailchimp is sent (see `fields.cleared`). */
  cleared: FullFieldsConfig["cleared"];
  /**
   * Every tag of the members whose listing did not carry them all (see
   * {@linkcode needsAllTags}), by member id; an `Error` when they could not be read.
   */
  allTags: ReadonlyMap<string, readonly string[] | Error>;
  /** Told of every value left out because it could not be normalised (counted, logged). */
  onDropped?: ((dropped: DroppedValue) => void) | undefined;
  /**
   * Whether a member is sent with `@force_optin` (`force_optin_on_resubscribe`, see
   * `force_optin.ts`); never, when absent.
   */
  forceOptin?: ((member: Member) => boolean) | undefined;
}

/**
 * Whether a member's listing left tags out: Mailchimp serves at most 50 and says how many
 * there are in `tags_count`; without a count, 50 served may be 50 of more.
 */
export function needsAllTags(member: Member): boolean {
  const tags = member.tags;
  if (tags == null) return false;
  return member.tags_count != null ? member.tags_count > tags.length : tags.length >= 50;
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
    routes.set(
      d.tag,
      d.options ? { target, type: d.type, options: d.options } : {
        target,
        type: d.type,
      },
    );
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
      cleared: fields.cleared,
      allTags: new Map(),
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
 * `@remove_from_lists`. A field emptied in Mailchimp is sent as `mapping.cleared` says (null
 * by default): Ometria merges a partial record, so a field left out keeps its old value
 * there (docs/API_NOTES.md, "Ometria push"). Dates, birthdays and phone numbers are
 * normalised by their merge field's options; a value that cannot be is left out and told to
 * `mapping.onDropped`. Throws a `TypeError` when the member's full tag set was needed but
 * could not be read: the member is then quarantined rather than taken off lists it is on.
 */
export function mappedFields(member: Member, mapping: ContactMapping): Record<string, unknown> {
  const fields = new _Fields(mapping);
  _mergeFields(member, mapping, fields);
  const m = mapping.member;
  fields.put(m.language, member.language, "language");
  fields.put(m.vip, member.vip, "vip");
  fields.put(m.member_rating, member.member_rating, "member_rating");
  fields.put(
    m.timestamp_signup,
    member.timestamp_signup || member.timestamp_opt,
    "timestamp_signup",
  );
  fields.put(m.country, member.location?.country_code?.toUpperCase(), "location.country_code");
  // An unsubscribe time is history, not a field a later subscribe empties: it is only sent.
  if (member.status === "unsubscribed" || member.status === "cleaned") {
    fields.put(m.unsubscribed_at, member.last_changed, "last_changed");
  }
  _tagFields(member, mapping, fields);
  if (mapping.interests !== null && member.interests != null) {
    const names = Object.entries(member.interests)
      .filter(([, on]) => on)
      .map(([id]) => mapping.interestNames.get(id) ?? id)
      .sort();
    fields.property(_propertyKey(mapping.interests)!, names);
  }
  return fields.done();
}

/**
 * The fields of one contact being mapped: Ometria's own at the top, the rest in `properties`
 * (made once the first one is put), which goes last, after every top-level field.
 */
class _Fields {
  readonly top: Record<string, unknown> = {};
  #properties: Record<string, unknown> | undefined;
  readonly #mapping: ContactMapping;

  constructor(mapping: ContactMapping) {
    this.#mapping = mapping;
  }

  /** Puts `value` of Mailchimp's field `from` where `target` says, in Ometria's form. */
  put(target: FieldTarget, value: unknown, from: string, route?: MergeFieldRoute): void {
    // Undefined: the answer did not carry the field, which says nothing about its value.
    if (target === null || value === undefined) return;
    const key = _propertyKey(target);
    let out: unknown;
    if (value === null || value === "") {
      if (this.#mapping.cleared === "omit") return;
      out = this.#mapping.cleared === "null" ? null : "";
    } else if (key !== undefined && route?.type !== "birthday" && route?.type !== "date") {
      // A property keeps its value as served (what _ometriaValue gives it), without a detour.
      out = value;
    } else {
      const normalised = _ometriaValue(target, value, route);
      if ("reason" in normalised) {
        this.#mapping.onDropped?.({ target, from, reason: normalised.reason });
        return;
      }
      out = normalised.value;
    }
    if (key !== undefined) this.property(key, out);
    else this.top[target] = out;
  }

  /** Sets property `key` (a target without its `properties.`). */
  property(key: string, value: unknown): void {
    (this.#properties ??= {})[key] = value;
  }

  /** The fields, `properties` last when there are any. */
  done(): Record<string, unknown> {
    if (this.#properties !== undefined) this.top.properties = this.#properties;
    return this.top;
  }
}

// Targets are a connection's few, met for every member: each one's property name is cut once.
const _keys = new Map<string, string | null>();

/** The property name of `target` (`properties.<name>`), or undefined for a contact field. */
function _propertyKey(target: string): string | undefined {
  let key = _keys.get(target);
  if (key === undefined) {
    if (_keys.size >= 10_000) _keys.clear();
    key = target.startsWith("properties.") ? target.slice(11) : null;
    _keys.set(target, key);
  }
  return key ?? undefined;
}

/** Every merge field but the names, by its route (an address split into its parts). */
function _mergeFields(member: Member, mapping: ContactMapping, fields: _Fields): void {
  const merge = member.merge_fields;
  for (const tag in merge) {
    if (tag === "FNAME" || tag === "LNAME" || !Object.hasOwn(merge, tag)) continue;
    const value = merge[tag];
    const route = mapping.mergeFields.get(tag) ??
      (mapping.otherMergeFields === "ignore"
        ? { target: null, type: "text" }
        : { target: defaultTarget({ tag, type: "text" }, true), type: "text" });
    if (route.target === null) continue;
    const isObject = typeof value === "object" && value !== null;
    if ((route.type === "address" || isObject) && route.target.startsWith("properties.")) {
      // An address is an object, or "" when empty: one property per part, since Ometria
      // segments on flat values, each cleared with the rest.
      const parts = isObject ? value as Record<string, unknown> : {};
      for (const part of ADDRESS_PARTS) {
        fields.put(
          `${route.target}_${part}` as FieldTarget,
          _text(parts[part]) ?? "",
          `${tag}.${part}`,
        );
      }
      continue;
    }
    fields.put(route.target, isObject ? undefined : value, tag, route);
  }
}

/** Tags as a property, or as the lists to add the member to and take it off. */
function _tagFields(member: Member, mapping: ContactMapping, fields: _Fields): void {
  if (mapping.tags === null || member.tags == null) return;
  const all = mapping.allTags.size === 0 ? undefined : mapping.allTags.get(member.id);
  if (all instanceof Error || (all === undefined && needsAllTags(member))) {
    throw new TypeError(
      `its ${member.tags_count ?? "50 or more"} tags could not all be read ` +
        `(the listing serves 50): ${all instanceof Error ? all.message : "not fetched"}`,
    );
  }
  if (typeof mapping.tags === "string") {
    // Sorted in place: a copy of the tags read, or of the full set (which others hold).
    const names = all === undefined ? member.tags.map((t) => t.name) : [...all];
    fields.property(_propertyKey(mapping.tags)!, names.sort());
    return;
  }
  const has = new Set(all ?? member.tags.map((t) => t.name));
  const add: string[] = [];
  const remove: string[] = [];
  for (const [tag, list] of Object.entries(mapping.tags.lists)) {
    (has.has(tag) ? add : remove).push(list);
  }
  if (add.length > 0) fields.top["@add_to_lists"] = add;
  if (remove.length > 0) fields.top["@remove_from_lists"] = remove;
}

function _text(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}

/**
 * A value in the form Ometria's field takes, or why it cannot be: a date or birthday by its
 * field's `date_format` (to `date_of_birth` or a property alike, so one birthday reads the
 * same from every list), a phone number in E.164 for `phone_number`.
 */
function _ometriaValue(
  target: string,
  value: unknown,
  route?: MergeFieldRoute,
): { value: unknown } | { reason: DroppedReason } {
  const text = typeof value === "string" ? value : undefined;
  const format = route?.options?.date_format;
  if (text !== undefined && route?.type === "birthday") return normaliseBirthday(text, format);
  if (text !== undefined && (route?.type === "date" || target === "date_of_birth")) {
    return normaliseDate(text, format);
  }
  switch (target) {
    case "date_of_birth":
      return { reason: "not_a_date" };
    case "phone_number":
      return toE164(
        String(value),
        route?.type === "phone" ? route.options?.phone_format : undefined,
      );
    case "gender": {
      // Single letters, as Ometria's integrations send them; anything else stated is "o".
      const g = String(value).trim().toLowerCase();
      return {
        value: g === "f" || g === "female" || g === "woman"
          ? "f"
          : g === "m" || g === "male" || g === "man"
          ? "m"
          : "o",
      };
    }
    case "country_id":
      return { value: String(value).trim().toUpperCase() };
    default:
      // A property keeps its JSON type; Ometria's own fields take text.
      return !target.startsWith("properties.") &&
          (typeof value === "number" || typeof value === "boolean")
        ? { value: String(value) }
        : { value };
  }
}
