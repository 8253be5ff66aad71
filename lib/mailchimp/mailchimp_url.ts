/**
 * Where a Mailchimp key's account lives.
 *
 * @module
 */

/** Mailchimp's maximum `count` per members page. */
export const MAILCHIMP_MAX_PAGE_SIZE = 1000;

/**
 * `https://{dc}.api.mailchimp.com/3.0`, with `dc` the key's suffix after its last `-`,
 * else `dataCenter`; undefined when neither tells.
 */
export function mailchimpBaseUrlFor(apiKey: string, dataCenter?: string): string | undefined {
  const dash = apiKey.lastIndexOf("-");
  const suffix = dash >= 0 ? apiKey.slice(dash + 1) : "";
  const dc = /^[a-z]{2,4}\d{1,3}$/i.test(suffix) ? suffix : dataCenter?.trim();
  if (!dc || !/^[a-z0-9]+$/i.test(dc)) return undefined;
  return `https://${dc.toLowerCase()}.api.mailchimp.com/3.0`;
}
