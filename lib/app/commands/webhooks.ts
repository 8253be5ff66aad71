/**
 * `webhooks register <ids…> --url <public base>` and `webhooks list [ids…]`: each list's
 * Mailchimp webhook, created or updated through the Marketing API. Neither touches the state
 * or takes its lock, so both work while the daemon runs — which registering needs, since
 * Mailchimp checks the URL with a GET before it accepts it.
 *
 * A webhook Mailchimp creates is signed, and its signing secret is in the create answer only
 * (docs/API_NOTES.md, "Signed deliveries"): `register` prints it once, with the variable to
 * put it in, and keeps it nowhere. `register --force` deletes and re-creates the webhook,
 * which is the only way to a new secret (a lost one, or a webhook from before signing).
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../../clock/clock.ts";
import { type Config, configSecrets, type ConnectionConfig } from "../../config/config.ts";
import { DEFAULT_MAILCHIMP_MAX_CONNECTIONS } from "../../config/defaults.ts";
import { MailchimpLimiters } from "../../http/concurrency_limiter.ts";
import { errorText, redact } from "../../log/error_text.ts";
import {
  MailchimpClient,
  type MailchimpWebhook,
  type SavedWebhook,
} from "../../mailchimp/client.ts";
import { WEBHOOK_PATH_PREFIX, webhookPath } from "../../webhooks/receiver.ts";
import { registerFailureAdvice } from "../register_failure_advice.ts";

/**
 * The events registered: every change to a member. `campaign` and the SMS events ([BETA])
 * say nothing about a member's email record, so they are asked not to be sent (the receiver
 * answers and counts them if an admin switches them on).
 */
export const WEBHOOK_EVENTS = {
  subscribe: true,
  unsubscribe: true,
  profile: true,
  cleaned: true,
  upemail: true,
  campaign: false,
  sms_subscribe: false,
  sms_unsubscribe: false,
  upsms: false,
  sms_campaign: false,
} as const;

/**
 * Changes by the member and by an admin in Mailchimp count; those made through the API do
 * not. This program writes to Mailchimp (an unsubscribe made in Ometria, with `optout_back`;
 * a permanent delete, with `erase --mailchimp`), and with `api` on each such write would come
 * back as an event (DOCS-SKILL): a loop. Polling still reads every change, whoever made it.
 */
export const WEBHOOK_SOURCES = { user: true, admin: true, api: false } as const;

/** What the command needs from the process. */
export interface WebhooksCommandDeps {
  clock: Clock;
  logger: Logger;
  fetch: typeof globalThis.fetch;
  write: (text: string) => void;
  signal?: AbortSignal;
}

/**
 * Runs `webhooks register` or `webhooks list` over the configured connections; returns 0
 * when every list answered, 1 when one failed (the others are still done).
 */
export async function runWebhooksCommand(
  config:
    & Pick<
      Config,
      "connections" | "webhooksAction" | "publicUrl" | "alertWebhookUrl" | "mailchimpTimeoutSeconds"
    >
    & Partial<Pick<Config, "force">>,
  deps: WebhooksCommandDeps,
): Promise<number> {
  const secrets = configSecrets(config);
  const limiters = new MailchimpLimiters();
  let failed = 0;
  for (const c of config.connections) {
    const client = new MailchimpClient({
      apiKey: c.mailchimp.apiKey,
      baseUrl: c.mailchimp.baseUrl,
      ...(c.mailchimp.keyName ? { keyName: c.mailchimp.keyName } : {}),
      fetch: deps.fetch,
      clock: deps.clock,
      logger: deps.logger,
      limiter: limiters.for(c.mailchimp.apiKey, DEFAULT_MAILCHIMP_MAX_CONNECTIONS),
      timeoutMs: config.mailchimpTimeoutSeconds * 1000,
    });
    const say = (text: string) => deps.write(`${c.id} (list ${c.listId}): ${text}\n`);
    try {
      const existing = await client.listWebhooks(c.listId, deps.signal);
      if (config.webhooksAction === "list") {
        if (existing.length === 0) say("no webhook registered");
        for (const w of existing) say(describeWebhook(w, secrets));
        continue;
      }
      await _register(c, client, existing, {
        publicUrl: config.publicUrl!,
        force: config.force ?? false,
        secrets,
        say,
        ...(deps.signal ? { signal: deps.signal } : {}),
      });
    } catch (error) {
      failed++;
      const why = errorText(error, secrets);
      say(
        `failed: ${registerFailureAdvice(why, { publicUrl: config.publicUrl, connection: c.id })}`,
      );
      deps.logger.error("webhooks {action} failed for {connection}: {error}", {
        action: config.webhooksAction ?? "",
        connection: c.id,
        error: why,
      });
    }
  }
  return failed > 0 ? 1 : 0;
}

interface _RegisterOptions {
  publicUrl: string;
  force: boolean;
  secrets: readonly string[];
  say: (text: string) => void;
  signal?: AbortSignal;
}

