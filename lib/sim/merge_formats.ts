/**
 * How the Mailchimp simulator describes and serves formatted merge fields: each list's
 * `options` (`date_format` of date and birthday fields, `phone_format` of phone fields), and
 * the date values as a members listing serves them. Values are stored in one canonical form
 * (dates `YYYY-MM-DD`, birthdays `MM/DD`, as Mailchimp's API writes them) and served in the
 * form the simulator is set to play, since Mailchimp does not document which one it serves
 * (docs/API_NOTES.md, "Mailchimp members, tags and merge fields").
 *
 * @module
 */

/**
 * A list's merge-field formats, as its merge fields' `options` say. Values seen in recorded
 * traffic and real configurations: `MM/DD/YYYY`, `DD/MM/YYYY`; birthday `MM/DD`, `DD/MM`
 * (the DD/MM option exists since 2015); phone `US` or `none` (international).
 */
export interface ListFormats {
  /** `options.date_format` of date fields. */
  date: "MM/DD/YYYY" | "DD/MM/YYYY";
  /** `options.date_format` of birthday fields. */
  birthday: "MM/DD" | "DD/MM";
  /** `options.phone_format` of phone fields. */
  phone: "US" | "none";
}

/** What a list has unless `addList` says otherwise: Mailchimp's US defaults. */
export const DEFAULT_LIST_FORMATS: ListFormats = {
  date: "MM/DD/YYYY",
  birthday: "MM/DD",
  phone: "none",
};

/**
 * How date and birthday values are served (undocumented): `"iso"`, dates normalised to
 * `YYYY-MM-DD` and birthdays as `MM/DD` whatever the format; `"display"`, both in the field's
 * `date_format`.
 */
export type MergeDateValues = "iso" | "display";

/**
 * A merge field's `options` as `GET /lists/{id}/merge-fields` serves them, shaped as in
 * GROUPAROO's recorded answer (`{"size": 25}` for text, `{"default_country": 164}` for an
 * address, `{"phone_format": "none"}`, `{}` for a number) and Mailchimp's SDK `MergeField.ts`.
 */
export function mergeFieldOptions(type: string, formats: ListFormats): Record<string, unknown> {
  switch (type) {
    case "text":
      return { size: 25 };
    case "address":
      return { default_country: 164 };
    case "phone":
      return { phone_format: formats.phone };
    case "date":
      return { date_format: formats.date };
    case "birthday":
      return { date_format: formats.birthday };
    case "dropdown":
    case "radio":
      return { choices: [] };
    default:
      return {};
  }
}

/** A stored (canonical) value of a merge field of `type` as a members listing serves it. */
export function servedMergeValue(
  type: string | undefined,
  value: unknown,
  formats: ListFormats,
  dateValues: MergeDateValues,
): unknown {
  if (typeof value !== "string" || value === "") return value;
  if (type === "date" && dateValues === "display") {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
    if (m === null) return value;
    return formats.date === "DD/MM/YYYY" ? `${m[3]}/${m[2]}/${m[1]}` : `${m[2]}/${m[3]}/${m[1]}`;
  }
  if (type === "birthday" && dateValues === "display" && formats.birthday === "DD/MM") {
    const m = /^(\d{2})\/(\d{2})$/.exec(value);
    return m === null ? value : `${m[2]}/${m[1]}`;
  }
  return value;
}
