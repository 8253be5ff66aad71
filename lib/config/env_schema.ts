/**
 * The environment: one zod schema over every variable, with the original tool's names and
 * defaults. Each variable's message says what it must be, what it is (unless it may be a
 * secret) and what to do.
 *
 * @module
 */
import { z } from "zod";
import { apiKeyProblem } from "./api_key.ts";
import { cronProblem } from "./schedule.ts";
import {
  DEFAULT_ALERT_REPEAT_MINUTES,
  DEFAULT_BULK_MEMBER_COUNT,
  DEFAULT_MAILCHIMP_CLOCK_MARGIN_SECONDS,
  DEFAULT_MAILCHIMP_MAX_CONNECTIONS,
  DEFAULT_MAILCHIMP_RETRY_MAX_SECONDS,
  DEFAULT_MAILCHIMP_TIMEOUT_SECONDS,
  DEFAULT_MAX_CONCURRENT_RUNS,
  DEFAULT_MINUTES_PER_BULK,
  DEFAULT_OMETRIA_BATCH_SIZE,
  DEFAULT_OMETRIA_MAX_REQUESTS_PER_SECOND,
  DEFAULT_POLLING_SECONDS,
  DEFAULT_QUARANTINE_RETRIES,
  DEFAULT_RECONCILE_EVERY_HOURS,
  DEFAULT_RUN_DEADLINE_MINUTES,
  DEFAULT_STATE_LEASE_SECONDS,
  DEFAULT_THRESHOLD_MINUTES,
  DEFAULT_VERIFY_EVERY_HOURS,
} from "./defaults.ts";

/** A log level as LogTape names it. */
export type LogLevel = "debug" | "info" | "warning" | "error" | "fatal";

const LOG_LEVELS: Record<string, LogLevel> = {
  DEBUG: "debug",
  INFO: "info",
  WARNING: "warning",
  WARN: "warning",
  ERROR: "error",
  CRITICAL: "fatal",
  FATAL: "fatal",
};

/**
 * A value for a message: short values quoted, long ones only described. A value in the
 * wrong place may be a key pasted into the wrong variable or argument.
 */
export function shown(value: string | undefined): string {
  if (value === undefined) return "unset";
  return value.length <= 16 ? `"${value}"` : `a ${value.length}-character value (not shown)`;
}

/**
 * The whole number `text` spells in plain decimal digits (surrounding spaces allowed), or
 * undefined. `Number()` alone would also take `0x10`, `1e3`, `0b1` or `Infinity`, so a
 * setting could mean something other than what it reads as (METRICS_PORT=0x10 is port 16).
 */
export function decimalInteger(text: string): number | undefined {
  const t = text.trim();
  if (!/^\d{1,16}$/.test(t)) return undefined;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The number `text` spells as plain decimal digits with an optional fraction, or undefined. */
function _decimalNumber(text: string): number | undefined {
  const t = text.trim();
  return /^\d{1,16}(\.\d{1,16})?$/.test(t) ? Number(t) : undefined;
}

/** Says why a value that is a number in another notation (`0x10`, `1e3`) is still refused. */
function _notation(v: string): string {
  const n = Number(v.trim());
  return Number.isFinite(n) && _decimalNumber(v) === undefined
    ? ", which is not written in plain decimal digits"
    : "";
}

function intVar(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return fallback;
      const n = decimalInteger(v);
      if (n === undefined || n < min || n > max) {
        ctx.addIssue({
          code: "custom",
          message: `${name} must be a whole number${
            max === Number.MAX_SAFE_INTEGER ? ` of at least ${min}` : ` from ${min} to ${max}`
          }; it is ${shown(v)}${_notation(v)}. Fix or unset it (default ${fallback}).`,
        });
        return z.NEVER;
      }
      return n;
    });
}

