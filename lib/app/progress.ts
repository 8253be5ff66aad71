/**
 * Progress of running syncs: members read and pushed per connection, the rate and the time
 * left, either as a log line every few seconds ({@linkcode ProgressLog}, daemon and `--once`
 * into a log) or as one live line redrawn on a terminal ({@linkcode ProgressLine}, `--once`
 * on a terminal). Both are driven by the engine's acknowledgements and the clock handed in:
 * no timers, so nothing keeps the process alive and tests need no real time.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { DEFAULT_PROGRESS_EVERY_SECONDS } from "../config/defaults.ts";

/**
 * How far one run has got: members read, pushed and found unchanged (not sent: Ometria had
 * acknowledged that very record, see the content ledger), and `total`, Mailchimp's count of
 * the window's members when known (a hint for the time left, never a proof of anything).
 */
export interface ProgressUpdate {
  read: number;
  pushed: number;
  /** @default {0} */
  unchanged?: number;
  total?: number;
}

/** One connection's progress with what follows from it. */
export interface ProgressFigures extends ProgressUpdate {
  connection: string;
  /** Members done (pushed or found unchanged) per second since the run started. */
  rate: number;
  /** Seconds left at that rate, when `total` is known and the rate is not zero. */
  secondsLeft: number | undefined;
}

interface _Run {
  startedMs: number;
  lastShownMs: number;
  last: ProgressUpdate;
}

function _figures(id: string, run: _Run, nowMs: number): ProgressFigures {
  const { read, pushed, total } = run.last;
  const unchanged = run.last.unchanged ?? 0;
  const done = pushed + unchanged;
  const seconds = (nowMs - run.startedMs) / 1000;
  // No rate before any time has passed (not members per millisecond of nothing).
  const rate = seconds > 0 ? done / seconds : 0;
  const left = total === undefined ? undefined : Math.max(0, total - done);
  const figures: ProgressFigures = {
    connection: id,
    read,
    pushed,
    unchanged,
    rate,
    secondsLeft: left === undefined || rate <= 0 ? undefined : left / rate,
  };
  if (total !== undefined) figures.total = total;
  return figures;
}

/** Records `progress` of a connection's run, starting the run's clock at its first update. */
function _track(
  runs: Map<string, _Run>,
  connection: string,
  progress: ProgressUpdate,
  now: number,
): _Run {
  const run = runs.get(connection);
  if (run !== undefined) {
    run.last = progress;
    return run;
  }
  const started = { startedMs: now, lastShownMs: now, last: progress };
  runs.set(connection, started);
  return started;
}

/**
 * A progress line in words: `list_1: read 12,000, pushed 11,900 (of ~50,000), 2,380/s, ~16 s
 * left`, with `, unchanged 9,000` after the pushed count once some were.
 */
export function formatProgress(f: ProgressFigures): string {
  const n = (v: number) => Math.round(v).toLocaleString("en-US");
  const of = f.total === undefined ? "" : ` (of ~${n(f.total)})`;
  const left = f.secondsLeft === undefined ? "" : `, ~${_duration(f.secondsLeft)} left`;
  const same = (f.unchanged ?? 0) > 0 ? `, unchanged ${n(f.unchanged!)}` : "";
  return `${f.connection}: read ${n(f.read)}, pushed ${n(f.pushed)}${same}${of}, ${
    n(f.rate)
  }/s${left}`;
}

function _duration(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** Options of {@linkcode ProgressLog}. */
export interface ProgressLogOptions {
  logger: Logger;
  clock: Clock;
  /** Least time between two lines of one connection, in milliseconds. @default {5000} */
  intervalMs?: number;
}

/**
 * Logs a connection's progress at INFO at most every `intervalMs` while it runs, so a long
 * run is visibly alive without a line per batch.
 */
export class ProgressLog {
  readonly #o: ProgressLogOptions;
  readonly #runs = new Map<string, _Run>();

  constructor(options: ProgressLogOptions) {
    this.#o = options;
  }

  /** Records a run's progress; logs it when the last line is old enough. */
  update(connection: string, progress: ProgressUpdate): void {
    const now = this.#o.clock.now();
    const run = _track(this.#runs, connection, progress, now);
    // A run's first update only starts its clock.
    const everyMs = this.#o.intervalMs ?? DEFAULT_PROGRESS_EVERY_SECONDS * 1000;
    if (run.startedMs === now || now - run.lastShownMs < everyMs) return;
    run.lastShownMs = now;
    const f = _figures(connection, run, now);
    this.#o.logger.info(`Progress of {connection}: ${formatProgress(f).split(": ")[1]}`, {
      connection,
      read: f.read,
      pushed: f.pushed,
      unchanged: f.unchanged ?? 0,
      total: f.total ?? null,
      rate: Math.round(f.rate),
      seconds_left: f.secondsLeft === undefined ? null : Math.round(f.secondsLeft),
    });
  }

  /** Forgets a finished run (its summary line is logged elsewhere). */
  finish(connection: string): void {
    this.#runs.delete(connection);
  }
}

/**
 * The one live line at the bottom of a terminal. Whatever else is written to the same
 * terminal (log lines on stderr) goes through {@linkcode TerminalLine.interject}, which
 * erases the line, lets the other text through and draws the line again below it, so log
 * lines and the live line never run into each other. The line never reaches the terminal's
 * last column: a line that wraps is only partly erased by the next redraw, and each redraw
 * then leaves a row behind.
 */
