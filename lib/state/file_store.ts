/**
 * The state store of a single long-running process on one machine: a JSON document (by
 * default `./sync_jobs.json`, the original tool's file name) plus an append-only journal
 * beside it, locked for the life of the process. A checkpoint is one small synced append; the
 * document is rewritten only now and then, when the journal has grown, and on close.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { dirname } from "node:path";
import type { Clock } from "../clock/clock.ts";
import { DEFAULT_LEGACY_MARGIN_MINUTES } from "../config/defaults.ts";
import {
  encodeJournalHeader,
  encodeJournalLine,
  JOURNAL_VERSION,
  KEEP_QUARANTINE,
  parseJournal,
} from "./journal.ts";
import { importLegacyDocument, legacyDocumentSchema, looksLikeLegacyDocument } from "./legacy.ts";
import {
  type ConnectionState,
  connectionStateSchema,
  type QuarantineEntry,
  STATE_VERSION,
  type StateDocument,
  stateDocumentSchema,
} from "./schema.ts";
import {
  replaceFileKeepingOpen,
  syncFolder,
  writeAll,
  writeFileAtomically,
} from "./atomic_file.ts";
import { FileInboxes } from "./file_inbox.ts";
import { LocalLeases } from "./leases.ts";
import { FileLedger } from "./ledgers.ts";
import { _checkId } from "./memory_store.ts";
import {
  type Fence,
  type Inbox,
  type Lease,
  type Ledger,
  StateError,
  type StateStore,
} from "./store.ts";
import { errorText, zodProblems } from "../log/error_text.ts";

/** Options of {@linkcode FileStore.open}. */
export interface FileStoreOptions {
  /** Times the wait for the lock. */
  clock: Clock;
  /** Where migration and journal recovery are reported. */
  logger?: Logger | undefined;
  /**
   * Journal size (bytes) at which the next write compacts: rewrites the document with every
   * change and starts an empty journal. Compacting when the journal has grown to the
   * document's size keeps the bytes written within twice the bytes appended.
   * @default {the larger of 1 MiB and the size of the document last read or written}
   */
  compactBytes?: number | undefined;
  /**
   * How long to wait for another process to let go of the file before giving up.
   * @default {1000}
   */
  lockTimeoutMs?: number | undefined;
  /**
   * How far watermarks imported from the original tool's file are moved back.
   * @default {60}
   */
  legacyMarginMinutes?: number | undefined;
  /**
   * The UTC offset (minutes, east positive) of the zone the original tool wrote its naive
   * local times in, at a naive time given as if it were UTC milliseconds.
   * @default {localTimeZoneOffsetMinutes} (this process's time zone)
   */
  legacyTimeZoneOffsetMinutes?: ((naiveMs: number) => number) | undefined;
  /**
   * Read without taking the lock and never write (for `status`, which must work while the
   * daemon holds the file). The document is replaced by atomic renames and the journal only
   * grows at its end, so a reader sees a whole document and ignores a half-written last
   * line. `update` rejects.
   * @default {false}
   */
  readOnly?: boolean | undefined;
}

// How often a locked file is tried again while waiting for it.
const _LOCK_POLL_MS = 25;
// The smallest journal worth compacting: below it a rewrite costs more than replaying.
const _MIN_COMPACT_BYTES = 1024 * 1024;
// A reader that meets a journal of another document has raced a compaction: it reads again.
const _READ_ATTEMPTS = 5;

