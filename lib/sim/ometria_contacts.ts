/**
 * The Ometria simulator's Contact API: the read side `verify` uses (docs/API_NOTES.md,
 * "Reading contacts back"), served from the records the simulator holds.
 *
 * - **Listing.** `GET /v2/contacts?collection=<c>&limit=<n>&offset=<o>` lists the contacts of
 *   one collection. Ometria's Contact API page says the API can "list the different
 *   collections …, retrieve lists of contacts, retrieve an individual contact"
 *   (O-CONTACT); the stored page stops before its endpoint table, so the parameters, the page
 *   size and the answer's shape are played: a bare array (what a captured client of
 *   `GET /v2/contacts?email=` reads) or wrapped in `{data, total}` (`listShape`), pages cut
 *   silently at `maxPageSize` whatever `limit` asks, in the order records were first stored or
 *   by id (`order`). `email=` filters by address, as that client asks.
 * - **One contact.** `GET /v2/contacts/<collection>/<id>`: the path a captured client writes
 *   contacts at (`/v2/contacts/{collection}/{id}`); 404 when there is none.
 * - **Fields.** `"stored"`: what the record holds after upserts and merges (directives such
 *   as `@merge` and `@force_optin` are not fields, so left out); `"fivetran"`: only the
 *   columns Fivetran's Ometria connector keeps of a contact (`id`, `collection`,
 *   `customer_id`, `profile_id`, `email`, `marketing_optin`, `phone_number`, timestamps),
 *   which is the most a reader can count on (FIVETRAN). Which one Ometria serves is unknown.
 * - **Rate.** The Data API's own limit (4 requests/s, O-INTRO), counted apart from pushes by
 *   the simulator itself.
 *
 * Tests change what Ometria holds "behind the product's back" with
 * {@linkcode SimOmetriaContacts.tamper} (a field changed or cleared, a contact deleted) and
 * {@linkcode SimOmetriaContacts.plant} (a contact no member of the list has).
 *
 * @module
 */

/** Options of {@linkcode SimOmetriaContacts}. */
export interface SimOmetriaContactsOptions {
  /** The most contacts one page holds, whatever `limit` asks (undocumented). @default {100} */
  maxPageSize?: number;
  /** Contacts per page when `limit` is absent. @default {100} */
  defaultPageSize?: number;
  /** The listing's shape: a bare array, or `{data: [...], total}`. @default {"array"} */
  listShape?: "array" | "wrapped";
  /** Which fields a contact is served with (see the module). @default {"stored"} */
  fields?: "stored" | "fivetran";
  /** The listing's order: records as first stored, or by id. @default {"stored"} */
  order?: "stored" | "id";
}

/** The settings {@linkcode SimOmetriaContacts.setOptions} changes while serving. */
export type SimOmetriaContactsSettings = Partial<SimOmetriaContactsOptions>;

/** What the Contact API needs of the records the simulator stores. */
export interface SimContactStore {
  /** Every stored contact record, in the order first stored. */
  contacts(): Iterable<Record<string, unknown>>;
  /** The stored contact `id` of `collection`, or undefined. */
  get(collection: string, id: string): Record<string, unknown> | undefined;
  /** Stores (or replaces) a contact record as is. */
  set(collection: string, id: string, record: Record<string, unknown>): void;
  /** Removes a contact record; false when there was none. */
  delete(collection: string, id: string): boolean;
}

/** Directives of a pushed record: instructions, not fields Ometria keeps. */
const _DIRECTIVES = new Set(["@merge", "@force_optin", "@add_to_lists", "@remove_from_lists"]);

/** The contact columns of Fivetran's Ometria connector (FIVETRAN, `contact` table). */
const _FIVETRAN_FIELDS = [
  "id",
  "customer_id",
  "profile_id",
  "email",
  "marketing_optin",
  "phone_number",
  "dt_object_created",
  "dt_object_updated",
] as const;

/** The Contact API of one simulator (see the module). */
export class SimOmetriaContacts {
  #store: SimContactStore;
  #settings: Required<SimOmetriaContactsOptions>;
  #requests = 0;