function positiveNumberVar(name: string, fallback: number, max: number) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return fallback;
      const n = _decimalNumber(v);
      if (n === undefined || n <= 0 || n > max) {
        ctx.addIssue({
          code: "custom",
          message: `${name} must be a number above 0 and at most ${max} (e.g. 12 or 0.5); ` +
            `it is ${shown(v)}${_notation(v)}. Fix or unset it (default ${fallback}).`,
        });
        return z.NEVER;
      }
      return n;
    });
}

/** Hours between jobs: 0 turns the job off, otherwise above 0 and at most `max`. */
function hoursOrOffVar(name: string, fallback: number, max: number) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return fallback;
      const n = _decimalNumber(v);
      if (n === undefined || n < 0 || n > max) {
        ctx.addIssue({
          code: "custom",
          message: `${name} must be 0 (off) or a number of hours above 0 and at most ${max} ` +
            `(e.g. 24 or 0.5); it is ${shown(v)}${
              _notation(v)
            }. Fix or unset it (default ${fallback}).`,
        });
        return z.NEVER;
      }
      return n;
    });
}

/** An optional port number (0 to 65535; 0 picks a free one), named in its message. */
function portVar(name: string) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return undefined;
      const n = decimalInteger(v);
      if (n === undefined || n > 65535) {
        ctx.addIssue({
          code: "custom",
          message: `${name} must be a port number from 0 to 65535; it is ${shown(v)}${
            _notation(v)
          }.`,
        });
        return z.NEVER;
      }
      return n;
    });
}

function urlVar(name: string) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return undefined;
      try {
        const url = new URL(v.trim());
        if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError();
        return url.href.replace(/\/+$/, "");
      } catch {
        // Only the variable's name is shown: URLs can carry tokens.
        ctx.addIssue({ code: "custom", message: `${name} must be an http(s) URL.` });
        return z.NEVER;
      }
    });
}

function choiceVar<T extends string>(
  name: string,
  fallback: T,
  choices: readonly T[],
  help: string,
) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      const value = (v ?? fallback).trim().toLowerCase() || fallback;
      if (!(choices as readonly string[]).includes(value)) {
        ctx.addIssue({ code: "custom", message: `${name} must be ${help}; it is ${shown(v)}.` });
        return z.NEVER;
      }
      return value as T;
    });
}

/**
 * An on/off variable: `1`, `true`, `yes` or `on` switch it on; `0`, `false`, `no`, `off`,
 * empty or unset leave it off; anything else is refused, since a typo must not switch a
 * safety off (or on) unnoticed. `meaning` says what on does, for the message.
 */
function flagVar(name: string, meaning: string) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      const value = (v ?? "").trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(value)) return true;
      if (["", "0", "false", "no", "off"].includes(value)) return false;
      ctx.addIssue({
        code: "custom",
        message: `${name} must be 1 (${meaning}) or 0; it is ${shown(v)}.`,
      });
      return z.NEVER;
    });
}

/** An API key variable: trimmed, and refused when it could not be sent as a header. */
function apiKeyVar(name: string) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      const key = v?.trim();
      if (!key) return undefined;
      const problem = apiKeyProblem(name, key);
      if (problem !== undefined) {
        ctx.addIssue({ code: "custom", message: problem });
        return z.NEVER;
      }
      return key;
    });
}

/** What a webhook secret must look like: it goes into a URL path as it is. */
export const WEBHOOK_SECRET = /^[A-Za-z0-9_~.-]{16,200}$/;

/**
 * The problem with a webhook secret held by variable `name`, or undefined when it is usable.
 * The value is never repeated: it is a secret.
 */
export function webhookSecretProblem(name: string, value: string): string | undefined {
  if (WEBHOOK_SECRET.test(value)) return undefined;
  return `${name} must be at least 16 characters of letters, digits, "-", "_", "." or "~" ` +
    `(it goes into the webhook URL): e.g. generate one with \`openssl rand -hex 24\`.`;
}

/**
 * The problem with a webhook signing secret held by variable `name`, or undefined when it is
 * usable. Mailchimp does not document the secret's alphabet; it is shown once and pasted, so
 * anything printable without spaces is taken (the value is never repeated).
 */