/** A group of updates that share one append and one sync. */
interface _Group {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Connection state in two files. `<path>` is the document `{version: 1, connections: {...}}`,
 * always replaced whole: written to a temporary file, synced, renamed over, and the folder
 * synced. `<path>.journal` holds the changes since (see `journal.ts`): its header names the
 * SHA-256 of the document it extends, and each line is one connection's full state after an
 * `update`. `update` resolves only once its line is synced to disk; updates that arrive
 * while a sync is in flight share the next one (group commit), so a thousand connections do
 * not cost a thousand syncs. When the journal has grown past `compactBytes`, and on `close`,
 * the document is rewritten and the journal replaced. Opening replays the journal over the
 * document; a journal of another document (a compaction interrupted between its two renames)
 * is ignored, because that document already holds all of it.
 *
 * Opening takes an exclusive lock on the sidecar `<path>.lock` (holding our pid, so a second
 * process can say who is in the way), which is why leases only guard against running a
 * connection twice in this process. A damaged or unknown document, or a damaged journal line
 * that is not the torn end of the last write, stops the program with a
 * {@linkcode StateError} and nothing is overwritten; the original tool's file is migrated,
 * after a copy to `<path>.bak`.
 */
export class FileStore implements StateStore {
  readonly kind = "file" as const;
  readonly location: string;
  #journalPath: string;
  #logger: Logger | undefined;
  #compactBytes: number | undefined;
  #lockFile: Deno.FsFile | undefined;
  #readOnly: boolean;
  #connections: Record<string, ConnectionState>;
  /**
   * Each connection's quarantine as it is on disk (document or journal), so that a journal
   * line can leave an unchanged one out.
   */
  #quarantineOnDisk = new Map<string, readonly QuarantineEntry[]>();
  /** The original tool's file, kept until it has been copied aside before our first write. */
  #legacyBytes: Uint8Array | undefined;
  #leases = new LocalLeases();
  #inboxes: FileInboxes;
  #ledgers = new Map<string, FileLedger>();
  #closed = false;
  /**
   * Memory holds changes that are neither on disk nor waiting in `#pending` (an import, or
   * an append that failed): only a compaction makes them durable.
   */
  #dirty: boolean;
  /**
   * Whether the journal on disk extends the document on disk and ends cleanly, so lines may
   * be appended to it. When false the next write compacts, which starts a new one.
   */
  #appendable: boolean;
  /** Whether a journal file exists (close removes it after its last compaction). */
  #journalExists: boolean;
  #journal: Deno.FsFile | undefined;
  #journalBytes: number;
  #documentBytes: number;
  /** The latest state of each connection updated since the last group began its write. */
  #pending = new Map<string, ConnectionState>();
  /** The group those updates will be written in; its write is queued but has not begun. */
  #group: _Group | undefined;
  // Disk operations are chained onto this one, so at most one is in flight and they land in
  // order.
  #queue: Promise<void> = Promise.resolve();
  #writes = 0;
  #syncs = 0;

  private constructor(
    path: string,
    lockFile: Deno.FsFile | undefined,
    loaded: _Loaded,
    inboxes: FileInboxes,
    options: FileStoreOptions,
  ) {
    this.location = path;
    this.#inboxes = inboxes;
    this.#journalPath = `${path}.journal`;
    this.#lockFile = lockFile;
    this.#logger = options.logger;
    this.#compactBytes = options.compactBytes;
    this.#readOnly = options.readOnly ?? false;
    this.#connections = loaded.connections;
    this.#rememberOnDisk(Object.values(loaded.connections));
    this.#legacyBytes = loaded.legacyBytes;
    // A migrated document is written at the next write or flush, so the switch happens once.
    this.#dirty = !this.#readOnly && loaded.legacyBytes !== undefined;
    this.#appendable = loaded.appendable;
    this.#journalExists = loaded.journalExists;
    this.#journalBytes = loaded.journalBytes;
    this.#documentBytes = loaded.documentBytes;
  }

  /**
   * Locks and loads the state file at `path` and replays its journal (a missing file is an
   * empty document, created on the first write). Throws {@linkcode StateError} when another
   * process holds the lock, or the file or its journal cannot be read, is damaged, or has a
   * version this program does not know.
   */
  static async open(path: string, options: FileStoreOptions): Promise<FileStore> {
    const lockFile = options.readOnly
      ? undefined
      : await _lock(path, options.clock, options.lockTimeoutMs ?? 1000);
    try {
      const loaded = await _loadWithJournal(path, options);
      const inboxes = await FileInboxes.open(`${path}.inbox`, {
        clock: options.clock,
        logger: options.logger,
        readOnly: options.readOnly ?? false,
      });
      return new FileStore(path, lockFile, loaded, inboxes, options);
    } catch (error) {
      if (lockFile) await _unlock(lockFile);
      throw error;
    }
  }

  /** Number of documents written (compactions) since the store was opened. */
  get writes(): number {
    return this.#writes;
  }

