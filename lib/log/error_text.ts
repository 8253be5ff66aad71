/**
 * The one way this program turns a thrown value into text for a person: the message of an
 * `Error` (or the value itself), with every configured secret taken out. Deno copies an
 * invalid header value, such as a key holding a line break, verbatim into its error
 * ("Invalid header value: <key>"), so any error text may carry a key; everything that logs,
 * prints, stores or sends an error text passes it through here first.
 *
 * @module
 */
import { z } from "zod";

/** What replaces a secret in a redacted text. */
export const REDACTED = "[redacted]";

/** Secrets shorter than this are not searched for: they would blank out ordinary words. */
const _MIN_SECRET_LENGTH = 4;

/**
 * Replaces every occurrence of each secret in `text` with {@linkcode REDACTED}: the secret
 * as it is, and as it appears inside a JSON string (a key with a control character is
 * escaped there). Longer secrets go first, so a key that contains another is not left half
 * shown. Empty and very short values are ignored.
 */
export function redact(text: string, secrets: Iterable<string>): string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (secret.length < _MIN_SECRET_LENGTH) continue;
    forms.add(secret);
    forms.add(JSON.stringify(secret).slice(1, -1));
    const trimmed = secret.trim();
    if (trimmed.length >= _MIN_SECRET_LENGTH) forms.add(trimmed);
  }
  let out = text;
  for (const form of [...forms].sort((a, b) => b.length - a.length)) {
    out = out.replaceAll(form, REDACTED);
  }
  return out;
}

/**
 * The text of a thrown value for a message: `error.message` for an `Error`, `String(value)`
 * otherwise, with every secret in `secrets` redacted (see {@linkcode redact}).
 */
export function errorText(error: unknown, secrets: Iterable<string> = []): string {
  const text = error instanceof Error ? error.message : String(error);
  return redact(text, secrets);
}

/**
 * The problems of a failed zod validation on one line, `path: message; …`, at most `max` of
 * them: `z.prettifyError`'s words, folded so they fit in a log line or an error message.
 * The one formatter of validation errors (state documents, API answers).
 */
export function zodProblems(error: z.ZodError, max = 10): string {
  const shown = error.issues.slice(0, max);
  const lines = z.prettifyError(new z.ZodError(shown)).split("\n");
  const parts: string[] = [];
  for (const line of lines) {
    if (line.startsWith("✖ ")) parts.push(line.slice(2));
    else if (line.trimStart().startsWith("→ at ") && parts.length > 0) {
      parts[parts.length - 1] = `${line.trimStart().slice(5)}: ${parts[parts.length - 1]}`;
    }
  }
  const more = error.issues.length - shown.length;
  return parts.join("; ") + (more > 0 ? `; …and ${more} more` : "");
}
