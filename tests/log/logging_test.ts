import assert from "node:assert/strict";
import {
  LogFileError,
  logFileFailure,
  setupLogging,
  shutdownLogging,
} from "../../lib/log/logging.ts";
import { fullDiskUnavailable, withFullDisk } from "../_helpers/tiny_fs.ts";

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

Deno.test("setupLogging() throws LogFileError, naming the file, when it cannot open it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "logging_test_" });
  try {
    for (const path of [`${dir}/missing/log_file.log`, dir]) {
      const error = await setupLogging({ file: path, console: capturingConsole([]) }).then(
        () => assert.fail(`${path} was opened`),
        (e: unknown) => e,
      );
      assert.ok(error instanceof LogFileError, String(error));
      assert.equal(error.path, path);
      assert.match(error.message, new RegExp(`^Cannot write LOG_FILE=${path}: .*Set LOG_FILE to`));
    }
  } finally {
    await shutdownLogging();
    await Deno.remove(dir, { recursive: true });
  }
});

const noTmpfs = await fullDiskUnavailable();

Deno.test({
  name: `setupLogging() says once that the log file cannot be written, then uses the console only${
    noTmpfs === undefined ? "" : ` (skipped: cannot mount a tmpfs here: ${noTmpfs})`
  }`,
  ignore: noTmpfs !== undefined,
  async fn() {
    await withFullDisk(async (dir) => {
      // Opened on a full disk: the file is created, its first line has nowhere to go.
      const lines: string[] = [];
      const path = `${dir}/log_file.log`;
      const logger = await setupLogging({ file: path, console: capturingConsole(lines) });
      try {
        assert.equal(logFileFailure(), undefined);
        for (let i = 0; i < 50; i++) logger.info("line {i}", { i });
      } finally {
        await shutdownLogging();
      }
      const reports = lines.filter((l) => l.includes("Cannot write the log file"));
      assert.equal(reports.length, 1, lines.join("\n"));
      assert.match(reports[0]!, new RegExp(`^Cannot write the log file ${path}: No space left`));
      assert.match(logFileFailure() ?? "", /console only from now on/);
      assert.equal(lines.filter((l) => /^\s+at /m.test(l)).length, 0, "no stack trace");
      assert.equal(lines.filter((l) => / line \d+$/.test(l)).length, 50, "every line shown");
    });
  },
});
