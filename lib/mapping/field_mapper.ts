/**
 * One connection's field mapping at work: the `fields=` it needs, a check of its merge tags
 * against the list (at start, for exit 2), and per run a resolver that fetches the list's
 * definitions once and caches them for the rest of the run.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import type { InterestDefinition, MergeFieldDefinition } from "../mailchimp/list_definitions.ts";
import type { Logger } from "@logtape/logtape";
import { errorText } from "../log/error_text.ts";
import { dateOrderEvidence, DROPPED_REASONS, withDateOrder } from "./formats.ts";
import type { ContactMapping, DroppedValue, MergeFieldRoute } from "./field_mapping.ts";
import { needsAllTags, resolveMapping } from "./field_mapping.ts";
import {
  type FieldsConfig,
  type FullFieldsConfig,
  fullFieldsConfig,
  memberFieldsFor,
} from "./fields_config.ts";

/** Where a list's definitions come from (the Mailchimp client). */
export interface ListDefinitionsSource {
  /** Every merge field of the list. */
  getMergeFields(listId: string, signal?: AbortSignal): Promise<MergeFieldDefinition[]>;
  /** Every interest of the list, with its name. */
  getInterests(listId: string, signal?: AbortSignal): Promise<InterestDefinition[]>;
  /** Every tag name of one member (the listing serves 50 at most). */
  getMemberTags(listId: string, id: string, signal?: AbortSignal): Promise<string[]>;
}

/** Day/month order evidence of one date or birthday field, from the values served so far. */
interface _Order {
  dayFirst: number;
  monthFirst: number;
  /** The order told of in the log, once. */
  told?: "day-first" | "month-first";
}

/** Options of {@linkcode FieldMapper}. */
export interface FieldMapperOptions {
  /**
   * Told of every value left out because it could not be normalised (a phone without a
   * country code, a date that is none), for counting and logging; the value itself is never
   * passed on (it is personal data).
   */
  onDropped?: (dropped: DroppedValue) => void;
  /**
   * Told when a date or birthday field's values show another day/month order than its
   * `date_format` declares (Mailchimp does not document in which form it serves them).
   */
  onDateOrder?: (tag: string, declared: string | undefined, served: string) => void;
}

/**
 * Resolves the mapping for the members about to be pushed. The first call of a run fetches
 * the merge fields; interests are fetched only once a member has one, so a run over a list
 * without groups costs no request for them.
 */
export type MappingForMembers = (members: readonly Member[]) => Promise<ContactMapping>;

/** Thrown when a connection's mapping does not fit its list (names the merge tags). */
export class FieldMappingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FieldMappingError";
  }
}

/** A connection's mapping: its `fields=`, its start-up check, its per-run resolver. */
export class FieldMapper {
  readonly #listId: string;
  readonly #fields: FullFieldsConfig;
  readonly #source: ListDefinitionsSource;
  readonly #explicit: boolean;
  readonly #onDropped: FieldMapperOptions["onDropped"];
  readonly #onDateOrder: FieldMapperOptions["onDateOrder"];
  /** What the values served so far show of each date field's order (kept for the process). */
  readonly #orders = new Map<string, _Order>();

  constructor(
    listId: string,
    fields: FieldsConfig | undefined,
    source: ListDefinitionsSource,
    options: FieldMapperOptions = {},
  ) {
    this.#listId = listId;
    this.#fields = fullFieldsConfig(fields);
    this.#source = source;
    this.#explicit = Object.keys(this.#fields.mergeFields).length > 0;
    this.#onDropped = options.onDropped;
    this.#onDateOrder = options.onDateOrder;
  }

