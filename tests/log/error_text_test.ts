import assert from "node:assert/strict";
import { errorText, redact, REDACTED } from "../../lib/log/error_text.ts";

Deno.test("errorText() gives an Error's message or the value as text", () => {
  assert.equal(errorText(new TypeError("bad")), "bad");
  assert.equal(errorText("plain"), "plain");
  assert.equal(errorText(42), "42");
});

Deno.test("redact() removes every secret, raw and JSON-escaped, longest first", () => {
  const key = "abc123\r\nsecret-us9";
  const text = `Invalid header value: ${key}; logged as ${JSON.stringify(key)}`;
  const out = redact(text, [key, "abc123"]);
  assert.ok(!out.includes("secret-us9"), out);
  assert.ok(!out.includes("abc123"), out);
  assert.equal(out, `Invalid header value: ${REDACTED}; logged as "${REDACTED}"`);
});

Deno.test("redact() ignores empty and very short secrets", () => {
  assert.equal(redact("an ordinary sentence", ["", "a", "an"]), "an ordinary sentence");
});

Deno.test("errorText() redacts the secrets it is given", () => {
  const error = new TypeError("Invalid header value: key-with\nnewline");
  assert.equal(errorText(error, ["key-with\nnewline"]), `Invalid header value: ${REDACTED}`);
});
