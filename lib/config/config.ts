/**
 * Configuration: the command line, the environment and the optional connections file
 * combined into one {@linkcode Config}, or every problem at once. Every environment
 * variable of the original Python tool keeps its name, meaning and default. Nothing here
 * reads the process: `main.ts` hands in `env`, `args` and a reader.
 *
 * @module
 */
import { z } from "zod";
import { apiKeyProblem, secretInPlaceOfId } from "./api_key.ts";
import { type Command, type CommandLine, parseCommandLine } from "./command_line.ts";
import { type ConnectionEntry, readConnectionsFile } from "./connections_file.ts";
import {
  DEFAULT_LISTEN_HOST,
  DEFAULT_MAILCHIMP_SIM_PORT,
  DEFAULT_OMETRIA_BASE_URL,
  DEFAULT_OMETRIA_SIM_PORT,
} from "./defaults.ts";
import {
  decimalInteger,
  type Env,
  type LogLevel,
  parseEnv,
  shown,
  webhookSecretProblem,
  webhookSigningSecretProblem,
} from "./env_schema.ts";
import { cronEvery } from "./schedule.ts";
import type { FieldsConfig } from "../mapping/fields_config.ts";
import { MAILCHIMP_MAX_PAGE_SIZE, mailchimpBaseUrlFor } from "../mailchimp/mailchimp_url.ts";
import { kvConnectUrlProblem } from "../state/kv_connect.ts";
import { subscriberHash } from "../mailchimp/member.ts";

export type { Command } from "./command_line.ts";
export type { LogLevel } from "./env_schema.ts";

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
  /**
   * The secret in this connection's webhook URL (MAILCHIMP_WEBHOOK_SECRET, or the variable
   * named by `webhook_secret_env`); `webhookSecretName` names where it came from.
   */
  webhookSecret?: string;
  webhookSecretName?: string;
  /**
   * The signing secret of this list's webhook (MAILCHIMP_WEBHOOK_SIGNING_SECRET for a list
   * given on the command line, or the variable named by `webhook_signing_secret_env`): with
   * it, the receiver checks every delivery's signature. `webhookSigningSecretName` names the
   * variable even when it is not set yet, for `webhooks register` to say where the secret it
   * is shown goes.
   */
  webhookSigningSecret?: string;
  webhookSigningSecretName?: string;
  /** The connections file's `fields` (the documented default when absent). */
  fields?: FieldsConfig;
  /**
   * `optout_back` (or OPTOUT_BACK for lists on the command line): unsubscribes made in Ometria
   * set the Mailchimp member to unsubscribed (engine/optout_back.ts).
   */
  optoutBack?: boolean;
  /**
   * `erase_on_permanent_delete`: a permanent delete a webhook reports (and Mailchimp confirms)
   * files Ometria's data deletion request too, not only an opt-out.
   */
  eraseOnPermanentDelete?: boolean;
  /**
   * `force_optin_on_resubscribe`: a member who opted in again in Mailchimp after this program
   * had sent them is sent with `@force_optin` (README, "Consent").
   */
  forceOptinOnResubscribe?: boolean;
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
  /** RUN_DEADLINE_MINUTES: how long a run may wait out the APIs' rate limits, from its start. */
  runDeadlineMinutes: number;
  ometriaMaxRequestsPerSecond: number;
  /** OMETRIA_BATCH_SIZE: records per Ometria push request, 1 to 100. */
  ometriaBatchSize: number;
  /** RECONCILE_EVERY_HOURS: hours between full reconciliations of a connection. */
  reconcileEveryHours: number;
  /** VERIFY_EVERY_HOURS: hours between scheduled sampled verifies of a connection; 0: none. */
  verifyEveryHours: number;
  /** `verify [ids…] [--sample N] [--repair]`; undefined for other commands. */
  verify: VerifyRequest | undefined;
  /** STATE_LEASE_SECONDS: how long a Deno KV lease lasts without renewal. */
  stateLeaseSeconds: number;
  /** QUARANTINE_RETRIES_PER_RUN: held members tried again per run. */
  quarantineRetries: number;
  alertWebhookUrl: string | undefined;
  alertRepeatMinutes: number;
  metricsPort: number | undefined;
  metricsHost: string;
  /**
   * STATUS_TOKEN: what the Deploy handler's status page, `/status.json` and `/metrics` need
   * (a secret: never logged).
   */
  statusToken: string | undefined;
  /** WEBHOOK_PORT: where the daemon receives Mailchimp webhooks; undefined: no receiver. */
  webhookPort: number | undefined;
  /** WEBHOOK_HOST: address of the webhook listener. */
  webhookHost: string;
  /** `webhooks register|list`. */
  webhooksAction: "register" | "list" | undefined;
  /** `webhooks register --url`: the public base URL the receiver is reached at. */
  publicUrl: string | undefined;
  /** `erase <email…> [--connection id] [--mailchimp]` or `erase --status`; undefined otherwise. */
  erase: EraseRequest | undefined;
  /** `explain <email|subscriber-hash> [--connection id] [--ometria]`; undefined otherwise. */
  explain: ExplainRequest | undefined;
  /**
   * `sync --repush` / `reset --repush`: the next run of each connection reads the whole list
   * and sends every member, those the ledger calls unchanged too.
   */
  repush: boolean;
  /** `sync --dry-run`: say what a run would push, write nothing. */
  dryRun: boolean;
  /**
   * SYNC_ON_BRANCHES: on Deno Deploy, tick outside the production timeline too (branch and
   * preview deployments), which by default do not: see `config/deploy_timeline.ts`.
   */
  syncOnBranches: boolean;
  /**
   * SYNC_REQUIRE_STATE_VOLUME: refuse a state folder that is not a mounted volume (the
   * container image sets it; see `app/state_volume.ts`).
   */
  requireStateVolume: boolean;
  /** `simulate --mailchimp-port`: where the Mailchimp simulator listens. */
  mailchimpPort: number;
  /** `simulate --ometria-port`: where the Ometria simulator listens. */
  ometriaPort: number;
  /** Warnings to log once logging is set up (e.g. page size capped). */
  warnings: string[];
}