export class TerminalLine {
  readonly #write: (text: string) => void;
  readonly #columns: (() => number) | undefined;
  #text: string | undefined;

  /**
   * `write` writes text to the terminal as is (no newline added); `columns` reads the
   * terminal's width now (`main.ts` hands in `Deno.consoleSize`), asked at every redraw so a
   * resized window is followed. Without it the line is never cut.
   */
  constructor(write: (text: string) => void, columns?: () => number) {
    this.#write = write;
    this.#columns = columns;
  }

  /** The width a line may take now: one less than the terminal's columns (at least 1). */
  get width(): number {
    if (this.#columns === undefined) return Number.POSITIVE_INFINITY;
    const columns = this.#columns();
    return Number.isFinite(columns) && columns > 1 ? Math.floor(columns) - 1 : 1;
  }

  /** Draws `text` in place of the line, cut to the terminal's width. */
  show(text: string): void {
    this.#text = _cut(text, this.width);
    this.#write(`\r\x1b[2K${this.#text}`);
  }

  /** Runs `write` (which writes whole lines) with the live line out of its way. */
  interject(write: () => void): void {
    const text = this.#text;
    if (text === undefined) return write();
    this.#write("\r\x1b[2K");
    try {
      write();
    } finally {
      this.#write(text);
    }
  }

  /** Ends the live line, so what is written next starts on a line of its own. */
  end(): void {
    if (this.#text !== undefined) this.#write("\n");
    this.#text = undefined;
  }

  /** Erases the live line: what is written next takes its place. */
  clear(): void {
    if (this.#text !== undefined) this.#write("\r\x1b[2K");
    this.#text = undefined;
  }
}

/**
 * The progress of `runs` in at most `width` characters, as much of it as fits: every run in
 * full (`formatProgress`), else every run as `id pushed/total` after the overall rate, else
 * only the totals, cut with "…" as a last resort. A terminal of 80 columns with ten lists
 * running still shows one line that says something.
 */
export function fitProgress(runs: readonly ProgressFigures[], width: number): string {
  const full = runs.map(formatProgress).join(" | ");
  if (_length(full) <= width) return full;
  const k = (v: number) => _short(v);
  // Compact, a run's count is what it has done (pushed or unchanged) against its total.
  const done = (f: ProgressFigures) => f.pushed + (f.unchanged ?? 0);
  const pushed = runs.reduce((sum, f) => sum + f.pushed, 0);
  const rate = runs.reduce((sum, f) => sum + f.rate, 0);
  const totals = `${runs.length} running, pushed ${k(pushed)}, ${k(rate)}/s`;
  const each = runs.map((f) =>
    `${f.connection} ${k(done(f))}${f.total === undefined ? "" : `/${k(f.total)}`}`
  ).join(" · ");
  const compact = runs.length === 1 ? each : `${totals}: ${each}`;
  if (_length(compact) <= width) return compact;
  return _cut(runs.length === 1 ? compact : totals, width);
}

/** A count in at most 4 characters and a unit: `950`, `12.3k`, `1.2M`. */
function _short(n: number): string {
  const v = Math.round(n);
  if (v < 1000) return String(v);
  if (v < 1_000_000) return `${(v / 1000).toFixed(v < 10_000 ? 1 : 0)}k`;
  return `${(v / 1_000_000).toFixed(v < 10_000_000 ? 1 : 0)}M`;
}

/** Characters (code points) of `text`, as a terminal counts columns for ids and digits. */
function _length(text: string): number {
  return [...text].length;
}

/** `text` cut to `width` code points, ending in "…" when cut. */
function _cut(text: string, width: number): string {
  const points = [...text];
  if (points.length <= width) return text;
  return width <= 1 ? "…".slice(0, width) : points.slice(0, width - 1).join("") + "…";
}

/** Options of {@linkcode ProgressLine}. */
export interface ProgressLineOptions {
  /** The terminal's live line. */
  line: TerminalLine;
  clock: Clock;
  /** Least time between two redraws, in milliseconds. @default {200} */
  intervalMs?: number;
}

/**
 * The progress of every running connection on the terminal's live line, redrawn at most
 * every `intervalMs`. Used only on a terminal; elsewhere the log lines of
 * {@linkcode ProgressLog} say the same.
 */
export class ProgressLine {
  readonly #o: ProgressLineOptions;
  readonly #runs = new Map<string, _Run>();
  #lastDrawnMs = -Infinity;

  constructor(options: ProgressLineOptions) {
    this.#o = options;
  }

  /** Records a run's progress and redraws the line when the last redraw is old enough. */
  update(connection: string, progress: ProgressUpdate): void {
    const now = this.#o.clock.now();
    _track(this.#runs, connection, progress, now);
    if (now - this.#lastDrawnMs < (this.#o.intervalMs ?? 200)) return;
    this.#draw(now);
  }

  /**
   * Takes a finished run off the line; with none left the line is erased, and the run
   * summaries logged next say the rest.
   */
  finish(connection: string): void {
    if (!this.#runs.delete(connection)) return;
    if (this.#runs.size === 0) this.#o.line.clear();
    else this.#draw(this.#o.clock.now());
  }

  /** Ends the live line so what is written next starts on a line of its own. */
  end(): void {
    this.#o.line.end();
    this.#runs.clear();
  }

  #draw(now: number): void {
    this.#lastDrawnMs = now;
    const runs = [...this.#runs].map(([id, r]) => _figures(id, r, now));
    this.#o.line.show(fitProgress(runs, this.#o.line.width));
  }
}
