/**
 * The `--connections` file: one entry per connection. It names the environment variables
 * that hold the keys, never the keys themselves, so the file can be committed and shared.
 *
 * @module
 */
import { z } from "zod";
import { errorText } from "../log/error_text.ts";
import { fieldsConfigSchema } from "../mapping/fields_config.ts";
import { permissionAdvice } from "./permission_advice.ts";

const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be the NAME of an environment variable, not a key");

const httpUrl = z
  .url({ protocol: /^https?$/ })
  .transform((u) => u.replace(/\/+$/, ""));

/** An on/off setting of a connection, off unless it is `true`. */
function _switch(name: string) {
  return z.boolean({ error: `${name} must be true or false (without quotes)` }).optional();
}

/** Schema of one connection entry. */
const connectionEntrySchema = z.strictObject({
  id: z.string()
    .regex(/^[A-Za-z0-9_.-]{1,100}$/, "must be 1-100 letters, digits, '.', '-' or '_'")
    // The id is a path segment of the connection's webhook URL, where "." and ".." are
    // resolved away before any request arrives: such a webhook could never be reached.
    .refine((id) => id !== "." && id !== "..", "must not be '.' or '..' (it goes into a URL path)"),
  list_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be a Mailchimp list id"),
  mailchimp_api_key_env: envName,
  ometria_api_key_env: envName,
  threshold_minutes: z.number().int().positive().optional(),
  ometria_endpoint: z.enum(["push", "record"]).optional(),
  ometria_base_url: httpUrl.optional(),
  mailchimp_base_url: httpUrl.optional(),
  data_center: z.string().regex(/^[a-z0-9]+$/i).optional(),
  webhook_secret_env: envName.optional(),
  /** The variable holding the signing secret `webhooks register` printed for this list. */
  webhook_signing_secret_env: envName.optional(),
  /** Mailchimp → Ometria field mapping (README, "Fields"); the default when absent. */
  fields: fieldsConfigSchema.optional(),
  /** Unsubscribes made in Ometria unsubscribe the Mailchimp member (README, "Consent"). */
  optout_back: _switch("optout_back"),
  /** A permanent delete a webhook reports files Ometria's data deletion request too. */
  erase_on_permanent_delete: _switch("erase_on_permanent_delete"),
  /** A member who opted in again in Mailchimp is sent with `@force_optin`. */
  force_optin_on_resubscribe: _switch("force_optin_on_resubscribe"),
});

/** Schema of the whole file: `{"connections": [ … ]}`. */
export const connectionsFileSchema = z.strictObject({
  connections: z.array(connectionEntrySchema).min(1, "must list at least one connection"),
});

/** One validated entry. */
export type ConnectionEntry = z.infer<typeof connectionsFileSchema>["connections"][number];

/** What {@linkcode readConnectionsFile} needs besides the path. */
export interface ConnectionsFileSources {
  /** The raw environment, where the variables the file names are looked up. */
  env: Record<string, string | undefined>;
  /** Reads the file's text; undefined when reading files is not allowed. */
  readTextFile?: ((path: string) => Promise<string>) | undefined;
}

/**
 * Reads and validates the connections file at `path`, appending every problem to `errors`
 * (unreadable, not JSON, wrong shape, each in words that never repeat a value that may be
 * a key). Returns the valid entries, or none when the file as a whole is unusable.
 */
export async function readConnectionsFile(
  path: string,
  sources: ConnectionsFileSources,
  errors: string[],
): Promise<ConnectionEntry[]> {
  let text: string;
  try {
    if (!sources.readTextFile) throw new Error("reading files is not allowed here");
    text = await sources.readTextFile(path);
  } catch (error) {
    errors.push(
      error instanceof Deno.errors.NotCapable
        // Not a wrong path: the file is outside what this process may read.
        ? permissionAdvice({
          what: `the connections file ${path}`,
          file: path,
          missing: ["read"],
          syncDir: sources.env.SYNC_DIR,
        })
        : `Cannot read the connections file ${path}: ${
          errorText(error).replace(/\.$/, "")
        }. Check the path given to --connections.`,
    );
    return [];
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // V8 quotes the text around the error ("…key_env": abc…"), which may be a key pasted
    // into the file: only the message before that excerpt is shown.
    const message = errorText(error).replace(/,?\s*(?:\.\.\.)?".*$/s, "");
    errors.push(`The connections file ${path} is not valid JSON: ${message}.`);
    return [];
  }
  const result = connectionsFileSchema.safeParse(json);
  if (!result.success) {
    errors.push(`The connections file ${path} is not valid:\n${z.prettifyError(result.error)}`);
    return [];
  }
  return result.data.connections;
}
