/**
 * Configuration: one zod schema over the environment and the command line (plus the
 * optional connections file), producing a {@linkcode Config} or every problem at once.
 * Every environment variable of the original Python tool keeps its name, meaning and
 * default. Nothing here reads the process: `main.ts` hands in `env`, `args` and a reader.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { connectionsFileSchema } from "./connections_file.ts";
import { MAILCHIMP_MAX_PAGE_SIZE, mailchimpBaseUrlFor } from "./mailchimp_url.ts";

/** The subcommands `main.ts` understands. */
export const COMMANDS = ["sync", "status", "reset", "demo", "simulate", "bench"] as const;
/** One subcommand. */
export type Command = typeof COMMANDS[number];

/** A log level as LogTape names it. */
export type LogLevel = "debug" | "info" | "warning" | "error" | "fatal";

/** One Mailchimp list synced into one Ometria account, with its keys resolved. */
export interface ConnectionConfig {
  /** Stable identifier (the list id for lists given on the command line). */
  id: string;
  listId: string;
  /** `keyName`: the environment variable the key came from (for messages). */
  mailchimp: { apiKey: string; baseUrl: string; keyName?: string };
  ometria: { apiKey: string; baseUrl: string; endpoint: "push" | "record"; keyName?: string };
  /** Lag beyond which the connection is behind, in seconds. */
  thresholdSeconds: number;
}

/** Everything the program needs, validated. Holds secrets in memory only. */
export interface Config {
  command: Command;
  once: boolean;
  force: boolean;
  json: boolean;
  check: boolean;
  /** `--state`: a file path, `kv:`/`kv:<path>`, `memory:`; undefined = default file. */
  state: string | undefined;
  /** Ids named on the command line (for `status` and `reset`, a filter). */
  listIds: string[];
  connections: ConnectionConfig[];
  maxConcurrentRuns: number;
  /** BULK_MEMBER_COUNT: the change count that makes a list due. */
  bulkMemberCount: number;
  /** Mailchimp page size: BULK_MEMBER_COUNT capped at 1000. */
  pageSize: number;
  minutesPerBulk: number;
  thresholdMinutes: number;
  pollingSeconds: number;
  /** Cron expression for the daemon's ticks. */
  schedule: string;
  logLevel: LogLevel;
  logFile: string | undefined;
  logFormat: "text" | "json";
  mailchimpMaxConnections: number;
  mailchimpRetryMaxSeconds: number;
  mailchimpTimeoutSeconds: number;
  /** Seconds taken off Mailchimp's clock for a window's upper bound. */
  mailchimpClockMarginSeconds: number;
  ometriaMaxRequestsPerSecond: number;
  alertWebhookUrl: string | undefined;
  alertRepeatMinutes: number;
  metricsPort: number | undefined;
  metricsHost: string;
  /** Warnings to log once logging is set up (e.g. page size capped). */
  warnings: string[];
}

/** The result of {@linkcode loadConfig}: a config, or every problem found. */
export type ConfigResult =
  | { ok: true; config: Config }
  | { ok: false; errors: string[]; help?: boolean };

/** What {@linkcode loadConfig} needs from the outside world. */
export interface ConfigSources {
  env: Record<string, string | undefined>;
  args: string[];
  /** Reads a file's text (for `--connections`); errors propagate as config errors. */
  readTextFile?: (path: string) => Promise<string>;
}

const LOG_LEVELS: Record<string, LogLevel> = {
  DEBUG: "debug",
  INFO: "info",
  WARNING: "warning",
  WARN: "warning",
  ERROR: "error",
  CRITICAL: "fatal",
  FATAL: "fatal",
};

function _shown(value: string | undefined): string {
  // A value in the wrong place may be a key pasted into the wrong variable or argument:
  // long values are described, never echoed.
  if (value === undefined) return "unset";
  return value.length <= 16 ? `"${value}"` : `a ${value.length}-character value (not shown)`;
}

function _nearest(value: number, choices: readonly number[]): number {
  // Ties go up, like Math.round.
  return choices.reduce((best, c) => Math.abs(c - value) <= Math.abs(best - value) ? c : best);
}

function _cronEvery(seconds: number): { minutes: number; cron: string } {
  // Cron steps restart at every hour (or day), so only divisors of 60 minutes (or 24 hours)
  // give evenly spaced ticks; "*/7" would tick at :56 and again at :00. The nearest such
  // interval is used (with a warning when it differs).
  const wanted = Math.max(1, seconds / 60);
  if (wanted < 45) {
    const minutes = _nearest(wanted, [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30]);
    return { minutes, cron: minutes === 1 ? "* * * * *" : `*/${minutes} * * * *` };
  }
  const hours = _nearest(wanted / 60, [1, 2, 3, 4, 6, 8, 12, 24]);
  const cron = hours === 1 ? "0 * * * *" : hours === 24 ? "0 0 * * *" : `0 */${hours} * * *`;
  return { minutes: hours * 60, cron };
}

