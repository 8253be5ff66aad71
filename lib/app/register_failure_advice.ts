/**
 * What `webhooks register` adds when Mailchimp refuses a webhook's URL. Mailchimp checks the
 * URL with a GET (User-Agent "MailChimp.com WebHook Validator", captured in
 * gist.github.com/strangeways/96b26ee7e61b9800e264b16688cce038) before it accepts the
 * webhook, and refuses one that does not answer with the words of its generic 400, "The
 * resource submitted could not be validated" (the simulator answers so too). That reads like
 * a fault in the request, not in the order of the steps: the receiver must be listening, and
 * reachable from the internet at that URL, before the webhook is registered.
 *
 * @module
 */

/** Options of {@linkcode registerFailureAdvice}. */
export interface RegisterFailureOptions {
  /** `--url`: the public base URL the webhook was registered under. */
  publicUrl: string | undefined;
  /** The connection whose webhook failed (its id is in the webhook's path). */
  connection: string;
}

/**
 * `why` (the failure's text, keys redacted), followed, when Mailchimp could not validate
 * the URL, by what to do: start the receiver, check it from outside, register again.
 */
export function registerFailureAdvice(why: string, options: RegisterFailureOptions): string {
  if (options.publicUrl === undefined || !/could not be validated/i.test(why)) return why;
  const url = `${options.publicUrl}/webhooks/mailchimp/${encodeURIComponent(options.connection)}`;
  return `${why.replace(/\.$/, "")}. Mailchimp checks the URL with a GET before it accepts a ` +
    `webhook, so the receiver must already answer at ${url}/…: start the daemon with ` +
    `WEBHOOK_PORT (and the TLS proxy in front of it) first, check from outside that ` +
    `\`curl -i ${url}/<secret>\` answers 200, then register again.`;
}
