/**
 * The state store of a single long-running process on one machine: a JSON file (by default
 * `./sync_jobs.json`, the original tool's file name), locked for the life of the process,
 * written atomically and at most about once per `coalesceMs`.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { dirname } from "node:path";
import type { Clock } from "../clock/clock.ts";
import { importLegacyDocument, legacyDocumentSchema, looksLikeLegacyDocument } from "./legacy.ts";
import {
  type ConnectionState,
  connectionStateSchema,
  describeIssues,
  STATE_VERSION,
  type StateDocument,
  stateDocumentSchema,
} from "./schema.ts";
import { FileLedger } from "./ledgers.ts";
import { _acquireLocal, _checkId } from "./memory_store.ts";
import { type Lease, type Ledger, StateError, type StateStore } from "./store.ts";

/** Options of {@linkcode FileStore.open}. */
export interface FileStoreOptions {
  /** Times the coalesced writes and the wait for the lock. */
  clock: Clock;
  /** Where migration and background write failures are reported. */
  logger?: Logger | undefined;
  /**
   * How long a `put` may stay in memory before it is written; every `put` in that time
   * shares one write.
   * @default {1000}
   */
  coalesceMs?: number | undefined;
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
   * daemon holds the file; writes are atomic renames, so a reader always sees a whole
   * document). `put` and `delete` reject.
   * @default {false}
   */
  readOnly?: boolean | undefined;
}

// How often a locked file is tried again while waiting for it.
const _LOCK_POLL_MS = 25;

/**
 * Connection state in one JSON document `{version: 1, connections: {...}}`. Opening takes an
 * exclusive lock on the sidecar `<path>.lock` (holding our pid, so a second process can say
 * who is in the way), which is why its leases only guard against running a connection twice
 * in this process. Each write goes to a temporary file in the same folder, is synced to disk
 * and renamed over the document, so the file is always a complete, valid document. A damaged
 * or unknown document stops the program with a {@linkcode StateError} and is never
 * overwritten; the original tool's file is migrated, after a copy to `<path>.bak`.
 */
export class FileStore implements StateStore {
  readonly kind = "file" as const;
  readonly location: string;
  #clock: Clock;
  #logger: Logger | undefined;
  #coalesceMs: number;
  #lockFile: Deno.FsFile | undefined;
  #connections: Record<string, ConnectionState>;
  /** The original tool's file, kept until it has been copied aside before our first write. */
  #legacyBytes: Uint8Array | undefined;
  #held = new Map<string, symbol>();
  #dirty = false;
  #closed = false;
  #writes = 0;
  #readOnly: boolean;
  #timer: AbortController | undefined;
  // Every write is chained onto this one, so that at most one is in flight and they land in
  // order.
  #queue: Promise<void> = Promise.resolve();

  private constructor(
    path: string,
    lockFile: Deno.FsFile | undefined,
    loaded: _Loaded,
    options: FileStoreOptions,
  ) {
    this.location = path;
    this.#lockFile = lockFile;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#coalesceMs = options.coalesceMs ?? 1000;
    this.#connections = loaded.connections;
    this.#legacyBytes = loaded.legacyBytes;
    // A migrated document is written at the next flush, so the switch happens once.
    this.#readOnly = options.readOnly ?? false;
    this.#dirty = !this.#readOnly && loaded.legacyBytes !== undefined;
  }

  /**
   * Locks and loads the state file at `path` (a missing file is an empty document, created on
   * the first write). Throws {@linkcode StateError} when another process holds the lock, or
   * the file cannot be read, is damaged, or has a version this program does not know.
   */
  static async open(path: string, options: FileStoreOptions): Promise<FileStore> {
    const lockFile = options.readOnly
      ? undefined
      : await _lock(path, options.clock, options.lockTimeoutMs ?? 1000);
    try {
      const loaded = await _load(path, options);
      return new FileStore(path, lockFile, loaded, options);
    } catch (error) {
      if (lockFile) await _unlock(lockFile);
      throw error;
    }
  }