const _CRON_FIELD = /^(\*|\d+(-\d+)?)(\/\d+)?(,(\*|\d+(-\d+)?)(\/\d+)?)*$/;

/** True for a five-field cron expression of numbers, ranges, lists and steps. */
function _isCron(text: string): boolean {
  const fields = text.trim().split(/\s+/);
  return fields.length === 5 && fields.every((f) => _CRON_FIELD.test(f));
}

/**
 * The cron schedule of the ticks from the environment alone (SYNC_SCHEDULE, else
 * POLLING_TIME_IN_SECONDS rounded to what cron can express). Synchronous, for Deno Deploy,
 * where a cron must be registered before anything is awaited.
 */
export function scheduleFromEnv(env: Record<string, string | undefined>): string {
  const explicit = env.SYNC_SCHEDULE?.trim();
  if (explicit) return explicit;
  const seconds = Number(env.POLLING_TIME_IN_SECONDS ?? 60);
  return _cronEvery(Number.isFinite(seconds) && seconds > 0 ? seconds : 60).cron;
}

/**
 * The arguments of one Deno Deploy tick, from the environment (Deploy passes no arguments):
 * `--once` over SYNC_LIST_IDS (comma or space separated) or SYNC_CONNECTIONS_FILE, with the
 * state in the platform's KV unless SYNC_STATE says otherwise.
 */
export function deployArgs(env: Record<string, string | undefined>): string[] {
  const args = ["--once", "--state", env.SYNC_STATE?.trim() || "kv:"];
  if (env.SYNC_CONNECTIONS_FILE?.trim()) {
    args.push("--connections", env.SYNC_CONNECTIONS_FILE.trim());
  }
  args.push(...(env.SYNC_LIST_IDS ?? "").split(/[\s,]+/).filter((id) => id !== ""));
  return args;
}