/** What `verify` was asked: members at random (undefined: all), and whether to repair. */
export interface VerifyRequest {
  sample: number | undefined;
  repair: boolean;
}

/**
 * What `erase` was asked: the addresses (held in memory only, never shown in messages),
 * whether to delete the Mailchimp members permanently too, or only to list open erasures.
 */
export interface EraseRequest {
  emails: string[];
  mailchimp: boolean;
  status: boolean;
}

/**
 * What `explain` was asked: the member, by its subscriber hash (Mailchimp's id), and the
 * address when one was given (held in memory only, never shown in messages: it finds the
 * member's erasure record).
 */
export interface ExplainRequest {
  /** The subscriber hash: the one given, or the MD5 of the lowercased address. */
  memberId: string;
  /** The address given, or undefined when a subscriber hash was. */
  email: string | undefined;
  /** `--ometria`: what Ometria holds too. */
  ometria: boolean;
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

const LIST_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Commands that sync, so need keys and connections. */
const SYNCING: readonly Command[] = ["sync", "reconcile", "webhooks", "explain", "verify"];

/**
 * Reads the command line and the environment into a {@linkcode Config}, collecting every
 * problem rather than stopping at the first. Secrets never appear in messages.
 */
export async function loadConfig(sources: ConfigSources): Promise<ConfigResult> {
  const errors: string[] = [];
  const warnings: string[] = [];

  const line = parseCommandLine(sources.args, errors);
  if (line.help) return { ok: false, errors: [], help: true };
  const { command } = line;
  const env = parseEnv(sources.env, errors);

  const requests = _commandRequests(line, errors, warnings);
  const { webhooksAction, publicUrl, erase, explain, verify } = requests;
  const positionals = requests.positionals;
  _modeFlags(line, errors);
  _checkIds(positionals, sources.env, errors);
  if (line.state !== undefined && line.state.trim() === "") {
    errors.push("--state needs a value: a file path, kv:, kv:<path> or memory:.");
  }
  const kvProblem = line.state?.startsWith("kv:")
    ? kvConnectUrlProblem(line.state.slice("kv:".length))
    : undefined;
  if (kvProblem !== undefined) errors.push(kvProblem);
  const { mailchimpPort, ometriaPort } = _simulatorPorts(line, errors);

  const needsConnections = SYNCING.includes(command) ||
    (command === "erase" && erase?.status === false);
  const thresholdMinutes = env.NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA;
  let connections: ConnectionConfig[] = [];
  if (line.connections !== undefined) {
    const wanted = new Set(positionals);
    connections = (await _fileConnections(line.connections, sources, env, errors, {
      requireKeys: needsConnections,
      thresholdMinutes,
      // `webhooks register` is what prints the secret: it cannot need it yet.
      requireSigningSecret: command !== "webhooks",
    })).filter((c) => wanted.size === 0 || wanted.has(c.id) || wanted.has(c.listId));
  } else if (
    positionals.length > 0 && (needsConnections || command === "status" || command === "erase")
  ) {
    connections = _argumentConnections(positionals, env, errors, {
      requireKeys: needsConnections,
      thresholdMinutes,
    });
  }
  _sharedSigningSecret(env, line.connections === undefined ? positionals : [], errors);

  _connectionProblems(line, env, requests, connections, needsConnections, errors);
  if (errors.length > 0) return { ok: false, errors };
  const { pageSize, polling } = _settingWarnings(line, env, sources.env, warnings);

  return {
    ok: true,
    config: {
      command,
      once: line.once,
      force: line.force,
      json: line.json,
      check: line.check,
      state: line.state,
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
      runDeadlineMinutes: env.RUN_DEADLINE_MINUTES,
      ometriaMaxRequestsPerSecond: env.OMETRIA_MAX_REQUESTS_PER_SECOND,
      ometriaBatchSize: env.OMETRIA_BATCH_SIZE,
      reconcileEveryHours: env.RECONCILE_EVERY_HOURS,
      verifyEveryHours: env.VERIFY_EVERY_HOURS,
      verify,
      stateLeaseSeconds: env.STATE_LEASE_SECONDS,
      quarantineRetries: env.QUARANTINE_RETRIES_PER_RUN,
      alertWebhookUrl: env.ALERT_WEBHOOK_URL,
      alertRepeatMinutes: env.ALERT_REPEAT_MINUTES,
      metricsPort: env.METRICS_PORT,
      metricsHost: env.METRICS_HOST || DEFAULT_LISTEN_HOST,
      statusToken: env.STATUS_TOKEN,
      webhookPort: env.WEBHOOK_PORT,
      webhookHost: env.WEBHOOK_HOST || DEFAULT_LISTEN_HOST,
      webhooksAction,
      publicUrl,
      erase,
      explain,
      repush: line.repush,
      dryRun: line.dryRun,
      syncOnBranches: env.SYNC_ON_BRANCHES,
      requireStateVolume: env.SYNC_REQUIRE_STATE_VOLUME,
      mailchimpPort,
      ometriaPort,
      warnings,
    },
  };
}

/** What a command's own arguments ask, and the ids left to read connections from. */
interface _CommandRequests {
  positionals: string[];
  webhooksAction: Config["webhooksAction"];
  publicUrl: string | undefined;
  erase: EraseRequest | undefined;
  explain: ExplainRequest | undefined;
  verify: VerifyRequest | undefined;
}

/**
 * Reads what belongs to one command (webhooks' action and URL, erase's, explain's and
 * verify's requests) and refuses those flags on the other commands.
 */
function _commandRequests(
  line: CommandLine,
  errors: string[],
  warnings: string[],
): _CommandRequests {
  const { command } = line;
  let positionals = line.positionals;
  let webhooksAction: Config["webhooksAction"];
  let publicUrl: string | undefined;
  let erase: EraseRequest | undefined;
  let explain: ExplainRequest | undefined;
  let verify: VerifyRequest | undefined;
  if (command === "webhooks") {
    const action = positionals[0];
    positionals = positionals.slice(1);
    if (action === "register" || action === "list") webhooksAction = action;
    else {
      errors.push(
        `webhooks needs "register" or "list": main.ts webhooks register <id…> --url <public base URL>, or main.ts webhooks list.`,
      );
    }
    if (action === "register") {
      publicUrl = _publicUrl(line.url, errors);
      const clear = publicUrl === undefined ? undefined : _clearTextWarning(publicUrl);
      if (clear !== undefined) warnings.push(clear);
    } else if (line.url !== undefined) {
      errors.push("--url only applies to webhooks register.");
    }
  } else if (line.url !== undefined) {
    errors.push("--url only applies to webhooks register.");
  }

  if (command === "erase") {
    erase = _eraseRequest(line, positionals, errors);
    // What follows reads the connection to erase from as the one id given.
    positionals = line.connection === undefined ? [] : [line.connection];
  } else if (command === "explain") {
    explain = _explainRequest(line, positionals, errors);
    positionals = line.connection === undefined ? [] : [line.connection];
  } else if (line.connection !== undefined && command !== "verify") {
    errors.push("--connection only applies to erase, explain and verify.");
  }
  if (command === "verify") {
    verify = _verifyRequest(line, errors);
    if (line.connection !== undefined) positionals = [...positionals, line.connection];
  } else if (line.sample !== undefined || line.repair) {
    errors.push("--sample and --repair only apply to verify.");
  }
  if (command !== "erase" && (line.mailchimp || line.status)) {
    errors.push("--mailchimp and --status only apply to erase.");
  }
  return { positionals, webhooksAction, publicUrl, erase, explain, verify };
}

/** What the connections found leave wrong for the command: nothing to act on, mismatches. */
function _connectionProblems(
  line: CommandLine,
  env: Env,
  requests: _CommandRequests,
  connections: readonly ConnectionConfig[],
  needsConnections: boolean,
  errors: string[],
): void {
  const { command } = line;
  const { positionals, erase, webhooksAction } = requests;
  if (command === "erase" && !erase?.status && connections.length === 0 && errors.length === 0) {
    errors.push(
      line.connections === undefined
        ? "erase needs the list to erase from: main.ts erase <email…> --connection <list_id> (or --connections <file>)."
        : `erase: the connections file has no connection ${line.connection ?? ""}.`,
    );
  }
  if (command === "explain" && connections.length === 0 && errors.length === 0) {
    errors.push(
      line.connections === undefined
        ? "explain needs the list the member is in: main.ts explain <email|subscriber-hash> --connection <list_id> (or --connections <file>)."
        : `explain: the connections file has no connection ${
          line.connection ?? ""
        }; see its "id" fields.`,
    );
  }
  if (needsConnections && connections.length === 0 && errors.length === 0) {
    errors.push(
      `No lists to ${command}: pass one or more Mailchimp list ids (main.ts ${
        command === "sync" ? "" : `${command} `
      }<list_id…>) or --connections <file>.`,
    );
  }
  if (command === "verify") {
    const legacy = connections.filter((c) => c.ometria.endpoint !== "push");
    if (legacy.length > 0) {
      errors.push(
        `Cannot verify ${legacy.map((c) => c.id).join(", ")}: verify reads contacts back ` +
          "through Ometria's Contact API, which the legacy /record endpoint does not have; " +
          "verify only the connections that push to /v2/push.",
      );
    }
  }
  if (command === "reset" && positionals.length === 0) {
    errors.push("reset needs the list ids (or connection ids) to reset: main.ts reset <id…>.");
  }
  if (
    line.json && command !== "status" && command !== "explain" && command !== "verify" &&
    !line.dryRun
  ) {
    errors.push("--json only applies to status, explain, verify and sync --dry-run.");
  }
  if (line.check && command !== "status") errors.push("--check only applies to status.");

  const wantsSecrets = webhooksAction === "register" ||
    (command === "sync" && !line.once && !line.dryRun && env.WEBHOOK_PORT !== undefined);
  if (wantsSecrets) {
    for (const c of connections) {
      if (c.webhookSecret === undefined && !errors.some((e) => e.includes(`(${c.id})`))) {
        errors.push(
          `Connection ${c.id} has no webhook secret: set MAILCHIMP_WEBHOOK_SECRET (for every ` +
            `connection), or name a variable holding one in "webhook_secret_env" of the ` +
            `connections file${webhooksAction === "register" ? "" : " (or unset WEBHOOK_PORT)"}.`,
        );
      }
    }
  }
}

/** The page size the key allows, the polling schedule, and warnings on settings kept. */
function _settingWarnings(
  line: CommandLine,
  env: Env,
  raw: ConfigSources["env"],
  warnings: string[],
): { pageSize: number; polling: ReturnType<typeof cronEvery> } {
  const pageSize = Math.min(env.BULK_MEMBER_COUNT, MAILCHIMP_MAX_PAGE_SIZE);
  // The default (5000) is above the page limit too; only a value the user chose is worth a
  // warning.
  if (
    env.BULK_MEMBER_COUNT > MAILCHIMP_MAX_PAGE_SIZE && raw.BULK_MEMBER_COUNT !== undefined
  ) {
    warnings.push(
      `BULK_MEMBER_COUNT=${env.BULK_MEMBER_COUNT} still decides when a list is due, but Mailchimp pages hold at most ${MAILCHIMP_MAX_PAGE_SIZE} members, so pages are read ${MAILCHIMP_MAX_PAGE_SIZE} at a time.`,
    );
  }
  if (env.OPTOUT_BACK && line.connections !== undefined) {
    warnings.push(
      'OPTOUT_BACK applies to lists given as arguments; a connections file says it per connection ("optout_back": true).',
    );
  }
  const polling = cronEvery(env.POLLING_TIME_IN_SECONDS);
  if (env.SYNC_SCHEDULE === undefined && env.POLLING_TIME_IN_SECONDS !== polling.minutes * 60) {
    warnings.push(
      `POLLING_TIME_IN_SECONDS=${env.POLLING_TIME_IN_SECONDS} is rounded to ${polling.minutes} minute(s): ticks are driven by cron, whose unit is the minute (whole hours beyond 59 minutes).`,
    );
  }

  return { pageSize, polling };
}

/** `verify`'s flags: `--sample N` a whole number from 1 to 1,000,000. */
function _verifyRequest(line: CommandLine, errors: string[]): VerifyRequest {
  let sample: number | undefined;
  if (line.sample !== undefined) {
    const text = line.sample.trim();
    const n = /^\d{1,7}$/.test(text) ? Number(text) : Number.NaN;
    if (!(n >= 1 && n <= 1_000_000)) {
      const shown = text.length <= 20 ? JSON.stringify(text) : "that value";
      errors.push(
        `--sample needs a whole number of members from 1 to 1000000 (e.g. --sample 1000); it is ${shown}.`,
      );
    } else sample = n;
  }
  return { sample, repair: line.repair };
}

/**
 * Every secret a config holds (API keys, webhook secrets, `STATUS_TOKEN`, the alert webhook
 * URL, which may carry a token), for `redact` and `errorText` (lib/log/error_text.ts) to take
 * out of any text shown or stored.
 */
export function configSecrets(
  config: Pick<Config, "connections" | "alertWebhookUrl"> & Partial<Pick<Config, "statusToken">>,
): string[] {
  const secrets = new Set<string>();
  if (config.statusToken) secrets.add(config.statusToken);
  for (const c of config.connections) {
    if (c.mailchimp.apiKey) secrets.add(c.mailchimp.apiKey);
    if (c.ometria.apiKey) secrets.add(c.ometria.apiKey);
    if (c.webhookSecret) secrets.add(c.webhookSecret);
    if (c.webhookSigningSecret) secrets.add(c.webhookSigningSecret);
  }
  if (config.alertWebhookUrl) {
    // The origin is fine to show; what follows it may be a token.
    const url = new URL(config.alertWebhookUrl);
    if (url.pathname.length > 1 || url.search) secrets.add(config.alertWebhookUrl);
  }
  return [...secrets];
}

/**
 * The keys in the raw environment, whatever the command: what a log or error text must
 * never show even before a config exists.
 */
export function envSecrets(env: Record<string, string | undefined>): string[] {
  return Object.values(_secretVariables(env))
    .map((v) => v?.trim())
    .filter((v): v is string => v !== undefined && v !== "");
}

/** The environment's secret variables by name (the keys, the token, the webhook secret). */
function _secretVariables(
  env: Record<string, string | undefined>,
): Record<string, string | undefined> {
  return {
    MAILCHIMP_API_KEY: env.MAILCHIMP_API_KEY,
    OMETRIA_API_KEY: env.OMETRIA_API_KEY,
    STATUS_TOKEN: env.STATUS_TOKEN,
    MAILCHIMP_WEBHOOK_SECRET: env.MAILCHIMP_WEBHOOK_SECRET,
    MAILCHIMP_WEBHOOK_SIGNING_SECRET: env.MAILCHIMP_WEBHOOK_SIGNING_SECRET,
  };
}

/**
 * Appends a problem for each id argument that is not a list id, or that is a key (by its
 * shape, or the value of a secret variable of `env`), never showing the key.
 */
function _checkIds(
  ids: readonly string[],
  env: Record<string, string | undefined>,
  errors: string[],
): void {
  const secretVariables = _secretVariables(env);
  for (const [i, id] of ids.entries()) {
    const secret = secretInPlaceOfId(id, secretVariables);
    if (secret !== undefined) {
      errors.push(
        `Argument ${i + 1} of the ids is ${secret}, not a list id (it is not shown). Pass ` +
          "list ids as arguments, e.g. main.ts a1b2c3d4e5, and keys only in the environment.",
      );
    } else if (!LIST_ID.test(id)) {
      errors.push(
        `${shown(id)} is not a Mailchimp list id (letters, digits, "-" and "_" only). ` +
          `Pass list ids as arguments, e.g. main.ts a1b2c3d4e5.`,
      );
    }
  }
}

/**
 * MAILCHIMP_WEBHOOK_SIGNING_SECRET with several lists on the command line: one webhook's
 * secret cannot be every list's, since each list's webhook has its own.
 */
function _sharedSigningSecret(env: Env, listIds: readonly string[], errors: string[]): void {
  if (env.MAILCHIMP_WEBHOOK_SIGNING_SECRET === undefined || new Set(listIds).size < 2) return;
  errors.push(
    "MAILCHIMP_WEBHOOK_SIGNING_SECRET is one webhook's signing secret, and each list's " +
      "webhook has its own: with several lists, use a connections file and name each one's " +
      'variable in "webhook_signing_secret_env".',
  );
}

/**
 * `erase`'s addresses and switches. An address that is not one is named by its position
 * only: these are personal data, and errors go to the log.
 */
function _eraseRequest(
  line: CommandLine,
  emails: readonly string[],
  errors: string[],
): EraseRequest {
  const valid: string[] = [];
  for (const [i, email] of emails.entries()) {
    if (z.email().safeParse(email.trim()).success) valid.push(email.trim());
    else {
      errors.push(
        `Argument ${i + 1} of erase is not an email address (not shown: it may be personal data).`,
      );
    }
  }
  if (line.status && (emails.length > 0 || line.mailchimp)) {
    errors.push("erase --status lists the open erasures: give it no addresses and no --mailchimp.");
  } else if (!line.status && emails.length === 0) {
    errors.push(
      "erase needs the addresses to erase: main.ts erase <email…> [--connection <id>] [--mailchimp], or main.ts erase --status.",
    );
  }
  return { emails: valid, mailchimp: line.mailchimp, status: line.status };
}

/**
 * `explain`'s one argument: an address or a subscriber hash (32 hex digits). Neither is
 * shown in a message: an address is personal data, and errors go to the log.
 */
function _explainRequest(
  line: CommandLine,
  args: readonly string[],
  errors: string[],
): ExplainRequest | undefined {
  if (args.length !== 1) {
    errors.push(
      `explain takes one member, got ${args.length}: main.ts explain <email|subscriber-hash> [--connection <id>] [--ometria] [--json].`,
    );
    return undefined;
  }
  const given = args[0]!.trim();
  if (/^[0-9a-fA-F]{32}$/.test(given)) {
    return { memberId: given.toLowerCase(), email: undefined, ometria: line.ometria };
  }
  if (z.email().safeParse(given).success) {
    return { memberId: subscriberHash(given), email: given, ometria: line.ometria };
  }
  errors.push(
    "The argument of explain is neither an email address nor a subscriber hash (32 hex " +
      "digits, the MD5 of the lowercased address); it is not shown, as it may be personal data.",
  );
  return undefined;
}

/** `--repush`, `--dry-run` and `--ometria`: which commands take them, and not together. */
function _modeFlags(line: CommandLine, errors: string[]): void {
  const { command } = line;
  if (line.repush && command !== "sync" && command !== "reset") {
    errors.push("--repush only applies to sync and reset.");
  }
  if (line.dryRun && command !== "sync") errors.push("--dry-run only applies to sync.");
  if (line.dryRun && line.repush) {
    errors.push(
      "--dry-run writes nothing, so it cannot --repush: run sync --dry-run to see what would be sent, then sync --repush.",
    );
  }
  if (line.ometria && command !== "explain") errors.push("--ometria only applies to explain.");
}

/** `--url`: an http(s) base URL, without a trailing slash, query or fragment. */
function _publicUrl(value: string | undefined, errors: string[]): string | undefined {
  if (value === undefined || value.trim() === "") {
    errors.push(
      "webhooks register needs --url <public base URL>: where Mailchimp reaches the receiver, e.g. --url https://sync.example.com.",
    );
    return undefined;
  }
  try {
    const url = new URL(value.trim());
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError();
    if (url.search || url.hash) throw new TypeError();
    return url.href.replace(/\/+$/, "");
  } catch {
    errors.push(
      `--url must be an http(s) base URL without a query, e.g. https://sync.example.com; it is ${
        shown(value)
      }.`,
    );
    return undefined;
  }
}

/**
 * The warning for a public `http://` webhook base, or undefined: every event Mailchimp sends
 * there, and the secret in its URL (the receiver's only protection), would cross the internet
 * in clear. Loopback and private addresses are left alone: nothing public reaches them, so
 * they are a test or a proxy's inside, not what Mailchimp is given.
 */
function _clearTextWarning(base: string): string | undefined {
  const url = new URL(base);
  if (url.protocol !== "http:" || _isPrivateHost(url.hostname)) return undefined;
  return `--url ${base} is http://: Mailchimp would send every event, and the webhook ` +
    `secret in its URL, in clear across the internet. Put a TLS reverse proxy in front of ` +
    `the receiver and register https://${url.host} instead (README, "Real time").`;
}

/** Loopback, private (RFC 1918, unique-local) and link-local addresses, and `localhost`. */
function _isPrivateHost(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[|\]$/g, "");
  if (name === "localhost" || name.endsWith(".localhost") || name === "::1") return true;
  if (/^(fc|fd|fe80:)/.test(name) && name.includes(":")) return true;
  const v4 = /^(\d+)\.(\d+)\.\d+\.\d+$/.exec(name);
  if (!v4) return false;
  const [a, b] = [Number(v4[1]), Number(v4[2])];
  return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) || (a === 169 && b === 254);
}

