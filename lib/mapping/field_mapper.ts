/**
 * One connection's field mapping at work: the `fields=` it needs, a check of its merge tags
 * against the list (at start, for exit 2), and per run a resolver that fetches the list's
 * definitions once and caches them for the rest of the run.
 *
 * @module
 */
import type { Member } from "../mailchimp/member.ts";
import type { InterestDefinition, MergeFieldDefinition } from "../mailchimp/list_definitions.ts";
import type { ContactMapping } from "./field_mapping.ts";
import { resolveMapping } from "./field_mapping.ts";
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

  constructor(listId: string, fields: FieldsConfig | undefined, source: ListDefinitionsSource) {
    this.#listId = listId;
    this.#fields = fullFieldsConfig(fields);
    this.#source = source;
    this.#explicit = Object.keys(this.#fields.mergeFields).length > 0;
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

  /** A resolver for one run: definitions are fetched once and kept until the run ends. */
  forRun(signal?: AbortSignal): MappingForMembers {
    let mapping: Promise<ContactMapping> | undefined;
    let interests: Promise<Map<string, string>> | undefined;
    // Members with no merge field beyond the names need no definitions: a list of names and
    // emails (or 10,000 of them) costs no merge-fields request at all.
    let plain: ContactMapping | undefined;
    return async (members) => {
      if (!this.#explicit && !members.some(_hasOtherMergeFields)) {
        if (plain === undefined) {
          const resolved = resolveMapping(this.#fields, []);
          if ("problems" in resolved) throw new FieldMappingError(resolved.problems.join("; "));
          plain = resolved.mapping;
        }
        if (plain.interests === null || !members.some((m) => _hasInterest(m))) return plain;
      }
      mapping ??= this.#source.getMergeFields(this.#listId, signal).then((definitions) => {
        const resolved = resolveMapping(this.#fields, definitions);
        if ("problems" in resolved) throw new FieldMappingError(resolved.problems.join("; "));
        return resolved.mapping;
      });
      // A failed fetch is not kept: the run fails, and the next run asks again.
      const base = await mapping.catch((error) => {
        mapping = undefined;
        throw error;
      });
      if (base.interests === null || !members.some((m) => _hasInterest(m))) return base;
      interests ??= this.#source.getInterests(this.#listId, signal).then(
        (all) => new Map(all.map((i) => [i.id, i.name])),
      );
      const names = await interests.catch((error) => {
        interests = undefined;
        throw error;
      });
      return { ...base, interestNames: names };
    };
  }
}

// Both run over every member of every page: they loop over keys, making no entry arrays.
function _hasInterest(member: Member): boolean {
  const interests = member.interests;
  if (interests == null) return false;
  for (const id in interests) if (Object.hasOwn(interests, id) && interests[id]) return true;
  return false;
}

function _hasOtherMergeFields(member: Member): boolean {
  const merge = member.merge_fields;
  for (const tag in merge) {
    if (tag === "FNAME" || tag === "LNAME" || !Object.hasOwn(merge, tag)) continue;
    const value = merge[tag];
    if (value !== "" && value !== null) return true;
  }
  return false;
}
