/**
 * An address sealed for the webhook inbox. A connection with `erase_on_permanent_delete`
 * files Ometria's deletion request when Mailchimp reports a permanent delete — and only the
 * webhook names the address then (Mailchimp answers 404 and keeps nothing). The inbox lives in
 * the state store, where no address may appear in clear, so the receiver seals it with
 * AES-GCM under a key derived (HKDF-SHA-256) from a secret the connection's writer holds in
 * memory anyway, its Ometria API key: whoever reads the state without the environment reads
 * nothing, and the sealed value is gone once the entry is acted on. A key rotated in between
 * leaves an entry that cannot be opened: the delete is still opted out, and the erasure is
 * logged as needing `erase` (without the address).
 *
 * @module
 */

const _INFO = new TextEncoder().encode("mailchimp-ometria-sync inbox address v1");
const _SALT = new TextEncoder().encode("mailchimp-ometria-sync");

async function _key(secret: string): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    "HKDF",
    false,
    ["deriveKey"],
  );
  return await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: _SALT, info: _INFO },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

/** `email` sealed under `secret`: base64 of a 12-byte nonce and the AES-GCM ciphertext. */
export async function sealEmail(secret: string, email: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv },
    await _key(secret),
    new TextEncoder().encode(email),
  );
  const bytes = new Uint8Array(12 + sealed.byteLength);
  bytes.set(iv);
  bytes.set(new Uint8Array(sealed), 12);
  return btoa(String.fromCharCode(...bytes));
}

/** The address {@linkcode sealEmail} sealed under `secret`, or undefined when it cannot be opened. */
export async function openSealedEmail(secret: string, sealed: string): Promise<string | undefined> {
  try {
    const bytes = Uint8Array.from(atob(sealed), (c) => c.charCodeAt(0));
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: bytes.subarray(0, 12) },
      await _key(secret),
      bytes.subarray(12),
    );
    return new TextDecoder().decode(plain);
  } catch {
    return undefined;
  }
}
