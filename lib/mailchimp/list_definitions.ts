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
  /**
   * What Mailchimp's `options` say of the values' format (docs/API_NOTES.md, "Merge-field
   * options"): `date_format` of a date or birthday field (`MM/DD/YYYY`, `DD/MM/YYYY`,
   * `MM/DD`, `DD/MM`), `phone_format` of a phone field (`US`, or `none` for international).
   */
  options?: { date_format?: string | undefined; phone_format?: string | undefined } | undefined;
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
