import assert from "node:assert/strict";
import { setupLogging, shutdownLogging } from "../../lib/log/logging.ts";

function capturingConsole(lines: string[]): Console {
  const write = (...parts: unknown[]) => lines.push(parts.map(String).join(" "));
  return { ...console, error: write, log: write, info: write, warn: write, debug: write };
}

Deno.test("setupLogging() writes JSON lines whose message is plain text", async () => {
  const lines: string[] = [];
  const logger = await setupLogging({ format: "json", console: capturingConsole(lines) });
  try {
    logger.info("{api} {request} failed after {attempts} attempts", {
      api: "Mailchimp",
      request: "GET /lists/l1/members",
      attempts: 3,
    });
  } finally {
    await shutdownLogging();
  }
  const record = JSON.parse(lines.join("").trim());
  assert.equal(record.message, "Mailchimp GET /lists/l1/members failed after 3 attempts");
  assert.equal(record.api, "Mailchimp");
  assert.equal(record.level, "INFO");
});

Deno.test("setupLogging() redacts secrets from every line, text and JSON", async (t) => {
  const key = "abc123\nSECRET-us9";
  for (const format of ["text", "json"] as const) {
    await t.step(format, async () => {
      const lines: string[] = [];
      const logger = await setupLogging({
        format,
        console: capturingConsole(lines),
        secrets: [key],
      });
      try {
        logger.error("Run failed: {error}", { error: `Invalid header value: ${key}` });
      } finally {
        await shutdownLogging();
      }
      const out = lines.join("\n");
      assert.match(out, /Invalid header value: \[redacted\]/);
      assert.doesNotMatch(out, /SECRET-us9/);
    });
  }
});
