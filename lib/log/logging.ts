/**
 * Logging with LogTape, set up once by `main.ts`: the level from `LOGGING_LEVEL`, the
 * console (stderr, so `status --json` keeps stdout clean) plus `LOG_FILE` like the original
 * tool, as readable text or as JSON lines for machines. Modules receive a `Logger`.
 *
 * @module
 */
import {
  configure,
  dispose,
  getConsoleSink,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogLevel,
  type LogRecord,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";
import { getFileSink } from "@logtape/file";
import { redact } from "./error_text.ts";

/** Options of {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** Lowest level written. @default {"info"} */
  level?: LogLevel;
  /** Also append to this file (the original tool's LOG_FILE); none when undefined. */
  file?: string | undefined;
  /** `text` for people, `json` for machines (one JSON object per line). @default {"text"} */
  format?: "text" | "json";
  /** Where console lines go. @default {console} */
  console?: Console;
  /** Secrets (API keys) taken out of every line before it is written. @default {[]} */
  secrets?: readonly string[];
  /**
   * Wraps every console write, e.g. to move a live terminal line out of its way
   * (`TerminalLine.interject`). @default {write()}
   */
  aroundConsole?: ((write: () => void) => void) | undefined;
}

/** The root category of every logger of this program. */
const ROOT_CATEGORY = "sync";

/**
 * Configures LogTape for the whole process and returns the root logger. Call `dispose`
 * from {@linkcode shutdownLogging} before exiting so the file sink is flushed.
 */
export async function setupLogging(options: LoggingOptions = {}): Promise<Logger> {
  const plain = options.format === "json"
    ? jsonLinesFormatter
    : getTextFormatter({ timestamp: "date-time-tz", level: "ABBR", value: "bare" });
  // The last line of defence: whatever a message or property holds, no key is written.
  const secrets = options.secrets ?? [];
  const formatter: TextFormatter = secrets.length === 0
    ? plain
    : (record) => redact(plain(record), secrets);
  const consoleSink = getConsoleSink({
    formatter,
    ...(options.console ? { console: options.console as never } : {}),
    levelMap: {
      trace: "error",
      debug: "error",
      info: "error",
      warning: "error",
      error: "error",
      fatal: "error",
    },
  });
  const around = options.aroundConsole;
  const sinks: Record<string, Sink> = {
    console: around ? (record) => around(() => consoleSink(record)) : consoleSink,
  };
  if (options.file) {
    sinks.file = getFileSink(options.file, {
      formatter,
      lazy: true,
      flushInterval: 1000,
    }) as unknown as Sink;
  }
  await configure({
    reset: true,
    sinks,
    loggers: [
      {
        category: [ROOT_CATEGORY],
        lowestLevel: options.level ?? "info",
        sinks: Object.keys(sinks),
      },
      // The demo draws its own progress and summary; its runs only log problems.
      { category: [ROOT_CATEGORY, "demo"], lowestLevel: "warning" },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
    ],
  });
  return getLogger([ROOT_CATEGORY]);
}

/**
 * One JSON object per line: `@timestamp`, `level`, `message` as plain text (values
 * interpolated as they are, strings without quotes), `logger`, then the properties.
 * LogTape's own JSON formatter renders values with `inspect`, which quotes strings inside
 * the message (`"\"Mailchimp\" …"`).
 */
function jsonLinesFormatter(record: LogRecord): string {
  let message = "";
  for (const [i, part] of record.message.entries()) {
    message += i % 2 === 0 ? String(part) : _plain(part);
  }
  const properties: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record.properties)) {
    properties[key] = value instanceof Error ? value.message : value;
  }
  return JSON.stringify(
    {
      "@timestamp": new Date(record.timestamp).toISOString(),
      level: record.level.toUpperCase(),
      message,
      logger: record.category.join("."),
      ...properties,
    },
    (_key, value) => typeof value === "bigint" ? value.toString() : value,
  ) + "\n";
}

function _plain(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  if (value === null || typeof value !== "object") return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** Flushes and closes every sink (the log file) before the process exits. */
export async function shutdownLogging(): Promise<void> {
  await dispose();
}

/**
 * A logger for code running without `setupLogging` (tests, library use): LogTape drops
 * records of unconfigured categories, so this is silent unless the caller configured it.
 */
export function quietLogger(): Logger {
  return getLogger([ROOT_CATEGORY, "quiet"]);
}
