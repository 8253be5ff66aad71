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
  getJsonLinesFormatter,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogLevel,
  type Sink,
} from "@logtape/logtape";
import { getFileSink } from "@logtape/file";

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
}

/** The root category of every logger of this program. */
export const ROOT_CATEGORY = "sync";

/**
 * Configures LogTape for the whole process and returns the root logger. Call `dispose`
 * from {@linkcode shutdownLogging} before exiting so the file sink is flushed.
 */
export async function setupLogging(options: LoggingOptions = {}): Promise<Logger> {
  const formatter = options.format === "json"
    ? getJsonLinesFormatter({ properties: "flatten" })
    : getTextFormatter({ timestamp: "date-time-tz", level: "ABBR", value: "bare" });
  const sinks: Record<string, Sink> = {
    console: getConsoleSink({
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
    }),
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
