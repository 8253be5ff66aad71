/**
 * The `--connections` file: one entry per connection. It names the environment variables
 * that hold the keys, never the keys themselves, so the file can be committed and shared.
 *
 * @module
 */
import { z } from "zod";

const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be the NAME of an environment variable, not a key");

const httpUrl = z
  .url({ protocol: /^https?$/ })
  .transform((u) => u.replace(/\/+$/, ""));

/** Schema of one connection entry. */
export const connectionEntrySchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, "must be 1-100 letters, digits, '.', '-' or '_'"),
  list_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be a Mailchimp list id"),
  mailchimp_api_key_env: envName,
  ometria_api_key_env: envName,
  threshold_minutes: z.number().int().positive().optional(),
  ometria_endpoint: z.enum(["push", "record"]).optional(),
  ometria_base_url: httpUrl.optional(),
  mailchimp_base_url: httpUrl.optional(),
  data_center: z.string().regex(/^[a-z0-9]+$/i).optional(),
});

/** Schema of the whole file: `{"connections": [ … ]}`. */
export const connectionsFileSchema = z.strictObject({
  connections: z.array(connectionEntrySchema).min(1, "must list at least one connection"),
});

/** One validated entry. */
export type ConnectionEntry = z.infer<typeof connectionsFileSchema>["connections"][number];