/** Creates, updates or (with `force`) re-creates connection `c`'s webhook, saying what it did. */
async function _register(
  c: ConnectionConfig,
  client: MailchimpClient,
  existing: readonly MailchimpWebhook[],
  o: _RegisterOptions,
): Promise<void> {
  const url = `${o.publicUrl}${webhookPath(c.id, c.webhookSecret!)}`;
  // Ours is the one at this base for this connection, whatever secret it had before:
  // registering again after the secret changed updates it instead of adding another.
  const prefix = `${o.publicUrl}${WEBHOOK_PATH_PREFIX}${encodeURIComponent(c.id)}/`;
  let ours = existing.find((w) => w.url.startsWith(prefix));
  const wanted = { url, events: { ...WEBHOOK_EVENTS }, sources: { ...WEBHOOK_SOURCES } };
  if (ours && o.force) {
    await client.deleteWebhook(c.listId, ours.id, o.signal);
    o.say(`webhook ${ours.id} deleted, to be created again with a new signing secret`);
    ours = undefined;
  }
  if (ours && ours.url === url && _same(ours, wanted)) {
    o.say(`already registered: ${maskWebhookUrl(url, o.secrets)}`);
    _sayAboutSigning(c, ours, o.say);
    return;
  }
  const saved = await client.saveWebhook(c.listId, wanted, ours?.id, o.signal);
  o.say(
    `webhook ${ours ? "updated" : "created"} (id ${saved.webhook.id}): ` +
      maskWebhookUrl(saved.webhook.url, o.secrets),
  );
  if (saved.signingSecret !== undefined) _saySigningSecret(c, saved, o.say);
  else _sayAboutSigning(c, saved.webhook, o.say);
}

/**
 * Prints the signing secret of a webhook just created, the one time it can be had, and where
 * it goes: the variable the connection names, or one to name in the connections file.
 */
function _saySigningSecret(c: ConnectionConfig, saved: SavedWebhook, say: (t: string) => void) {
  const name = c.webhookSigningSecretName ?? _suggestedName(c.id);
  const where = c.webhookSigningSecretName
    ? `set ${name} to it`
    : `set ${name} to it and add "webhook_signing_secret_env": "${name}" to this connection ` +
      `in the connections file`;
  say(
    `signing secret (shown once, Mailchimp cannot show it again): ${saved.signingSecret}\n` +
      `  ${where}, then restart the daemon: every delivery's signature is then checked.`,
  );
}

/** What a webhook's signing means for this connection, when there is something to do. */
function _sayAboutSigning(c: ConnectionConfig, w: MailchimpWebhook, say: (t: string) => void) {
  if (w.signing_enabled === false) {
    say(
      "its deliveries are not signed (a webhook from before Mailchimp signed them): the " +
        "secret in the URL is the only proof; register again with --force to re-create it signed",
    );
  } else if (w.signing_enabled === true && c.webhookSigningSecret === undefined) {
    const missing = c.webhookSigningSecretName
      ? `${c.webhookSigningSecretName} is not set`
      : `this connection names no variable for its signing secret ("webhook_signing_secret_env")`;
    say(
      `its deliveries are signed, but ${missing}, so signatures are not checked; the secret ` +
        "was shown when the webhook was created: if it is lost, register again with --force",
    );
  }
}

/** A variable name for a connection's signing secret: `MAILCHIMP_WEBHOOK_SIGNING_SECRET_<ID>`. */
function _suggestedName(id: string): string {
  return `MAILCHIMP_WEBHOOK_SIGNING_SECRET_${id.toUpperCase().replace(/[^A-Z0-9]+/g, "_")}`;
}

/**
 * A webhook URL with its secret masked: the segment after `/webhooks/mailchimp/<id>/`, and
 * any configured secret anywhere, become `****` (other receivers' URLs may carry tokens too,
 * so their path and query are masked as well).
 */
export function maskWebhookUrl(url: string, secrets: readonly string[]): string {
  const ours = /^(.*\/webhooks\/mailchimp\/[^/]+\/)[^/?#]+(.*)$/.exec(url);
  if (ours) return redact(`${ours[1]}****${ours[2]}`, secrets).replaceAll("[redacted]", "****");
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname.length > 1 || u.search ? "/****" : "/"}`;
  } catch {
    return "****";
  }
}

/**
 * One registered webhook for `webhooks list`: masked URL, events and sources switched on,
 * and whether its deliveries are signed.
 */
export function describeWebhook(w: MailchimpWebhook, secrets: readonly string[]): string {
  const on = (flags: Record<string, boolean>) =>
    Object.entries(flags).filter(([, v]) => v).map(([k]) => k).join(",") || "none";
  const signed = w.signing_enabled === undefined ? "" : w.signing_enabled ? " signed" : " unsigned";
  return `${maskWebhookUrl(w.url, secrets)} id ${w.id} events ${on(w.events)} sources ${
    on(w.sources)
  }${signed}`;
}

function _same(
  w: MailchimpWebhook,
  wanted: { events: Record<string, boolean>; sources: Record<string, boolean> },
): boolean {
  const same = (a: Record<string, boolean>, b: Record<string, boolean>) =>
    Object.entries(b).every(([k, v]) => (a[k] ?? false) === v);
  return same(w.events, wanted.events) && same(w.sources, wanted.sources);
}