export function webhookSigningSecretProblem(name: string, value: string): string | undefined {
  if (/^[\x21-\x7e]{8,500}$/.test(value)) return undefined;
  return `${name} must be the signing secret \`webhooks register\` printed when it created the ` +
    `webhook (8 or more printable characters, no spaces).`;
}

function secretVar(name: string, problemOf: (name: string, value: string) => string | undefined) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      const secret = v?.trim();
      if (!secret) return undefined;
      const problem = problemOf(name, secret);
      if (problem !== undefined) {
        ctx.addIssue({ code: "custom", message: problem });
        return z.NEVER;
      }
      return secret;
    });
}

/** Schema of the environment. Defaults are the original tool's. */
const envSchema = z.object({
  MAILCHIMP_API_KEY: apiKeyVar("MAILCHIMP_API_KEY"),
  OMETRIA_API_KEY: apiKeyVar("OMETRIA_API_KEY"),
  // Sent in a header like the keys, so the same rules (no spaces or line breaks) apply.
  STATUS_TOKEN: apiKeyVar("STATUS_TOKEN"),
  MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS: intVar(
    "MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS",
    DEFAULT_MAX_CONCURRENT_RUNS,
    1,
    1000,
  ),
  BULK_MEMBER_COUNT: intVar("BULK_MEMBER_COUNT", DEFAULT_BULK_MEMBER_COUNT, 1),
  MINUTES_NEEDED_TO_PERFORM_A_PARTIAL_SYNC_OF_A_SINGLE_BULK: intVar(
    "MINUTES_NEEDED_TO_PERFORM_A_PARTIAL_SYNC_OF_A_SINGLE_BULK",
    DEFAULT_MINUTES_PER_BULK,
    0,
  ),
  NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA: intVar(
    "NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA",
    DEFAULT_THRESHOLD_MINUTES,
    1,
  ),
  POLLING_TIME_IN_SECONDS: intVar("POLLING_TIME_IN_SECONDS", DEFAULT_POLLING_SECONDS, 1),
  LOGGING_LEVEL: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const key = (v ?? "DEBUG").trim().toUpperCase() || "DEBUG";
      const level = LOG_LEVELS[key];
      if (!level) {
        ctx.addIssue({
          code: "custom",
          message: `LOGGING_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL; it is ${
            shown(v)
          }.`,
        });
        return z.NEVER;
      }
      return level;
    }),
  LOG_FILE: z.string().optional(),
  LOG_FORMAT: choiceVar("LOG_FORMAT", "text", ["text", "json"], '"text" or "json"'),
  DATA_CENTER: z.string().trim().optional(),
  MAILCHIMP_BASE_URL: urlVar("MAILCHIMP_BASE_URL"),
  OMETRIA_BASE_URL: urlVar("OMETRIA_BASE_URL"),
  OMETRIA_ENDPOINT: choiceVar(
    "OMETRIA_ENDPOINT",
    "push",
    ["push", "record"],
    `"push" (POST /v2/push) or "record" (the original tool's POST /record)`,
  ),
  OMETRIA_BATCH_SIZE: intVar("OMETRIA_BATCH_SIZE", DEFAULT_OMETRIA_BATCH_SIZE, 1, 100),
  MAILCHIMP_MAX_CONNECTIONS: intVar(
    "MAILCHIMP_MAX_CONNECTIONS",
    DEFAULT_MAILCHIMP_MAX_CONNECTIONS,
    1,
    10,
  ),
  MAILCHIMP_RETRY_MAX_SECONDS: intVar(
    "MAILCHIMP_RETRY_MAX_SECONDS",
    DEFAULT_MAILCHIMP_RETRY_MAX_SECONDS,
    1,
  ),
  MAILCHIMP_TIMEOUT_SECONDS: intVar(
    "MAILCHIMP_TIMEOUT_SECONDS",
    DEFAULT_MAILCHIMP_TIMEOUT_SECONDS,
    1,
    120,
  ),
  MAILCHIMP_CLOCK_MARGIN_SECONDS: intVar(
    "MAILCHIMP_CLOCK_MARGIN_SECONDS",
    DEFAULT_MAILCHIMP_CLOCK_MARGIN_SECONDS,
    2,
    3600,
  ),
  RUN_DEADLINE_MINUTES: intVar("RUN_DEADLINE_MINUTES", DEFAULT_RUN_DEADLINE_MINUTES, 1, 10_080),
  OMETRIA_MAX_REQUESTS_PER_SECOND: intVar(
    "OMETRIA_MAX_REQUESTS_PER_SECOND",
    DEFAULT_OMETRIA_MAX_REQUESTS_PER_SECOND,
    1,
    1000,
  ),
  // A year at most: beyond it the interval reads as "never", which is not what anyone means.
  RECONCILE_EVERY_HOURS: positiveNumberVar(
    "RECONCILE_EVERY_HOURS",
    DEFAULT_RECONCILE_EVERY_HOURS,
    8760,
  ),
  VERIFY_EVERY_HOURS: hoursOrOffVar("VERIFY_EVERY_HOURS", DEFAULT_VERIFY_EVERY_HOURS, 8760),
  STATE_LEASE_SECONDS: intVar("STATE_LEASE_SECONDS", DEFAULT_STATE_LEASE_SECONDS, 1, 3600),
  QUARANTINE_RETRIES_PER_RUN: intVar(
    "QUARANTINE_RETRIES_PER_RUN",
    DEFAULT_QUARANTINE_RETRIES,
    1,
    10_000,
  ),
  SYNC_SCHEDULE: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return undefined;
      const problem = cronProblem(v);
      if (problem !== undefined) {
        ctx.addIssue({ code: "custom", message: problem });
        return z.NEVER;
      }
      return v.trim();
    }),
  ALERT_WEBHOOK_URL: urlVar("ALERT_WEBHOOK_URL"),
  ALERT_REPEAT_MINUTES: intVar("ALERT_REPEAT_MINUTES", DEFAULT_ALERT_REPEAT_MINUTES, 1),
  METRICS_PORT: portVar("METRICS_PORT"),
  METRICS_HOST: z.string().trim().optional(),
  WEBHOOK_PORT: portVar("WEBHOOK_PORT"),
  WEBHOOK_HOST: z.string().trim().optional(),
  MAILCHIMP_WEBHOOK_SECRET: secretVar("MAILCHIMP_WEBHOOK_SECRET", webhookSecretProblem),
  MAILCHIMP_WEBHOOK_SIGNING_SECRET: secretVar(
    "MAILCHIMP_WEBHOOK_SIGNING_SECRET",
    webhookSigningSecretProblem,
  ),
  SYNC_REQUIRE_STATE_VOLUME: flagVar(
    "SYNC_REQUIRE_STATE_VOLUME",
    "refuse to keep the state in a folder that is not a mounted volume; the image sets it",
  ),
  OPTOUT_BACK: flagVar(
    "OPTOUT_BACK",
    "unsubscribes made in Ometria unsubscribe the member in Mailchimp, for the lists given as arguments",
  ),
  SYNC_ON_BRANCHES: flagVar(
    "SYNC_ON_BRANCHES",
    "Deno Deploy: tick on branch and preview deployments too, not only in production",
  ),
});

/** The environment, validated. */
export type Env = z.infer<typeof envSchema>;

/**
 * Validates `raw`, appending one message per problem to `errors`. Broken variables fall
 * back to their defaults, so that the other problems (missing keys, the connections
 * file…) are reported in the same message rather than one by one.
 */
export function parseEnv(raw: Record<string, string | undefined>, errors: string[]): Env {
  const result = envSchema.safeParse(raw);
  if (result.success) return result.data;
  for (const issue of result.error.issues) errors.push(issue.message);
  const broken = new Set(result.error.issues.map((issue) => String(issue.path[0])));
  return envSchema.parse(
    Object.fromEntries(Object.entries(raw).filter(([name]) => !broken.has(name))),
  );
}
