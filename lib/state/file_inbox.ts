/**
 * The webhook inboxes of the file store: one append-only file `<state>.inbox` beside the state
 * file, under the same process lock. An append resolves once its line is synced (appends that
 * arrive while a sync is in flight share the next one), which is when the receiver may answer
 * Mailchimp 200: an acknowledged event survives a crash with the file state as it does with
 * Deno KV. Removals are lines too; when nothing is left the file is emptied.
 *
 * Lines: `{"inbox":1}` first, then `{"c":<connection>,"s":<seq>,"e":<entry>}` for an append and
 * `{"c":<connection>,"r":[<seq>…]}` for a removal. A torn last line (a crash mid-write) is
 * ignored; a damaged line elsewhere is skipped with a warning (an event only names members to
 * read again, and polling reads every change anyway).
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { errorText } from "../log/error_text.ts";
import { replaceFileKeepingOpen, writeAll } from "./atomic_file.ts";
import { Deduper, INBOX_CAPACITY, inboxSeq, InboxSignals } from "./inbox.ts";
import {
  type AppendOutcome,
  type Fence,
  type Inbox,
  type InboxEntry,
  type InboxItem,
  StateError,
} from "./store.ts";

const _HEADER = '{"inbox":1}\n';
// An emptied inbox file is rewritten (as its header alone) once it has grown past this.
const _EMPTY_REWRITE_BYTES = 64 * 1024;

interface _Group {
  lines: string[];
  done: PromiseWithResolvers<void>;
}

/** Options of {@linkcode FileInboxes.open}. */
export interface FileInboxesOptions {
  clock: Clock;
  logger?: Logger | undefined;
  /** Load only; every write rejects (`status`). @default {false} */
  readOnly?: boolean;
  /** @default {INBOX_CAPACITY} */
  capacity?: number;
}

