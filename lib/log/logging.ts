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
import { errorText, redact } from "./error_text.ts";

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
 * Thrown by {@linkcode setupLogging} when the log file cannot be opened for appending (a
 * read-only folder, a missing one, a folder in its place): `main.ts` says so in one line and
 * exits 2, rather than have every later line fail with a stack trace.
 */
export class LogFileError extends Error {
  /** The log file that could not be opened. */
  readonly path: string;

  constructor(path: string, cause: unknown) {
    super(
      `Cannot write LOG_FILE=${path}: ${
        errorText(cause).replace(/\.$/, "")
      }. Set LOG_FILE to a file this user may write, or to an empty value to log to the ` +
        "console only.",
      { cause },
    );
    this.name = "LogFileError";
    this.path = path;
  }
}

/** Why the log file stopped being written since the last `setupLogging`, if it did. */
let _fileFailure: string | undefined;

/**
 * Why the log file could not be written during this run (the disk filled up, say), in one
 * line; undefined while it is written fine. Lines go to the console only from that failure
 * on, so `main.ts` ends with exit 2 as for a state that cannot be saved.
 */
export function logFileFailure(): string | undefined {
  return _fileFailure;
}

/**
 * Configures LogTape for the whole process and returns the root logger. Call `dispose`
 * from {@linkcode shutdownLogging} before exiting so the file sink is flushed. The log file
 * is opened here, so one that cannot be written throws {@linkcode LogFileError} before
 * anything runs; one that fails later (a full disk) is reported once on the console, and
 * from then on the console alone is written (see {@linkcode logFileFailure}).
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
  _fileFailure = undefined;
  if (options.file) {
    const report = (line: string) => {
      const write = () => (options.console ?? console).error(redact(line, secrets));
      if (around) around(write);
      else write();
    };
    sinks.file = _guardedFileSink(options.file, formatter, report);
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
 * The file sink, opened now (a `LogFileError` when it cannot be), whose write failures are
 * reported once through `report` and then stop it: LogTape would otherwise log each failure
 * with its stack trace, for every line, to a console that can say nothing new.
 */
function _guardedFileSink(
  path: string,
  formatter: TextFormatter,
  report: (line: string) => void,
): Sink {
  let file: Sink & Partial<Disposable>;
  try {
    file = getFileSink(path, { formatter, lazy: false, flushInterval: 1000 }) as unknown as
      & Sink
      & Partial<Disposable>;
  } catch (error) {
    throw new LogFileError(path, error);
  }
  const fail = (error: unknown) => {
    if (_fileFailure !== undefined) return;
    _fileFailure = `Cannot write the log file ${path}: ${
      errorText(error).replace(/\.$/, "")
    }. Logging goes to the console only from now on; free space or fix LOG_FILE.`;
    report(_fileFailure);
  };
  const sink: Sink & Disposable = Object.assign((record: LogRecord) => {
    if (_fileFailure !== undefined) return;
    try {
      file(record);
    } catch (error) {
      fail(error);
    }
  }, {
    [Symbol.dispose]: () => {
      try {
        file[Symbol.dispose]?.();
      } catch (error) {
        // The last lines were buffered: flushing them at the end can fail the same way.
        fail(error);
      }
    },
  });
  return sink;
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
