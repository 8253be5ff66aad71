/**
 * `webhooks register <ids…> --url <public base>` and `webhooks list [ids…]`: each list's
 * Mailchimp webhook, created or updated through the Marketing API. Neither touches the state
 * or takes its lock, so both work while the daemon runs — which registering needs, since
 * Mailchimp checks the URL with a GET before it accepts it.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../../clock/clock.ts";
import { type Config, configSecrets } from "../../config/config.ts";
import { DEFAULT_MAILCHIMP_MAX_CONNECTIONS } from "../../config/defaults.ts";
import { MailchimpLimiters } from "../../http/concurrency_limiter.ts";
import { errorText, redact } from "../../log/error_text.ts";
import { MailchimpClient, type MailchimpWebhook } from "../../mailchimp/client.ts";
import { WEBHOOK_PATH_PREFIX, webhookPath } from "../../webhooks/receiver.ts";
import { registerFailureAdvice } from "../register_failure_advice.ts";

/** The events registered: every change to a member; `campaign` says nothing about one. */
export const WEBHOOK_EVENTS = {
  subscribe: true,
  unsubscribe: true,
  profile: true,
  cleaned: true,
  upemail: true,
  campaign: false,
} as const;

/** Changes by the member, by an admin in Mailchimp, and through the API all count. */
export const WEBHOOK_SOURCES = { user: true, admin: true, api: true } as const;

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
  config: Pick<
    Config,
    "connections" | "webhooksAction" | "publicUrl" | "alertWebhookUrl" | "mailchimpTimeoutSeconds"
  >,
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
    try {
      const existing = await client.listWebhooks(c.listId, deps.signal);
      if (config.webhooksAction === "list") {
        deps.write(
          existing.length === 0
            ? `${c.id} (list ${c.listId}): no webhook registered\n`
            : existing.map((w) => `${c.id} (list ${c.listId}): ${describeWebhook(w, secrets)}\n`)
              .join(""),
        );
        continue;
      }
      const url = `${config.publicUrl}${webhookPath(c.id, c.webhookSecret!)}`;
      // Ours is the one at this base for this connection, whatever secret it had before:
      // registering again after the secret changed updates it instead of adding another.
      const prefix = `${config.publicUrl}${WEBHOOK_PATH_PREFIX}${encodeURIComponent(c.id)}/`;
      const ours = existing.find((w) => w.url.startsWith(prefix));
      const wanted = { url, events: { ...WEBHOOK_EVENTS }, sources: { ...WEBHOOK_SOURCES } };
      if (ours && ours.url === url && _same(ours, wanted)) {
        deps.write(
          `${c.id} (list ${c.listId}): already registered: ${maskWebhookUrl(url, secrets)}\n`,
        );
        continue;
      }
      const saved = await client.saveWebhook(c.listId, wanted, ours?.id, deps.signal);
      deps.write(
        `${c.id} (list ${c.listId}): webhook ${ours ? "updated" : "created"} (id ${saved.id}): ` +
          `${maskWebhookUrl(saved.url, secrets)}\n`,
      );
    } catch (error) {
      failed++;
      const why = errorText(error, secrets);
      deps.write(
        `${c.id} (list ${c.listId}): failed: ${
          registerFailureAdvice(why, { publicUrl: config.publicUrl, connection: c.id })
        }\n`,
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

/** One registered webhook for `webhooks list`: masked URL, events and sources switched on. */
export function describeWebhook(w: MailchimpWebhook, secrets: readonly string[]): string {
  const on = (flags: Record<string, boolean>) =>
    Object.entries(flags).filter(([, v]) => v).map(([k]) => k).join(",") || "none";
  return `${maskWebhookUrl(w.url, secrets)} id ${w.id} events ${on(w.events)} sources ${
    on(w.sources)
  }`;
}

function _same(
  w: MailchimpWebhook,
  wanted: { events: Record<string, boolean>; sources: Record<string, boolean> },
): boolean {
  const same = (a: Record<string, boolean>, b: Record<string, boolean>) =>
    Object.entries(b).every(([k, v]) => (a[k] ?? false) === v);
  return same(w.events, wanted.events) && same(w.sources, wanted.sources);
}
