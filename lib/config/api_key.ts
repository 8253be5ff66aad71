/**
 * Checks on an API key's text, and on ids that are keys. A key holding a line break, a
 * space or a character past ASCII is certainly pasted wrong, and worse: Deno refuses it as a
 * header value, with an error that may quote it (copying the key into logs, the state and
 * alerts) and that every retry repeats. Such keys are refused at start-up, naming where the
 * key came from and never the key; so is a key given where a list or connection id belongs.
 *
 * @module
 */

/**
 * What is wrong with the key in `name` (an environment variable), or undefined when it may
 * be sent as a header. `value` is the key with surrounding whitespace already trimmed.
 */
export function apiKeyProblem(name: string, value: string): string | undefined {
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    return `${name} contains a line break or another control character (the key is not shown). Set it again to the key alone, e.g. without the newline a file or a copy added.`;
  }
  if (/\s/.test(value)) {
    return `${name} contains a space inside it (the key is not shown). Set it to the key alone: API keys never contain spaces.`;
  }
  // A header value is bytes: fetch refuses anything past Latin-1 (and every retry of the
  // request fails the same way), and keys are plain ASCII anyway.
  if (/[^\x21-\x7e]/.test(value)) {
    return `${name} contains a character that is not plain ASCII, such as an accented letter or a typographic quote (the key is not shown). Set it again to the key alone, copied from the API keys page rather than from a document.`;
  }
  return undefined;
}

/** A Mailchimp API key: 32 hex digits, `-`, the data center (`us9`). */
const _MAILCHIMP_KEY = /^[0-9a-f]{32}-[a-z]{2,}[0-9]+$/i;

/**
 * What secret `value` is, when it is one given in place of an id: `"a Mailchimp API key"`
 * by its shape, or `"the value of NAME"` when it equals a secret the environment holds
 * (`known`: variable name → value). Undefined for an ordinary id. An id is logged, stored in
 * the state, shown by `status` and sent in alerts, so a key pasted where an id belongs must
 * be refused before any of that happens.
 */
export function secretInPlaceOfId(
  value: string,
  known: Readonly<Record<string, string | undefined>>,
): string | undefined {
  const text = value.trim();
  for (const [name, secret] of Object.entries(known)) {
    if (secret !== undefined && secret.trim() !== "" && secret.trim() === text) {
      return `the value of ${name}`;
    }
  }
  return _MAILCHIMP_KEY.test(text) ? "a Mailchimp API key" : undefined;
}
