/**
 * Mailchimp's signed list-webhook deliveries (docs/API_NOTES.md, "Signed deliveries"): each
 * delivery carries `X-Mailchimp-Signature: t={unix seconds},v1={hex}`, where `v1` is the
 * lowercase hex HMAC-SHA256 of `"{t}.{raw body}"` keyed with the webhook's signing secret
 * (https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/, "Verifying
 * webhook signatures"). Verifying needs the body's exact bytes, so the receiver hands them
 * over before decoding anything.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHmac, timingSafeEqual } from "node:crypto";

/** The header Mailchimp signs deliveries in (lower case, as `Headers` returns names). */
export const SIGNATURE_HEADER = "x-mailchimp-signature";

/**
 * How far a delivery's `t` may be from our clock: Mailchimp says to reject "where the
 * timestamp is more than 5 minutes old".
 */
export const SIGNATURE_TOLERANCE_MS = 5 * 60_000;

/**
 * What checking one delivery found: `valid`; `stale`, signed with the secret but with a `t`
 * outside the tolerance (a replay, or a retry that kept its first signature: whether Mailchimp
 * signs retries again is not documented); `missing` (no header); `malformed` (a header
 * without `t` and a 64-hex `v1`); `mismatch` (signed with another secret, or the body changed).
 */
export type SignatureVerdict = "valid" | "stale" | "missing" | "malformed" | "mismatch";

/** Options of {@linkcode verifyWebhookSignature}. */
export interface VerifySignatureOptions {
  /** How far `t` may be from `nowMs`, either way. @default {SIGNATURE_TOLERANCE_MS} */
  toleranceMs?: number;
}

/**
 * Checks the `X-Mailchimp-Signature` header of a delivery whose raw body is `body` against the
 * webhook's signing secret, at `nowMs` on our clock. Every `v1` of the header is tried (a
 * header may carry more than one while a secret is rotated), each compared in constant time.
 * The signature is checked before the time, so `stale` is only said of an authentic delivery.
 */
export function verifyWebhookSignature(
  header: string | null,
  body: Uint8Array,
  secret: string,
  nowMs: number,
  options: VerifySignatureOptions = {},
): SignatureVerdict {
  if (header === null || header.trim() === "") return "missing";
  const parsed = _parse(header);
  if (parsed === undefined) return "malformed";
  const expected = Buffer.from(webhookSignatureHex(secret, parsed.t, body), "hex");
  const matches = parsed.v1.some((hex) => {
    const given = Buffer.from(hex, "hex");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!matches) return "mismatch";
  const tolerance = options.toleranceMs ?? SIGNATURE_TOLERANCE_MS;
  return Math.abs(nowMs - Number(parsed.t) * 1000) <= tolerance ? "valid" : "stale";
}

/**
 * The lowercase hex HMAC-SHA256 Mailchimp sends as `v1`: keyed with `secret`, over the text
 * `t`, a dot and the body's bytes.
 */
export function webhookSignatureHex(secret: string, t: string, body: Uint8Array): string {
  return createHmac("sha256", secret).update(`${t}.`).update(body).digest("hex");
}

/** `t=<digits>` and every `v1=<64 hex>` of a header, or undefined when either is missing. */
function _parse(header: string): { t: string; v1: string[] } | undefined {
  let t: string | undefined;
  const v1: string[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t" && /^\d{1,12}$/.test(value)) t = value;
    else if (key === "v1" && /^[0-9a-fA-F]{64}$/.test(value)) v1.push(value.toLowerCase());
  }
  return t === undefined || v1.length === 0 ? undefined : { t, v1 };
}