/** `simulate --mailchimp-port/--ometria-port`, or their defaults; refused for other commands. */
function _simulatorPorts(
  line: CommandLine,
  errors: string[],
): Pick<Config, "mailchimpPort" | "ometriaPort"> {
  const mailchimpPort = _port(
    "--mailchimp-port",
    line.mailchimpPort,
    DEFAULT_MAILCHIMP_SIM_PORT,
    errors,
  );
  const ometriaPort = _port("--ometria-port", line.ometriaPort, DEFAULT_OMETRIA_SIM_PORT, errors);
  if (
    line.command !== "simulate" &&
    (line.mailchimpPort !== undefined || line.ometriaPort !== undefined)
  ) {
    errors.push("--mailchimp-port and --ometria-port only apply to simulate.");
  }
  return { mailchimpPort, ometriaPort };
}

function _port(flag: string, value: string | undefined, fallback: number, errors: string[]) {
  if (value === undefined) return fallback;
  const n = decimalInteger(value);
  if (n === undefined || n > 65535) {
    errors.push(`${flag} must be a port number from 0 to 65535; it is ${shown(value)}.`);
    return fallback;
  }
  return n;
}

function _argumentConnections(
  listIds: string[],
  env: Env,
  errors: string[],
  options: { requireKeys: boolean; thresholdMinutes: number },
): ConnectionConfig[] {
  const mailchimpKey = env.MAILCHIMP_API_KEY;
  const ometriaKey = env.OMETRIA_API_KEY;
  if (options.requireKeys) {
    if (!mailchimpKey && !errors.some((e) => e.startsWith("MAILCHIMP_API_KEY"))) {
      errors.push(
        "MAILCHIMP_API_KEY is not set: export your Mailchimp API key (Account → Extras → API keys), e.g. MAILCHIMP_API_KEY=abc…-us9.",
      );
    }
    if (!ometriaKey && !errors.some((e) => e.startsWith("OMETRIA_API_KEY"))) {
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
  const unique = [...new Set(listIds)];
  return unique.map((listId) => ({
    id: listId,
    listId,
    mailchimp: { apiKey: mailchimpKey ?? "", baseUrl: mailchimpBase ?? "" },
    ometria: {
      apiKey: ometriaKey ?? "",
      baseUrl: env.OMETRIA_BASE_URL ?? DEFAULT_OMETRIA_BASE_URL,
      endpoint: env.OMETRIA_ENDPOINT,
    },
    thresholdSeconds: options.thresholdMinutes * 60,
    ...(env.OPTOUT_BACK ? { optoutBack: true } : {}),
    ...(env.MAILCHIMP_WEBHOOK_SECRET
      ? {
        webhookSecret: env.MAILCHIMP_WEBHOOK_SECRET,
        webhookSecretName: "MAILCHIMP_WEBHOOK_SECRET",
      }
      : {}),
    // One webhook, one secret: with several lists the variable fits none of them (an error
    // when it is set), and `webhooks register` names a variable per connection instead.
    ...(unique.length === 1
      ? {
        webhookSigningSecretName: "MAILCHIMP_WEBHOOK_SIGNING_SECRET",
        ...(env.MAILCHIMP_WEBHOOK_SIGNING_SECRET
          ? { webhookSigningSecret: env.MAILCHIMP_WEBHOOK_SIGNING_SECRET }
          : {}),
      }
      : {}),
  }));
}

async function _fileConnections(
  path: string,
  sources: ConfigSources,
  env: Env,
  errors: string[],
  options: { requireKeys: boolean; thresholdMinutes: number; requireSigningSecret: boolean },
): Promise<ConnectionConfig[]> {
  const entries = await readConnectionsFile(path, sources, errors);
  const out: ConnectionConfig[] = [];
  const seen = new Set<string>();
  const secrets = _fileSecretVariables(entries, sources.env);
  for (const [i, entry] of entries.entries()) {
    const secretId = secretInPlaceOfId(entry.id, secrets);
    const secretList = secretInPlaceOfId(entry.list_id, secrets);
    const where = `Connections file ${path}, connections.${i}${
      secretId === undefined ? ` (${entry.id})` : ""
    }`;
    if (secretId !== undefined || secretList !== undefined) {
      errors.push(
        `${where}: its ${secretId === undefined ? "list_id" : "id"} is ${
          secretId ?? secretList
        } (not shown), not an id. Put ids in the file and keys only in the environment ` +
          "variables it names.",
      );
      continue;
    }
    if (seen.has(entry.id)) errors.push(`${where}: the id "${entry.id}" is used twice.`);
    seen.add(entry.id);
    const key = (name: string, what: string) => {
      const value = sources.env[name]?.trim();
      if (!value) {
        if (options.requireKeys) {
          errors.push(`${where}: the environment variable ${name} (its ${what} key) is not set.`);
        }
        return undefined;
      }
      const problem = apiKeyProblem(name, value);
      if (problem !== undefined) {
        // Reported once per variable, however many connections share it.
        const message = `${where}: ${problem}`;
        if (!errors.some((e) => e.endsWith(problem))) errors.push(message);
        return undefined;
      }
      return value;
    };
    const mailchimpKey = key(entry.mailchimp_api_key_env, "Mailchimp");
    const ometriaKey = key(entry.ometria_api_key_env, "Ometria");
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
        baseUrl: entry.ometria_base_url ?? env.OMETRIA_BASE_URL ?? DEFAULT_OMETRIA_BASE_URL,
        endpoint: entry.ometria_endpoint ?? env.OMETRIA_ENDPOINT,
        keyName: entry.ometria_api_key_env,
      },
      thresholdSeconds: (entry.threshold_minutes ?? options.thresholdMinutes) * 60,
      ..._fileWebhookSecret(entry.webhook_secret_env, sources, env, where, errors),
      ..._fileSigningSecret(entry.webhook_signing_secret_env, sources, where, errors, options),
      ...(entry.fields ? { fields: entry.fields } : {}),
      ...(entry.optout_back ? { optoutBack: true } : {}),
      ...(entry.erase_on_permanent_delete ? { eraseOnPermanentDelete: true } : {}),
      ...(entry.force_optin_on_resubscribe ? { forceOptinOnResubscribe: true } : {}),
    });
    const legacy = (entry.ometria_endpoint ?? env.OMETRIA_ENDPOINT) === "record";
    for (const key of ["fields", "force_optin_on_resubscribe"] as const) {
      if (entry[key] && legacy) {
        errors.push(
          `${where}: "${key}" only applies to the push endpoint; the legacy /record format is fixed. Remove "${key}" or use "ometria_endpoint": "push".`,
        );
      }
    }
  }
  return out;
}