/** Every connection's inbox in one file. */
export class FileInboxes {
  readonly path: string;
  readonly #items = new Map<string, InboxItem[]>();
  /** Per connection, appends whose line is being written: they count against the capacity. */
  readonly #appending = new Map<string, number>();
  readonly #dedupe: Deduper;
  readonly #signals = new InboxSignals();
  readonly #readOnly: boolean;
  readonly #capacity: number;
  #seq = 0;
  #bytes = 0;
  #file: Deno.FsFile | undefined;
  /** Lines waiting for the next write; that write starts when the one in flight ends. */
  #group: _Group | undefined;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(path: string, options: FileInboxesOptions) {
    this.path = path;
    this.#dedupe = new Deduper(options.clock);
    this.#readOnly = options.readOnly ?? false;
    this.#capacity = options.capacity ?? INBOX_CAPACITY;
  }

  /** Loads `path` (a missing file is an empty inbox, created at the first append). */
  static async open(path: string, options: FileInboxesOptions): Promise<FileInboxes> {
    const inboxes = new FileInboxes(path, options);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return inboxes;
      throw new StateError(`Cannot read the webhook inbox ${path}: ${errorText(error)}.`, {
        cause: error,
      });
    }
    inboxes.#load(text, options.logger);
    return inboxes;
  }

  #load(text: string, logger: Logger | undefined): void {
    const lines = text.split("\n");
    // The last piece is "" after a whole last line, else a line cut short by a crash.
    const whole = lines.slice(0, -1);
    let skipped = 0;
    for (const [i, line] of whole.entries()) {
      if (i === 0 && line === _HEADER.trim()) continue;
      const parsed = _parseLine(line);
      if (parsed === undefined) {
        skipped++;
        continue;
      }
      const list = this.#list(parsed.c);
      if ("r" in parsed) {
        const gone = new Set(parsed.r);
        this.#items.set(parsed.c, list.filter((item) => !gone.has(item.seq)));
      } else {
        list.push({ seq: parsed.s, entry: parsed.e });
        this.#seq = Math.max(this.#seq, Number(parsed.s) || 0);
      }
    }
    if (skipped > 0) {
      logger?.warn("Skipped {count} damaged line(s) of the webhook inbox {path}", {
        count: skipped,
        path: this.path,
      });
    }
    // A torn end is dropped by the next write, which rewrites the file from memory.
    this.#bytes = lines.at(-1) === "" ? text.length : Infinity;
  }

  /** The inbox of connection `id`. */
  inbox(id: string): Inbox {
    return {
      append: (entry, dedupeKey) => this.#append(id, entry, dedupeKey),
      peek: (max) =>
        Promise.resolve(this.#list(id).slice(0, max).map((item) => structuredClone(item))),
      remove: (seqs, fence) => this.#remove(id, seqs, fence),
      changed: (signal) =>
        this.#list(id).length > 0 ? Promise.resolve() : this.#signals.next(id, signal),
    };
  }

  /** See `StateStore.onInboxAppended`. */
  onAppended(wake: (id: string) => void, signal: AbortSignal): void {
    this.#signals.onAppended(wake, signal);
  }

  /** See `StateStore.pendingInboxes`. */
  pending(): string[] {
    return [...this.#items].flatMap(([id, list]) => list.length > 0 ? [id] : []);
  }

  /** Waits for writes in flight and closes the file. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#writing.catch(() => {});
    this.#file?.close();
    this.#file = undefined;
  }

  #list(id: string): InboxItem[] {
    let list = this.#items.get(id);
    if (!list) this.#items.set(id, list = []);
    return list;
  }

  async #append(id: string, entry: InboxEntry, dedupeKey: string): Promise<AppendOutcome> {
    this.#checkWritable();
    const list = this.#list(id);
    const appending = this.#appending.get(id) ?? 0;
    const key = `${id}\u0000${dedupeKey}`;
    // A delivery already taken is a duplicate even when the inbox is full (200, not 503).
    if (!this.#dedupe.first(key)) return "duplicate";
    if (list.length + appending >= this.#capacity) {
      this.#dedupe.forget(key); // not queued: its retry may be
      return "full";
    }
    const item: InboxItem = { seq: inboxSeq(++this.#seq), entry: structuredClone(entry) };
    this.#appending.set(id, appending + 1);
    try {
      await this.#write(JSON.stringify({ c: id, s: item.seq, e: item.entry }));
    } catch (error) {
      // Not durable, so not queued: the delivery may come again.
      this.#dedupe.forget(key);
      throw error;
    } finally {
      this.#appending.set(id, this.#appending.get(id)! - 1);
    }
    list.push(item);
    this.#signals.appended(id);
    return "queued";
  }

  async #remove(id: string, seqs: readonly string[], fence: Fence): Promise<void> {
    this.#checkWritable();
    fence.assertHeld();
    if (seqs.length === 0) return;
    const gone = new Set(seqs);
    this.#items.set(id, this.#list(id).filter((item) => !gone.has(item.seq)));
    await this.#write(JSON.stringify({ c: id, r: [...gone] }));
  }

  #checkWritable(): void {
    if (this.#closed) throw new Error(`Cannot use the webhook inbox ${this.path}: it is closed`);
    if (this.#readOnly) {
      throw new StateError(`Cannot change the webhook inbox ${this.path}: opened read-only`);
    }
  }

  /** Appends `line` in the next group write; resolves once it is synced. */
  #write(line: string): Promise<void> {
    if (!this.#group) {
      const group: _Group = { lines: [], done: Promise.withResolvers() };
      this.#group = group;
      this.#writing = this.#writing.then(() => this.#flush(group));
    }
    this.#group.lines.push(line);
    return this.#group.done.promise;
  }

  async #flush(group: _Group): Promise<void> {
    this.#group = undefined;
    try {
      const empty = [...this.#items.values()].every((list) => list.length === 0);
      if (
        this.#file === undefined || this.#bytes === Infinity ||
        (empty && this.#bytes > _EMPTY_REWRITE_BYTES)
      ) {
        await this.#rewrite(group.lines);
      } else {
        const bytes = new TextEncoder().encode(group.lines.map((l) => l + "\n").join(""));
        await writeAll(this.#file, bytes);
        await this.#file.syncData();
        this.#bytes += bytes.length;
      }
      group.done.resolve();
    } catch (error) {
      // The file may end in part of this group: the next write rewrites it from memory.
      this.#bytes = Infinity;
      group.done.reject(
        new StateError(`Cannot write the webhook inbox ${this.path}: ${errorText(error)}`, {
          cause: error,
        }),
      );
    }
  }

  /**
   * Writes everything held in memory (plus `extra` lines not yet applied) as a new file that
   * replaces the old one atomically (atomic_file.ts), then keeps it open for appends.
   */
  async #rewrite(extra: readonly string[]): Promise<void> {
    this.#file?.close();
    this.#file = undefined;
    const lines = [_HEADER.trim()];
    for (const [c, list] of this.#items) {
      for (const item of list) lines.push(JSON.stringify({ c, s: item.seq, e: item.entry }));
    }
    lines.push(...extra);
    const bytes = new TextEncoder().encode(lines.map((l) => l + "\n").join(""));
    // One fixed temporary name: we hold the store's lock. The folder is synced too, or a crash
    // could bring back the old file after appends to the new one were acknowledged.
    this.#file = await replaceFileKeepingOpen(this.path, bytes, { tempPath: `${this.path}.tmp` });
    this.#bytes = bytes.length;
  }
}

type _Line =
  | { c: string; s: string; e: InboxEntry }
  | { c: string; r: string[] };

function _parseLine(line: string): _Line | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.c !== "string") return undefined;
  if (Array.isArray(v.r) && v.r.every((s) => typeof s === "string")) {
    return { c: v.c, r: v.r as string[] };
  }
  if (typeof v.s === "string" && _isEntry(v.e)) return { c: v.c, s: v.s, e: v.e };
  return undefined;
}

function _isEntry(e: unknown): e is InboxEntry {
  if (typeof e !== "object" || e === null) return false;
  const x = e as Record<string, unknown>;
  return typeof x.type === "string" && typeof x.receivedAtMs === "number" &&
    (x.firedAtMs === null || typeof x.firedAtMs === "number") &&
    (x.action === null || typeof x.action === "string") &&
    Array.isArray(x.memberIds) && x.memberIds.every((id) => typeof id === "string");
}