  /** Number of documents written since the store was opened. */
  get writes(): number {
    return this.#writes;
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

  update(
    id: string,
    fn: (current: ConnectionState | undefined) => ConnectionState | undefined,
  ): Promise<ConnectionState | undefined> {
    return Promise.try(() => {
      this.#checkWritable();
      const current = this.#connections[id];
      const next = fn(current === undefined ? undefined : structuredClone(current));
      if (next === undefined) return current === undefined ? undefined : structuredClone(current);
      // Validating here keeps an invalid value from ever reaching the document on disk.
      const copy = connectionStateSchema.parse(next);
      _checkId(id, copy);
      this.#connections[id] = copy;
      this.#changed();
      return structuredClone(copy);
    });
  }

  ledger(id: string): Ledger {
    // One file per connection in a folder beside the state file; the name is the id made
    // safe for any file system.
    return new FileLedger(`${this.location}.ledger/${encodeURIComponent(id)}.ids`);
  }

  flush(): Promise<void> {
    return Promise.try(() => {
      this.#checkOpen();
      this.#cancelTimer();
      return this.#enqueueWrite();
    });
  }

  acquire(id: string): Promise<Lease | undefined> {
    return Promise.try(() => {
      this.#checkOpen();
      return _acquireLocal(this.#held, id);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#cancelTimer();
    try {
      await this.#enqueueWrite();
    } finally {
      this.#closed = true;
      this.#held.clear();
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

  #changed(): void {
    this.#dirty = true;
    if (this.#timer) return;
    const timer = new AbortController();
    this.#timer = timer;
    this.#clock.sleep(this.#coalesceMs, timer.signal).then(
      () => {
        if (this.#timer === timer) this.#timer = undefined;
        return this.#enqueueWrite().catch((error) => {
          // Memory still holds the change and stays dirty: the next flush tries again and
          // reports to its caller.
          this.#logger?.error("Cannot write the state file {path}: {error}", {
            path: this.location,
            error: error instanceof Error ? error.message : String(error),
          });
        });
      },
      () => {/* cancelled by flush or close, which write themselves */},
    );
  }

  #cancelTimer(): void {
    this.#timer?.abort();
    this.#timer = undefined;
  }

  #enqueueWrite(): Promise<void> {
    const write = this.#queue.then(() => this.#writeIfDirty());
    this.#queue = write.catch(() => {});
    return write;
  }

  async #writeIfDirty(): Promise<void> {
    if (!this.#dirty) return;
    const document: StateDocument = { version: STATE_VERSION, connections: this.#connections };
    const text = JSON.stringify(document, null, 2) + "\n";
    // Cleared before the await: a put during the write marks the store dirty again.
    this.#dirty = false;
    try {
      if (this.#legacyBytes) {
        const backup = await _backUp(this.location, this.#legacyBytes);
        this.#legacyBytes = undefined;
        this.#logger?.info("Saved the original tool's state file as {backup}", { backup });
      }
      await _writeAtomically(this.location, new TextEncoder().encode(text));
      this.#writes++;
    } catch (error) {
      this.#dirty = true;
      throw new StateError(
        `Cannot write the state file ${this.location}: ${_message(error)}`,
        { cause: error },
      );
    }
  }
}

interface _Loaded {
  connections: Record<string, ConnectionState>;
  legacyBytes: Uint8Array | undefined;
}

async function _lock(path: string, clock: Clock, timeoutMs: number): Promise<Deno.FsFile> {
  const lockPath = `${path}.lock`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(lockPath, { read: true, write: true, create: true });
  } catch (error) {
    throw new StateError(
      `Cannot use the state file ${path}: cannot open its lock file ${lockPath}: ${
        _message(error)
      }.`,
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
    await _writeAll(file, new TextEncoder().encode(`${Deno.pid}\n`));
    return file;
  } catch (error) {
    file.close();
    throw error;
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

async function _load(path: string, options: FileStoreOptions): Promise<_Loaded> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return { connections: {}, legacyBytes: undefined };
    }
    throw new StateError(`Cannot read the state file ${path}: ${_message(error)}.`, {
      cause: error,
    });
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
    throw damaged(`it is not valid JSON (${_message(error)})`);
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
    if (!parsed.success) throw damaged(describeIssues(parsed.error.issues));
    _checkIds(parsed.data, damaged);
    return { connections: parsed.data.connections, legacyBytes: undefined };
  }
  if (looksLikeLegacyDocument(value)) {
    const legacy = legacyDocumentSchema.safeParse(value);
    if (!legacy.success) {
      throw damaged(
        `it looks like the original tool's file, but ${describeIssues(legacy.error.issues)}`,
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
          minutes: options.legacyMarginMinutes ?? 60,
        },
      );
    }
    return { connections, legacyBytes: bytes };
  }
  const parsed = stateDocumentSchema.safeParse(value);
  throw damaged(
    "it is neither this program's state document nor the original tool's file" +
      (parsed.success ? "" : ` (${describeIssues(parsed.error.issues)})`),
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
      await _writeAll(file, bytes);
      await file.sync();
    } finally {
      file.close();
    }
    return backup;
  }
}

async function _writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    const file = await Deno.open(temp, { write: true, createNew: true });
    try {
      await _writeAll(file, bytes);
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  await _syncFolder(dirname(path));
}

// The rename is only durable once the folder is synced. Not every platform can open a folder
// (Windows cannot), and the document is complete either way, so failure is ignored.
async function _syncFolder(folder: string): Promise<void> {
  try {
    const dir = await Deno.open(folder, { read: true });
    try {
      await dir.sync();
    } finally {
      dir.close();
    }
  } catch {
    // Best effort, see above.
  }
}

async function _writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

function _message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
