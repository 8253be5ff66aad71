/**
 * Checks on an API key's text. A key holding a line break or a space is certainly pasted
 * wrong, and worse: Deno refuses it as a header value with an error that quotes it, which
 * would copy the key into logs, the state and alerts. Such keys are refused at start-up,
 * naming where the key came from and never the key.
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
  return undefined;
}