  /** The `members.*` paths the mapping reads beyond the sync's own (for `fields=`). */
  get memberFields(): string[] {
    return memberFieldsFor(this.#fields);
  }

  /** {@linkcode FieldMapper.memberFields} of `fields`, before any client exists. */
  static memberFieldsFor(fields: FieldsConfig | undefined): string[] {
    return memberFieldsFor(fullFieldsConfig(fields));
  }

  /**
   * The problems of the mapping against the list as it is now (unknown merge tags, a
   * birthday to `date_of_birth`, …), empty when it fits. Asks Mailchimp only when the
   * mapping names merge tags; errors reaching Mailchimp propagate.
   */
  async check(signal?: AbortSignal): Promise<string[]> {
    if (!this.#explicit) return [];
    const definitions = await this.#source.getMergeFields(this.#listId, signal);
    const resolved = resolveMapping(this.#fields, definitions);
    return "problems" in resolved ? resolved.problems : [];
  }

  /**
   * A resolver for one run: definitions are fetched once and kept until the run ends; the
   * full tag set of a member whose listing left tags out is fetched for the members at hand.
   */
  forRun(signal?: AbortSignal): MappingForMembers {
    let mapping: Promise<ContactMapping> | undefined;
    let interests: Promise<Map<string, string>> | undefined;
    // Members with no merge field beyond the names need no definitions: a list of names and
    // emails (or 10,000 of them) costs no merge-fields request at all. One with an emptied
    // field needs them too, unless cleared fields are left out: its route says where the
    // clearing goes.
    let plain: ContactMapping | undefined;
    const keepEmpty = this.#fields.cleared !== "omit";
    const definitions = async (members: readonly Member[]): Promise<ContactMapping> => {
      if (!this.#explicit && !members.some((m) => _hasOtherMergeFields(m, keepEmpty))) {
        if (plain === undefined) {
          const resolved = resolveMapping(this.#fields, []);
          if ("problems" in resolved) throw new FieldMappingError(resolved.problems.join("; "));
          plain = resolved.mapping;
        }
        return plain;
      }
      mapping ??= this.#source.getMergeFields(this.#listId, signal).then((definitions) => {
        const resolved = resolveMapping(this.#fields, definitions);
        if ("problems" in resolved) throw new FieldMappingError(resolved.problems.join("; "));
        return resolved.mapping;
      });
      // A failed fetch is not kept: the run fails, and the next run asks again.
      return await mapping.catch((error) => {
        mapping = undefined;
        throw error;
      });
    };
    return async (members) => {
      let base = this.#servedOrder(await definitions(members), members);
      if (this.#onDropped) base = { ...base, onDropped: this.#onDropped };
      if (base.interests !== null && members.some((m) => _hasInterest(m))) {
        interests ??= this.#source.getInterests(this.#listId, signal).then(
          (all) => new Map(all.map((i) => [i.id, i.name])),
        );
        const names = await interests.catch((error) => {
          interests = undefined;
          throw error;
        });
        base = { ...base, interestNames: names };
      }
      return base.tags === null ? base : { ...base, allTags: await this.#allTags(members, signal) };
    };
  }

  /**
   * `mapping` with each date and birthday field read in the day/month order its values
   * show. Mailchimp may serve them in the field's `date_format` or in its own write format
   * (`MM/DD`, `YYYY-MM-DD`): a value like `23/04` tells which, and once only one order has
   * been seen it is the one used; while nothing tells, the declared format is.
   */
  #servedOrder(mapping: ContactMapping, members: readonly Member[]): ContactMapping {
    let routes: Map<string, MergeFieldRoute> | undefined;
    for (const [tag, route] of mapping.mergeFields) {
      if (route.type !== "date" && route.type !== "birthday") continue;
      let order = this.#orders.get(tag);
      for (const m of members) {
        const value = m.merge_fields[tag];
        const seen = typeof value === "string" ? dateOrderEvidence(value) : undefined;
        if (seen === undefined) continue;
        order ??= { dayFirst: 0, monthFirst: 0 };
        if (seen === "day-first") order.dayFirst++;
        else order.monthFirst++;
      }
      if (order === undefined) continue;
      this.#orders.set(tag, order);
      if ((order.dayFirst > 0) === (order.monthFirst > 0)) continue;
      const served = order.dayFirst > 0 ? "day-first" : "month-first";
      const declared = route.options?.date_format;
      const format = withDateOrder(declared, served, route.type === "birthday");
      if (format === declared) continue;
      if (order.told !== served) {
        order.told = served;
        this.#onDateOrder?.(tag, declared, format);
      }
      routes ??= new Map(mapping.mergeFields);
      routes.set(tag, { ...route, options: { ...route.options, date_format: format } });
    }
    return routes === undefined ? mapping : { ...mapping, mergeFields: routes };
  }

  /**
   * The full tag sets of the members whose listing left some out, one request each (rare:
   * more than 50 tags). A member whose tags cannot be read gets the error, and only it is
   * held back: the others of the page go on.
   */
  async #allTags(
    members: readonly Member[],
    signal: AbortSignal | undefined,
  ): Promise<Map<string, readonly string[] | Error>> {
    const out = new Map<string, readonly string[] | Error>();
    for (const m of members) {
      if (!needsAllTags(m)) continue;
      try {
        out.set(m.id, await this.#source.getMemberTags(this.#listId, m.id, signal));
      } catch (error) {
        if (signal?.aborted) throw error;
        out.set(m.id, new Error(errorText(error)));
      }
    }
    return out;
  }
}

// Both run over every member of every page: they loop over keys, making no entry arrays.
function _hasInterest(member: Member): boolean {
  const interests = member.interests;
  if (interests == null) return false;
  for (const id in interests) if (Object.hasOwn(interests, id) && interests[id]) return true;
  return false;
}

function _hasOtherMergeFields(member: Member, evenEmpty: boolean): boolean {
  const merge = member.merge_fields;
  for (const tag in merge) {
    if (tag === "FNAME" || tag === "LNAME" || !Object.hasOwn(merge, tag)) continue;
    if (evenEmpty) return true;
    const value = merge[tag];
    if (value !== "" && value !== null) return true;
  }
  return false;
}

/**
 * A connection's {@linkcode FieldMapperOptions} in a service: every value left out is
 * counted (`count`), and the first of each field and reason logged as a warning naming the
 * member's Mailchimp field, never the value (a phone number, a birthday: personal data); a
 * date field served in another order than it declares is logged once.
 */
export function mappingReporter(
  connectionId: string,
  logger: Logger,
  count?: (field: string, reason: string) => void,
): Required<FieldMapperOptions> {
  const seen = new Set<string>();
  return {
    onDropped: (d) => {
      count?.(d.target, d.reason);
      const key = `${d.target}\u0000${d.reason}`;
      if (seen.has(key)) return;
      seen.add(key);
      logger.warn(
        "Connection {connection}: {from} left out of {target}: the value {why} ({reason}); " +
          "later ones are only counted (sync_fields_dropped_total)",
        {
          connection: connectionId,
          from: d.from,
          target: d.target,
          why: DROPPED_REASONS[d.reason],
          reason: d.reason,
        },
      );
    },
    onDateOrder: (tag, declared, served) =>
      logger.warn(
        "Connection {connection}: merge field {tag} is served as {served} although its " +
          "date_format says {declared}: its values are read as served",
        { connection: connectionId, tag, served, declared: declared ?? "(none)" },
      ),
  };
}