/** The secrets a connections file's entries name (and the environment's own), by variable. */
function _fileSecretVariables(
  entries: readonly ConnectionEntry[],
  env: Record<string, string | undefined>,
): Record<string, string | undefined> {
  const known = _secretVariables(env);
  for (const e of entries) {
    for (const name of [e.mailchimp_api_key_env, e.ometria_api_key_env, e.webhook_secret_env]) {
      if (name !== undefined) known[name] = env[name];
    }
  }
  return known;
}

/** A connection's webhook secret: its own variable (`webhook_secret_env`), else the shared one. */
function _fileWebhookSecret(
  name: string | undefined,
  sources: ConfigSources,
  env: Env,
  where: string,
  errors: string[],
): Pick<ConnectionConfig, "webhookSecret" | "webhookSecretName"> {
  if (name === undefined) {
    return env.MAILCHIMP_WEBHOOK_SECRET
      ? {
        webhookSecret: env.MAILCHIMP_WEBHOOK_SECRET,
        webhookSecretName: "MAILCHIMP_WEBHOOK_SECRET",
      }
      : {};
  }
  const value = sources.env[name]?.trim();
  if (!value) {
    errors.push(`${where}: the environment variable ${name} (its webhook secret) is not set.`);
    return {};
  }
  const problem = webhookSecretProblem(name, value);
  if (problem !== undefined) {
    errors.push(`${where}: ${problem}`);
    return {};
  }
  return { webhookSecret: value, webhookSecretName: name };
}

/**
 * A connection's webhook signing secret, from the variable its entry names (a signing secret
 * belongs to one list's webhook, so there is no shared fallback). The name is kept even while
 * the variable is unset, for `webhooks register` to say where the secret goes.
 */
function _fileSigningSecret(
  name: string | undefined,
  sources: ConfigSources,
  where: string,
  errors: string[],
  options: { requireSigningSecret: boolean },
): Pick<ConnectionConfig, "webhookSigningSecret" | "webhookSigningSecretName"> {
  if (name === undefined) return {};
  const value = sources.env[name]?.trim();
  if (!value) {
    if (options.requireSigningSecret) {
      errors.push(
        `${where}: the environment variable ${name} (its webhook signing secret) is not set; ` +
          `set it to the secret \`webhooks register\` printed, or remove "webhook_signing_secret_env".`,
      );
    }
    return { webhookSigningSecretName: name };
  }
  const problem = webhookSigningSecretProblem(name, value);
  if (problem !== undefined) {
    errors.push(`${where}: ${problem}`);
    return { webhookSigningSecretName: name };
  }
  return { webhookSigningSecret: value, webhookSigningSecretName: name };
}