  /**
   * Number of journal appends synced to disk since the store was opened; with group commit
   * this is at most the number of updates, and far fewer when updates arrive together.
   */
  get syncs(): number {
    return this.#syncs;
  }

  // Promise.try throughout: a closed store or an invalid state rejects the promise instead of
  // throwing at the call.
  get(id: string): Promise<ConnectionState | undefined> {
    return Promise.try(() => {
      this.#checkOpen();
      const state = this.#connections[id];
      return state === undefined ? undefined : structuredClone(state);
    });
  }

  list(): Promise<ConnectionState[]> {
    return Promise.try(() => {
      this.#checkOpen();
      return Object.values(this.#connections)
        .sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
        .map((s) => structuredClone(s));
    });
  }

  /**
   * Applies `fn` in memory at once (so concurrent updates of one connection see each other),
   * then resolves once the new state is synced to disk, in the journal or a compacted
   * document. Rejects with {@linkcode StateError} when it cannot be written.
   */
  update(
    id: string,
    fn: (current: ConnectionState | undefined) => ConnectionState | undefined,
    fence?: Fence,
  ): Promise<ConnectionState | undefined> {
    return Promise.try(() => {
      this.#checkWritable();
      fence?.assertHeld();
      const current = this.#connections[id];
      const next = fn(current === undefined ? undefined : structuredClone(current));
      if (next === undefined) return current === undefined ? undefined : structuredClone(current);
      // Validating here keeps an invalid value from ever reaching the disk.
      const copy = connectionStateSchema.parse(next);
      _checkId(id, copy);
      this.#connections[id] = copy;
      this.#pending.set(id, copy);
      const result = structuredClone(copy);
      return this.#joinGroup().then(() => result);
    });
  }

  ledger(id: string): Ledger {
    // One file per connection in a folder beside the state file (the name is the id made
    // safe for any file system), and one FileLedger for it, whose appends run in order.
    let ledger = this.#ledgers.get(id);
    if (!ledger) this.#ledgers.set(id, ledger = new FileLedger(`${this.location}.ledger`, id));
    return ledger;
  }

  /**
   * Waits for every earlier update's write. Updates are durable when they resolve, so this
   * only writes when memory holds what no journal line does: an imported document, or the
   * changes of an append that failed (then it compacts, and rejects if that fails too).
   */
  flush(): Promise<void> {
    return Promise.try(() => {
      this.#checkOpen();
      if (this.#readOnly) return;
      return this.#enqueue(async () => {
        if (this.#dirty) await this.#compact(true);
      });
    });
  }

  /**
   * The inbox of connection `id`, in `<path>.inbox` beside the state file (see file_inbox.ts):
   * an append resolves once it is synced.
   */
  inbox(id: string): Inbox {
    this.#checkOpen();
    return this.#inboxes.inbox(id);
  }

  onInboxAppended(wake: (id: string) => void, signal: AbortSignal): void {
    this.#inboxes.onAppended(wake, signal);
  }

  pendingInboxes(): Promise<string[]> {
    return Promise.try(() => {
      this.#checkOpen();
      return this.#inboxes.pending();
    });
  }

  acquire(id: string): Promise<Lease | undefined> {
    return Promise.try(() => {
      this.#checkOpen();
      return this.#leases.acquire(id);
    });
  }

  /**
   * Waits for writes in flight, compacts the journal into the document and removes it (the
   * next open then reads one file), and lets go of the lock.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    // Closed first: an update from now on rejects instead of queueing behind the close.
    this.#closed = true;
    try {
      if (!this.#readOnly) {
        await this.#enqueue(async () => {
          if (this.#dirty || this.#journalExists) await this.#compact(false);
        });
      }
    } finally {
      this.#leases.clear();
      await this.#inboxes.close();
      this.#journal?.close();
      this.#journal = undefined;
      const lockFile = this.#lockFile;
      this.#lockFile = undefined;
      if (lockFile) await _unlock(lockFile);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error(`Cannot use the state file ${this.location}: it is closed`);
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (this.#readOnly) {
      throw new StateError(
        `Cannot change the state file ${this.location}: it was opened read-only`,
      );
    }
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(op);
    this.#queue = next.catch(() => {});
    return next;
  }

  // The group commit: the first update after a write began opens a group and queues its
  // write; every update until that write begins joins it and shares its sync.
  #joinGroup(): Promise<void> {
    if (this.#group) return this.#group.promise;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const group: _Group = { promise, resolve, reject };
    this.#group = group;
    this.#enqueue(async () => {
      try {
        await this.#commit();
        group.resolve();
      } catch (error) {
        group.reject(error);
      }
    });
    return promise;
  }

  async #commit(): Promise<void> {
    const batch = [...this.#pending.values()];
    this.#pending = new Map();
    this.#group = undefined;
    if (batch.length === 0) return;
    const limit = this.#compactBytes ?? Math.max(_MIN_COMPACT_BYTES, this.#documentBytes);
    // A compaction writes all of memory, this batch included.
    if (this.#dirty || !this.#appendable || this.#journalBytes >= limit) {
      await this.#compact(true);
      return;
    }
    const bytes = _encoder.encode(batch.map((state) => this.#journalLine(state)).join(""));
    try {
      this.#journal ??= await Deno.open(this.#journalPath, { write: true, append: true });
      await writeAll(this.#journal, bytes);
      // fdatasync also makes the grown length durable, which reading the line back needs.
      await this.#journal.syncData();
      this.#journalBytes += bytes.length;
      this.#syncs++;
      this.#rememberOnDisk(batch);
    } catch (error) {
      // The journal may now end in part of this batch: nothing more is appended to it, and
      // the next write or flush compacts, which holds the batch (still in memory) too.
      this.#journal?.close();
      this.#journal = undefined;
      this.#appendable = false;
      this.#dirty = true;
      throw new StateError(
        `Cannot write the journal ${this.#journalPath} of the state file ${this.location}: ${
          errorText(error)
        }`,
        { cause: error },
      );
    }
  }

  /**
   * Writes all of memory as the document, then starts a new journal over it (`keepJournal`)
   * or removes the journal (on close). Until the new document is renamed into place the old
   * document and journal stay complete; once it is, the old journal names another document
   * and is ignored by the next open, which is right because the new document holds it all.
   */
  /** The journal line of `state`: without its quarantine when the disk has it already. */
  #journalLine(state: ConnectionState): string {
    const onDisk = this.#quarantineOnDisk.get(state.id);
    if (
      state.quarantine.length === 0 || onDisk === undefined ||
      !_sameQuarantine(onDisk, state.quarantine)
    ) {
      return encodeJournalLine(state);
    }
    const { quarantine: _, ...rest } = state;
    return encodeJournalLine({ ...rest, [KEEP_QUARANTINE]: true });
  }

