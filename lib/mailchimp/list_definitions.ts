/**
 * What the Marketing API says a list defines: its merge fields and its interests (groups).
 * The client returns them; the field mapping (lib/mapping) resolves a connection's `fields`
 * against them. They live with the client because they are Mailchimp's shapes, so the
 * Mailchimp module depends on nothing in the mapping.
 *
 * @module
 */

/** One merge field of a list, from `GET /lists/{id}/merge-fields`. */
export interface MergeFieldDefinition {
  /** The merge tag, e.g. `PHONE`. */
  tag: string;
  /** Mailchimp's type: text, number, address, phone, date, birthday, dropdown, radio, … */
  type: string;
  /** The label shown in Mailchimp. */
  name: string;
}

/** One interest (group) of a list, from its interest categories. */
export interface InterestDefinition {
  /** The interest id, the key of a member's `interests`. */
  id: string;
  /** The interest's name, what Ometria receives. */
  name: string;
  /** The title of its category. */
  category: string;
}