function intVar(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return fallback;
      const n = Number(v.trim());
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({
          code: "custom",
          message: `${name} must be a whole number${
            max === Number.MAX_SAFE_INTEGER ? ` of at least ${min}` : ` from ${min} to ${max}`
          }; it is ${_shown(v)}. Fix or unset it (default ${fallback}).`,
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

/** Schema of the environment. Defaults are the original tool's. */
export const envSchema = z.object({
  MAILCHIMP_API_KEY: z.string().trim().optional(),
  OMETRIA_API_KEY: z.string().trim().optional(),
  MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS: intVar(
    "MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS",
    2,
    1,
    1000,
  ),
  BULK_MEMBER_COUNT: intVar("BULK_MEMBER_COUNT", 5000, 1),
  MINUTES_NEEDED_TO_PERFORM_A_PARTIAL_SYNC_OF_A_SINGLE_BULK: intVar(
    "MINUTES_NEEDED_TO_PERFORM_A_PARTIAL_SYNC_OF_A_SINGLE_BULK",
    1,
    0,
  ),
  NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA: intVar(
    "NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA",
    120,
    1,
  ),
  POLLING_TIME_IN_SECONDS: intVar("POLLING_TIME_IN_SECONDS", 60, 1),
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
            _shown(v)
          }.`,
        });
        return z.NEVER;
      }
      return level;
    }),
  LOG_FILE: z.string().optional(),
  LOG_FORMAT: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const f = (v ?? "text").trim().toLowerCase() || "text";
      if (f !== "text" && f !== "json") {
        ctx.addIssue({
          code: "custom",
          message: `LOG_FORMAT must be "text" or "json"; it is ${_shown(v)}.`,
        });
        return z.NEVER;
      }
      return f;
    }),
  DATA_CENTER: z.string().trim().optional(),
  MAILCHIMP_BASE_URL: urlVar("MAILCHIMP_BASE_URL"),
  OMETRIA_BASE_URL: urlVar("OMETRIA_BASE_URL"),
  OMETRIA_ENDPOINT: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const e = (v ?? "push").trim().toLowerCase() || "push";
      if (e !== "push" && e !== "record") {
        ctx.addIssue({
          code: "custom",
          message:
            `OMETRIA_ENDPOINT must be "push" (POST /v2/push) or "record" (the original tool's POST /record); it is ${
              _shown(v)
            }.`,
        });
        return z.NEVER;
      }
      return e;
    }),
  MAILCHIMP_MAX_CONNECTIONS: intVar("MAILCHIMP_MAX_CONNECTIONS", 10, 1, 10),
  MAILCHIMP_RETRY_MAX_SECONDS: intVar("MAILCHIMP_RETRY_MAX_SECONDS", 60, 1),
  MAILCHIMP_TIMEOUT_SECONDS: intVar("MAILCHIMP_TIMEOUT_SECONDS", 30, 1, 120),
  MAILCHIMP_CLOCK_MARGIN_SECONDS: intVar("MAILCHIMP_CLOCK_MARGIN_SECONDS", 60, 2, 3600),
  OMETRIA_MAX_REQUESTS_PER_SECOND: intVar("OMETRIA_MAX_REQUESTS_PER_SECOND", 8, 1, 1000),
  SYNC_SCHEDULE: z
    .string()
    .trim()
    .optional()
    .refine(
      (v) => v === undefined || v === "" || _isCron(v),
      'SYNC_SCHEDULE must be a five-field cron expression such as "*/5 * * * *" (minute, hour, day, month, weekday; UTC).',
    )
    .transform((v) => (v ? v : undefined)),
  ALERT_WEBHOOK_URL: urlVar("ALERT_WEBHOOK_URL"),
  ALERT_REPEAT_MINUTES: intVar("ALERT_REPEAT_MINUTES", 240, 1),
  METRICS_PORT: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) {
        ctx.addIssue({
          code: "custom",
          message: `METRICS_PORT must be a port number; it is ${_shown(v)}.`,
        });
        return z.NEVER;
      }
      return n;
    }),
  METRICS_HOST: z.string().trim().optional(),
});

const LIST_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Usage text shown by `--help` and after usage errors. */
export const USAGE = `Usage:
  main.ts [--once] [--force] [--state <path|kv:[path]|memory:>] [--connections <file>] <list_id…>
  main.ts status [--json] [--check] [--state …] [--connections <file>] [list_id…]
  main.ts reset [--state …] <list_id…>
  main.ts demo | simulate | bench

Keys come from MAILCHIMP_API_KEY and OMETRIA_API_KEY (or the variables a connections file
names). See README.md for every variable and flag.`;

/**
 * Reads the command line and the environment into a {@linkcode Config}, collecting every
 * problem rather than stopping at the first. Secrets never appear in messages.
 */
export async function loadConfig(sources: ConfigSources): Promise<ConfigResult> {
  const errors: string[] = [];
  const warnings: string[] = [];

  let parsed;
  try {
    parsed = parseArgs({
      args: sources.args,
      allowPositionals: true,
      strict: true,
      options: {
        once: { type: "boolean", default: false },
        force: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        check: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
        state: { type: "string" },
        connections: { type: "string" },
      },
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, errors: [`${message.replace(/\. To specify.*$/s, "")}.`] };
  }
  if (parsed.values.help) return { ok: false, errors: [], help: true };

  let positionals = parsed.positionals;
  let command: Command = "sync";
  const first = positionals[0];
  if (first !== undefined && (COMMANDS as readonly string[]).includes(first)) {
    command = first as Command;
    positionals = positionals.slice(1);
  }

  const env = _parseEnv(sources.env, errors);

  for (const id of positionals) {
    if (!LIST_ID.test(id)) {
      errors.push(
        `${_shown(id)} is not a Mailchimp list id (letters, digits, "-" and "_" only). ` +
          `Pass list ids as arguments, e.g. main.ts a1b2c3d4e5.`,
      );
    }
  }
  if (parsed.values.state !== undefined && parsed.values.state.trim() === "") {
    errors.push("--state needs a value: a file path, kv:, kv:<path> or memory:.");
  }

  const needsConnections = command === "sync";
  const connections: ConnectionConfig[] = [];
  const thresholdMinutes = env.NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA;

  if (parsed.values.connections !== undefined) {
    const fileConnections = await _readConnectionsFile(
      parsed.values.connections,
      sources,
      env,
      thresholdMinutes,
      errors,
      needsConnections,
    );
    const wanted = new Set(positionals);
    for (const c of fileConnections) {
      if (wanted.size === 0 || wanted.has(c.id) || wanted.has(c.listId)) connections.push(c);
    }
  } else if (positionals.length > 0 && (needsConnections || command === "status")) {
    const mailchimpKey = env.MAILCHIMP_API_KEY;
    const ometriaKey = env.OMETRIA_API_KEY;
    if (needsConnections) {
      if (!mailchimpKey) {
        errors.push(
          "MAILCHIMP_API_KEY is not set: export your Mailchimp API key (Account → Extras → API keys), e.g. MAILCHIMP_API_KEY=abc…-us9.",
        );
      }
      if (!ometriaKey) {
        errors.push(
          "OMETRIA_API_KEY is not set: export your Ometria Data API key (Settings → API keys).",
        );
      }
    }
    let mailchimpBase = env.MAILCHIMP_BASE_URL;
    if (mailchimpBase === undefined && mailchimpKey) {
      mailchimpBase = mailchimpBaseUrlFor(mailchimpKey, env.DATA_CENTER);
      if (mailchimpBase === undefined) {
        errors.push(
          "Cannot tell the Mailchimp data center: MAILCHIMP_API_KEY has no '-<dc>' suffix and DATA_CENTER is not set. Set DATA_CENTER (e.g. us9) or MAILCHIMP_BASE_URL.",
        );
      }
    }
    for (const listId of new Set(positionals)) {
      connections.push({
        id: listId,
        listId,
        mailchimp: { apiKey: mailchimpKey ?? "", baseUrl: mailchimpBase ?? "" },
        ometria: {
          apiKey: ometriaKey ?? "",
          baseUrl: env.OMETRIA_BASE_URL ?? "https://api.ometria.com",
          endpoint: env.OMETRIA_ENDPOINT,
        },
        thresholdSeconds: thresholdMinutes * 60,
      });
    }
  }

  if (needsConnections && connections.length === 0 && errors.length === 0) {
    errors.push(
      "No lists to sync: pass one or more Mailchimp list ids (main.ts <list_id…>) or --connections <file>.",
    );
  }
  if (command === "reset" && positionals.length === 0) {
    errors.push("reset needs the list ids (or connection ids) to reset: main.ts reset <id…>.");
  }
  if (parsed.values.json && command !== "status") errors.push("--json only applies to status.");
  if (parsed.values.check && command !== "status") errors.push("--check only applies to status.");

  if (errors.length > 0) return { ok: false, errors };

  const pageSize = Math.min(env.BULK_MEMBER_COUNT, MAILCHIMP_MAX_PAGE_SIZE);
  // The default (5000) is above the page limit too; only a value the user chose is worth a
  // warning.
  if (
    env.BULK_MEMBER_COUNT > MAILCHIMP_MAX_PAGE_SIZE && sources.env.BULK_MEMBER_COUNT !== undefined
  ) {
    warnings.push(
      `BULK_MEMBER_COUNT=${env.BULK_MEMBER_COUNT} still decides when a list is due, but Mailchimp pages hold at most ${MAILCHIMP_MAX_PAGE_SIZE} members, so pages are read ${MAILCHIMP_MAX_PAGE_SIZE} at a time.`,
    );
  }
  const polling = _cronEvery(env.POLLING_TIME_IN_SECONDS);
  if (env.SYNC_SCHEDULE === undefined && env.POLLING_TIME_IN_SECONDS !== polling.minutes * 60) {
    warnings.push(
      `POLLING_TIME_IN_SECONDS=${env.POLLING_TIME_IN_SECONDS} is rounded to ${polling.minutes} minute(s): ticks are driven by cron, whose unit is the minute (whole hours beyond 59 minutes).`,
    );
  }

  return {
    ok: true,
    config: {
      command,
      once: parsed.values.once,
      force: parsed.values.force,
      json: parsed.values.json,
      check: parsed.values.check,
      state: parsed.values.state,
      listIds: [...new Set(positionals)],
      connections,
      maxConcurrentRuns: env.MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS,
      bulkMemberCount: env.BULK_MEMBER_COUNT,
      pageSize,
      minutesPerBulk: env.MINUTES_NEEDED_TO_PERFORM_A_PARTIAL_SYNC_OF_A_SINGLE_BULK,
      thresholdMinutes,
      pollingSeconds: env.POLLING_TIME_IN_SECONDS,
      schedule: env.SYNC_SCHEDULE ?? polling.cron,
      logLevel: env.LOGGING_LEVEL,
      logFile: env.LOG_FILE === undefined ? "log_file.log" : env.LOG_FILE.trim() || undefined,
      logFormat: env.LOG_FORMAT,
      mailchimpMaxConnections: env.MAILCHIMP_MAX_CONNECTIONS,
      mailchimpRetryMaxSeconds: env.MAILCHIMP_RETRY_MAX_SECONDS,
      mailchimpTimeoutSeconds: env.MAILCHIMP_TIMEOUT_SECONDS,
      mailchimpClockMarginSeconds: env.MAILCHIMP_CLOCK_MARGIN_SECONDS,
      ometriaMaxRequestsPerSecond: env.OMETRIA_MAX_REQUESTS_PER_SECOND,
      alertWebhookUrl: env.ALERT_WEBHOOK_URL,
      alertRepeatMinutes: env.ALERT_REPEAT_MINUTES,
      metricsPort: env.METRICS_PORT,
      metricsHost: env.METRICS_HOST || "127.0.0.1",
      warnings,
    },
  };
}

function _parseEnv(
  raw: Record<string, string | undefined>,
  errors: string[],
): z.infer<typeof envSchema> {
  const result = envSchema.safeParse(raw);
  if (result.success) return result.data;
  for (const issue of result.error.issues) errors.push(issue.message);
  // Go on with defaults in place of the broken values, so that the other problems (missing
  // keys, the connections file…) are reported in the same message rather than one by one.
  const broken = new Set(result.error.issues.map((issue) => String(issue.path[0])));
  return envSchema.parse(
    Object.fromEntries(Object.entries(raw).filter(([name]) => !broken.has(name))),
  );
}

async function _readConnectionsFile(
  path: string,
  sources: ConfigSources,
  env: z.infer<typeof envSchema>,
  thresholdMinutes: number,
  errors: string[],
  requireKeys: boolean,
): Promise<ConnectionConfig[]> {
  let text: string;
  try {
    if (!sources.readTextFile) throw new Error("reading files is not allowed here");
    text = await sources.readTextFile(path);
  } catch (error) {
    errors.push(
      `Cannot read the connections file ${path}: ${
        error instanceof Error ? error.message : String(error)
      }.`,
    );
    return [];
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // V8 quotes the text around the error ("…key_env": abc…"), which may be a key pasted
    // into the file: only the message before that excerpt is shown.
    const message = (error instanceof Error ? error.message : String(error))
      .replace(/,?\s*(?:\.\.\.)?".*$/s, "");
    errors.push(`The connections file ${path} is not valid JSON: ${message}.`);
    return [];
  }
  const result = connectionsFileSchema.safeParse(json);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const where = issue.path.length ? issue.path.join(".") : "(top level)";
      errors.push(`Connections file ${path}, ${where}: ${issue.message}`);
    }
    return [];
  }
  const out: ConnectionConfig[] = [];
  const seen = new Set<string>();
  for (const [i, entry] of result.data.connections.entries()) {
    const where = `Connections file ${path}, connections.${i} (${entry.id})`;
    if (seen.has(entry.id)) errors.push(`${where}: the id "${entry.id}" is used twice.`);
    seen.add(entry.id);
    const mailchimpKey = sources.env[entry.mailchimp_api_key_env]?.trim();
    const ometriaKey = sources.env[entry.ometria_api_key_env]?.trim();
    if (!mailchimpKey && requireKeys) {
      errors.push(
        `${where}: the environment variable ${entry.mailchimp_api_key_env} (its Mailchimp key) is not set.`,
      );
    }
    if (!ometriaKey && requireKeys) {
      errors.push(
        `${where}: the environment variable ${entry.ometria_api_key_env} (its Ometria key) is not set.`,
      );
    }
    let mailchimpBase = entry.mailchimp_base_url ?? env.MAILCHIMP_BASE_URL;
    if (mailchimpBase === undefined && mailchimpKey) {
      mailchimpBase = mailchimpBaseUrlFor(mailchimpKey, entry.data_center ?? env.DATA_CENTER);
      if (mailchimpBase === undefined) {
        errors.push(
          `${where}: cannot tell the Mailchimp data center from ${entry.mailchimp_api_key_env}; set "data_center" or "mailchimp_base_url".`,
        );
      }
    }
    out.push({
      id: entry.id,
      listId: entry.list_id,
      mailchimp: {
        apiKey: mailchimpKey ?? "",
        baseUrl: mailchimpBase ?? "",
        keyName: entry.mailchimp_api_key_env,
      },
      ometria: {
        apiKey: ometriaKey ?? "",
        baseUrl: entry.ometria_base_url ?? env.OMETRIA_BASE_URL ?? "https://api.ometria.com",
        endpoint: entry.ometria_endpoint ?? env.OMETRIA_ENDPOINT,
        keyName: entry.ometria_api_key_env,
      },
      thresholdSeconds: (entry.threshold_minutes ?? thresholdMinutes) * 60,
    });
  }
  return out;
}