  #rememberOnDisk(states: readonly ConnectionState[]): void {
    for (const state of states) this.#quarantineOnDisk.set(state.id, state.quarantine);
  }

  async #compact(keepJournal: boolean): Promise<void> {
    const document: StateDocument = { version: STATE_VERSION, connections: this.#connections };
    const bytes = _encoder.encode(JSON.stringify(document, null, 2) + "\n");
    // Cleared before the awaits; a failure below sets both again.
    this.#dirty = false;
    this.#appendable = false;
    this.#journal?.close();
    this.#journal = undefined;
    try {
      const base = await _digest(bytes);
      if (this.#legacyBytes) {
        const backup = await _backUp(this.location, this.#legacyBytes);
        this.#legacyBytes = undefined;
        this.#logger?.info("Saved the original tool's state file as {backup}", { backup });
      }
      await writeFileAtomically(this.location, bytes);
      this.#writes++;
      this.#quarantineOnDisk.clear();
      this.#rememberOnDisk(Object.values(this.#connections));
      this.#documentBytes = bytes.length;
      if (keepJournal) {
        const header = _encoder.encode(encodeJournalHeader(base));
        this.#journal = await _replaceJournal(this.#journalPath, header);
        this.#journalBytes = header.length;
        this.#journalExists = true;
        this.#appendable = true;
      } else {
        await Deno.remove(this.#journalPath).catch((error) => {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        });
        await syncFolder(dirname(this.#journalPath));
        this.#journalBytes = 0;
        this.#journalExists = false;
      }
    } catch (error) {
      this.#dirty = true;
      // Already worded (a nested step of this store): saying it twice helps nobody.
      if (error instanceof StateError) throw error;
      throw new StateError(
        `Cannot write the state file ${this.location}: ${errorText(error)}`,
        { cause: error },
      );
    }
  }
}

const _encoder = new TextEncoder();

interface _Loaded {
  connections: Record<string, ConnectionState>;
  legacyBytes: Uint8Array | undefined;
  documentBytes: number;
  appendable: boolean;
  journalExists: boolean;
  journalBytes: number;
}

async function _loadWithJournal(path: string, options: FileStoreOptions): Promise<_Loaded> {
  const journalPath = `${path}.journal`;
  for (let attempt = 1;; attempt++) {
    const document = await _load(path, options);
    const journal = await _readJournal(journalPath);
    const loaded: _Loaded = {
      connections: document.connections,
      legacyBytes: document.legacyBytes,
      documentBytes: document.bytes?.length ?? 0,
      appendable: false,
      journalExists: journal !== undefined,
      journalBytes: 0,
    };
    if (journal === undefined) return loaded;
    const parsed = parseJournal(journal);
    const damaged = (what: string) =>
      new StateError(
        `The journal ${journalPath} of the state file ${path} is damaged: ${what}. Neither ` +
          "file has been changed. Move the journal aside to go on from the state file alone " +
          "(members acknowledged since it was last compacted are sent again), or move both " +
          "aside to start with a full sync.",
      );
    if (parsed.damage) {
      throw damaged(`line ${parsed.damage.line} ${parsed.damage.reason}`);
    }
    const header = parsed.header;
    if (
      header !== undefined && !(Number.isInteger(header.journal) && header.journal >= 1 &&
        header.journal <= JOURNAL_VERSION)
    ) {
      throw new StateError(
        `The journal ${journalPath} of the state file ${path} has version ${header.journal}, ` +
          `which this program does not know (it writes version ${JOURNAL_VERSION}); it may ` +
          "come from a newer release. Neither file has been changed. Use that release.",
      );
    }
    const base = document.bytes === undefined ? undefined : await _digest(document.bytes);
    if (header === undefined || header.base !== base) {
      // A reader may have read the document just before a compaction replaced both files.
      if (options.readOnly && header !== undefined && attempt < _READ_ATTEMPTS) continue;
      // Otherwise the journal was cut short before its header was whole, or a compaction was
      // interrupted between its renames, or the document was moved aside: either way the
      // document on disk holds everything the journal acknowledged, or is meant to start
      // afresh. The next write replaces the journal.
      if (header !== undefined) {
        options.logger?.debug("Ignoring the journal {journal}: it extends another document", {
          journal: journalPath,
        });
      }
      return loaded;
    }
    for (const [i, entry] of parsed.entries.entries()) {
      // Line numbers count the header as line 1.
      const value = _withQuarantine(entry, loaded.connections);
      if (typeof value === "string") throw damaged(`line ${i + 2}: ${value}`);
      const state = connectionStateSchema.safeParse(value);
      if (!state.success) throw damaged(`line ${i + 2}: ${zodProblems(state.error)}`);
      loaded.connections[state.data.id] = state.data;
    }
    if (parsed.tornLength > 0 && !options.readOnly) {
      options.logger?.info(
        "Ignoring the last {bytes} byte(s) of the journal {journal}: a write cut short by a " +
          "crash, never acknowledged",
        { bytes: parsed.tornLength, journal: journalPath },
      );
    }
    // A torn end must not be appended after (it would become a damaged middle line), so
    // such a journal is replaced by the next write; so is one of an older version, which an
    // older release could read again only without lines of this version.
    loaded.appendable = parsed.tornLength === 0 && header.journal === JOURNAL_VERSION;
    loaded.journalBytes = parsed.validLength;
    return loaded;
  }
}

/**
 * A journal entry with the quarantine it keeps put back (from the connection's state so far),
 * or what is wrong with it.
 */
function _withQuarantine(
  entry: unknown,
  connections: Record<string, ConnectionState>,
): unknown {
  if (typeof entry !== "object" || entry === null || !(KEEP_QUARANTINE in entry)) return entry;
  const { [KEEP_QUARANTINE]: keep, ...rest } = entry as Record<string, unknown>;
  const before = typeof rest.id === "string" ? connections[rest.id] : undefined;
  if (keep !== true || before === undefined) {
    return `it keeps the quarantine of ${JSON.stringify(rest.id)}, which no earlier state has`;
  }
  return { ...rest, quarantine: before.quarantine };
}

/** Whether two quarantines hold the same entries in the same order. */
function _sameQuarantine(a: readonly QuarantineEntry[], b: readonly QuarantineEntry[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (
      x.id !== y.id || x.reason !== y.reason || x.first_seen_at !== y.first_seen_at ||
      x.last_tried_at !== y.last_tried_at || x.attempts !== y.attempts
    ) {
      return false;
    }
  }
  return true;
}

async function _readJournal(journalPath: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(journalPath);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new StateError(`Cannot read the journal ${journalPath}: ${errorText(error)}.`, {
      cause: error,
    });
  }
}

// A new journal holding only `header`, renamed over the old one and made durable (the
// folder too, or a crash could bring back the old journal after new lines were
// acknowledged). Returns it open for appending.
function _replaceJournal(journalPath: string, header: Uint8Array): Promise<Deno.FsFile> {
  // One fixed name: we hold the lock, and a crash leaves at most this one file behind.
  return replaceFileKeepingOpen(journalPath, header, { tempPath: `${journalPath}.tmp` });
}

async function _digest(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function _lock(path: string, clock: Clock, timeoutMs: number): Promise<Deno.FsFile> {
  const lockPath = `${path}.lock`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(lockPath, { read: true, write: true, create: true });
  } catch (error) {
    throw new StateError(
      `Cannot use the state file ${path}: cannot open its lock file ${lockPath}: ${
        errorText(error)
      }.${_advice(path, error)}`,
      { cause: error },
    );
  }
  try {
    // tryLock() polled instead of a blocking lock() raced against a timer: a blocking lock
    // that lost the race would stay pending in a thread and keep the process alive.
    const deadline = clock.now() + timeoutMs;
    while (!(await file.tryLock(true))) {
      const left = deadline - clock.now();
      if (left <= 0) {
        const pid = await _readPid(lockPath);
        throw new StateError(
          `The state file ${path} is in use by another process (pid ${pid}). ` +
            "Stop that process, or use a different --state path.",
        );
      }
      await clock.sleep(Math.min(_LOCK_POLL_MS, left));
    }
    await file.truncate(0);
    await file.seek(0, Deno.SeekMode.Start);
    await writeAll(file, new TextEncoder().encode(`${Deno.pid}\n`));
    return file;
  } catch (error) {
    file.close();
    if (error instanceof StateError) throw error;
    // A full disk shows first here, writing the pid: the state file is not touched yet.
    throw new StateError(
      `Cannot use the state file ${path}: cannot write its lock file ${lockPath}: ${
        errorText(error)
      }.${_advice(path, error)}`,
      { cause: error },
    );
  }
}

async function _readPid(lockPath: string): Promise<string> {
  try {
    const text = (await Deno.readTextFile(lockPath)).trim();
    return /^\d+$/.test(text) ? text : "unknown";
  } catch {
    return "unknown";
  }
}

async function _unlock(file: Deno.FsFile): Promise<void> {
  try {
    // Emptied first, so nobody blames a pid that has let go.
    await file.truncate(0);
    await file.unlock();
  } finally {
    file.close();
  }
}

interface _Document {
  connections: Record<string, ConnectionState>;
  legacyBytes: Uint8Array | undefined;
  /** The document's bytes as read (the journal's base); undefined when there is none. */
  bytes: Uint8Array<ArrayBuffer> | undefined;
}

async function _load(path: string, options: FileStoreOptions): Promise<_Document> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return { connections: {}, legacyBytes: undefined, bytes: undefined };
    }
    throw new StateError(
      `Cannot read the state file ${path}: ${errorText(error)}.${_advice(path, error)}`,
      { cause: error },
    );
  }
  const damaged = (what: string) =>
    new StateError(
      `The state file ${path} is damaged: ${what}. It has not been changed. Restore it from ` +
        `${path}.bak if present, or move it aside to start with a full sync.`,
    );
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw damaged(`it is not valid JSON (${errorText(error)})`);
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value) && "version" in value) {
    if (value.version !== STATE_VERSION) {
      throw new StateError(
        `The state file ${path} has version ${
          JSON.stringify(value.version)
        }, which this program does not know (it writes version ${STATE_VERSION}); it may ` +
          "come from a newer release. It has not been changed. Use that release, restore it " +
          `from ${path}.bak if present, or move it aside to start with a full sync.`,
      );
    }
    const parsed = stateDocumentSchema.safeParse(value);
    if (!parsed.success) throw damaged(zodProblems(parsed.error));
    _checkIds(parsed.data, damaged);
    return { connections: parsed.data.connections, legacyBytes: undefined, bytes };
  }
  if (looksLikeLegacyDocument(value)) {
    const legacy = legacyDocumentSchema.safeParse(value);
    if (!legacy.success) {
      throw damaged(
        `it looks like the original tool's file, but ${zodProblems(legacy.error)}`,
      );
    }
    const connections = importLegacyDocument(legacy.data, {
      source: path,
      marginMinutes: options.legacyMarginMinutes,
      timeZoneOffsetMinutes: options.legacyTimeZoneOffsetMinutes,
    });
    // Read-only (status) shows the imported state without importing anything.
    if (!options.readOnly) {
      options.logger?.warn(
        "Importing {count} connection(s) from the original tool's state file {path}; " +
          "watermarks are moved back {minutes} minutes, so some members are sent again.",
        {
          count: Object.keys(connections).length,
          path,
          minutes: options.legacyMarginMinutes ?? DEFAULT_LEGACY_MARGIN_MINUTES,
        },
      );
    }
    return { connections, legacyBytes: bytes, bytes };
  }
  const parsed = stateDocumentSchema.safeParse(value);
  throw damaged(
    "it is neither this program's state document nor the original tool's file" +
      (parsed.success ? "" : ` (${zodProblems(parsed.error)})`),
  );
}