  constructor(store: SimContactStore, options: SimOmetriaContactsOptions = {}) {
    this.#store = store;
    this.#settings = {
      maxPageSize: 100,
      defaultPageSize: 100,
      listShape: "array",
      fields: "stored",
      order: "stored",
    };
    this.setOptions(options);
  }

  /** Changes how contacts are served; applies from the next request. */
  setOptions(partial: SimOmetriaContactsSettings): void {
    for (const name of ["maxPageSize", "defaultPageSize"] as const) {
      const value = partial[name];
      if (value !== undefined && !(Number.isInteger(value) && value >= 1)) {
        throw new RangeError(
          `Cannot configure the Ometria simulator's Contact API as '${name}' must be an integer >= 1: current value ${value}`,
        );
      }
    }
    for (const [key, value] of Object.entries(partial)) {
      if (value !== undefined) Object.assign(this.#settings, { [key]: value });
    }
  }

  /** Contact API requests answered (any answer past the rate limit), since start. */
  get requests(): number {
    return this.#requests;
  }

  /**
   * Changes the stored contact `id` of `collection` as someone editing Ometria by hand
   * would: each field of `patch` is set, or removed when `null` (a `properties.<key>` name
   * reaches into `properties`); `patch` undefined deletes the contact. False when there is
   * no such contact.
   */
  tamper(
    collection: string,
    id: string,
    patch: Record<string, unknown> | undefined,
  ): boolean {
    const stored = this.#store.get(collection, id);
    if (stored === undefined) return false;
    if (patch === undefined) return this.#store.delete(collection, id);
    const next: Record<string, unknown> = { ...stored };
    for (const [field, value] of Object.entries(patch)) {
      if (field.startsWith("properties.")) {
        const properties = { ...(_isObject(next.properties) ? next.properties : {}) };
        const key = field.slice("properties.".length);
        if (value === null) delete properties[key];
        else properties[key] = value;
        next.properties = properties;
      } else if (value === null) delete next[field];
      else next[field] = value;
    }
    this.#store.set(collection, id, next);
    return true;
  }

  /** Stores a contact no push sent (someone imported it into the collection by hand). */
  plant(collection: string, record: { id: string } & Record<string, unknown>): void {
    this.#store.set(collection, record.id, {
      "@type": "contact",
      "@collection": collection,
      ...record,
    });
  }

  /** Answers a request under `/v2/contacts` (the rate limit was applied before). */
  answer(req: Request, path: string): Response {
    this.#requests++;
    if (req.method !== "GET") {
      return _json(405, { status: "error", message: "Method not allowed" }, { Allow: "GET" });
    }
    const rest = path.slice("/v2/contacts".length).split("/").filter((p) => p !== "");
    if (rest.length === 0) return this.#list(new URL(req.url).searchParams);
    if (rest.length === 2) {
      const [collection, id] = rest.map((p) => decodeURIComponent(p)) as [string, string];
      const stored = this.#store.get(collection, id);
      return stored === undefined
        ? _json(404, { status: "error", message: "Contact not found" })
        : _json(200, this.#served(stored));
    }
    return _json(404, { status: "error", message: `No route for GET ${path}` });
  }

  #list(query: URLSearchParams): Response {
    const limit = _integer(query.get("limit"));
    const offset = _integer(query.get("offset"));
    if (limit === null || offset === null) {
      return _json(400, { status: "error", message: "limit and offset must be whole numbers" });
    }
    const collection = query.get("collection");
    const email = query.get("email")?.toLowerCase();
    const all = [...this.#store.contacts()].filter((r) =>
      (collection === null || r["@collection"] === collection) &&
      (email === undefined || String(r.email ?? "").toLowerCase() === email)
    );
    if (this.#settings.order === "id") {
      all.sort((a, b) => String(a.id) < String(b.id) ? -1 : String(a.id) > String(b.id) ? 1 : 0);
    }
    const size = Math.min(limit ?? this.#settings.defaultPageSize, this.#settings.maxPageSize);
    const start = offset ?? 0;
    const page = all.slice(start, start + size).map((r) => this.#served(r));
    return _json(
      200,
      this.#settings.listShape === "array" ? page : { data: page, total: all.length },
    );
  }

  /** One stored contact as the API serves it. */
  #served(stored: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = { collection: stored["@collection"] };
    if (this.#settings.fields === "fivetran") {
      for (const field of _FIVETRAN_FIELDS) if (field in stored) out[field] = stored[field];
      return out;
    }
    for (const [field, value] of Object.entries(stored)) {
      if (!_DIRECTIVES.has(field)) out[field] = value;
    }
    return out;
  }
}

/** A whole number ≥ 0 from a query value; undefined when absent, null when malformed. */
function _integer(text: string | null): number | undefined | null {
  if (text === null || text === "") return undefined;
  return /^\d{1,9}$/.test(text) ? Number(text) : null;
}

function _isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function _json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}