// A document whose keys disagree with the ids inside would make get() and list() disagree.
function _checkIds(document: StateDocument, damaged: (what: string) => StateError): void {
  for (const [key, state] of Object.entries(document.connections)) {
    if (state.id !== key) {
      throw damaged(`connections.${key}.id is "${state.id}", not "${key}"`);
    }
  }
}

async function _backUp(path: string, bytes: Uint8Array): Promise<string> {
  for (let n = 0;; n++) {
    const backup = n === 0 ? `${path}.bak` : `${path}.bak.${n}`;
    let file: Deno.FsFile;
    try {
      // createNew: an existing backup is somebody's only copy of something.
      file = await Deno.open(backup, { write: true, createNew: true });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) continue;
      throw error;
    }
    try {
      await writeAll(file, bytes);
      await file.sync();
    } finally {
      file.close();
    }
    return backup;
  }
}

/**
 * What to do about an error opening the state file, beyond the OS's words: the usual causes
 * are a folder where the file should be, a folder that does not exist, and one this user
 * may not write.
 */
function _advice(path: string, error: unknown): string {
  const folder = dirname(path);
  if (error instanceof Deno.errors.IsADirectory || /is a directory/i.test(errorText(error))) {
    return ` ${path} is a folder: pass the path of a file with --state (for example ` +
      `${path.replace(/\/+$/, "")}/sync_jobs.json), or move the folder aside.`;
  }
  if (error instanceof Deno.errors.NotFound) {
    return ` The folder ${folder} does not exist: create it, or pass another --state.`;
  }
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return ` This process may not write in ${folder}: make the folder writable for this ` +
      `user (and grant --allow-read and --allow-write for it), or pass another --state.`;
  }
  if ((error as { code?: unknown } | null)?.code === "ENOSPC") {
    return ` The disk holding ${folder} is full: free space on it, or pass a --state on ` +
      "another disk.";
  }
  if (/read-only file system/i.test(errorText(error))) {
    return ` ${folder} is on a read-only file system: pass a --state on a writable one.`;
  }
  return "";
}
