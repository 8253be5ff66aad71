/**
 * The three content-ledger backends (see {@linkcode Ledger}): in memory, in an append-only
 * file per connection beside the state file, and in Deno KV. All keep the packed 32-byte
 * records of `ledger_table.ts`, appended in order and replayed on load, and each reads the
 * id-only ledger of earlier releases (16 bytes an id) as entries of unknown version until its
 * first compaction replaces it.
 *
 * @module
 */
import { dirname } from "node:path";
import { errorText } from "../log/error_text.ts";
import { syncFolder, writeAll, writeFileAtomically } from "./atomic_file.ts";
import { commitFenced } from "./fence.ts";
import { ID_BYTES, IdSet } from "./id_set.ts";
import { concatRecords, LEDGER_RECORD_BYTES, LedgerTable } from "./ledger_table.ts";
import { type Fence, type Ledger, StateError } from "./store.ts";

/** A ledger that lives and dies with the process: its appended records in one buffer. */
export class MemoryLedger implements Ledger {
  #log: Uint8Array = new Uint8Array(0);
  #length = 0;

  load(): Promise<LedgerTable> {
    return Promise.resolve(LedgerTable.fromRecords(this.#log.subarray(0, this.#length)));
  }

  append(records: Uint8Array, fence: Fence): Promise<void> {
    // Promise.try: a lost fence or a bad buffer rejects, as the other backends' appends do.
    return Promise.try(() => {
      fence.assertHeld();
      _checkRecords(records);
      const length = this.#length + records.length;
      if (length > this.#log.length) {
        const grown = new Uint8Array(Math.max(length, Math.ceil(this.#log.length * 1.5)));
        grown.set(this.#log.subarray(0, this.#length));
        this.#log = grown;
      }
      this.#log.set(records, this.#length);
      this.#length = length;
    });
  }

  compact(table: LedgerTable, fence: Fence): Promise<void> {
    return Promise.try(() => {
      fence.assertHeld();
      this.#log = table.toRecords();
      this.#length = this.#log.length;
    });
  }
}

// The file's first 16 bytes: "mc2om-ledger", the format's version, flags, two zero bytes.
const _MAGIC = new TextEncoder().encode("mc2om-ledger");
const _VERSION = 2;
const _HEADER_BYTES = 16;
// Set by a compaction: the file holds the whole ledger, so an id-only file beside it (which a
// crash can leave between the compaction's rename and its removal) is stale.
const _COMPLETE = 1;

/** Appends waiting for the next write of a {@linkcode FileLedger}, each with its caller. */
interface _AppendGroup {
  items: { records: Uint8Array; fence: Fence; done: PromiseWithResolvers<void> }[];
}

/**
 * A ledger in one file, `<folder>/<encodeURIComponent(id)>.ledger`: a 16-byte header naming
 * the format, then packed records, each append synced before it resolves. Appends that arrive
 * while a write is in flight go together in the next one (one write, one sync: group commit),
 * and the file stays open while appends keep coming; it is closed once none is waiting (so a
 * ledger holds no file between bursts), before a compaction and after a failed write. A crash
 * during an append can leave part of a record at the end: loading ignores it and the next
 * append first cuts it off. `compact` writes the table as a new file and renames it over (see
 * `atomic_file.ts`). A connection synced by an earlier release has an id-only ledger
 * `<id>.ids` beside it (16 bytes an id, appended): it is read as legacy entries under the
 * records until the first compaction, which removes it.
 */
export class FileLedger implements Ledger {
  /** The ledger file. */
  readonly path: string;
  /** The id-only ledger of earlier releases, read until the first compaction. */
  readonly legacyPath: string;
  #id: string;
  #serial = new _Serial();
  // The file's header has been checked and its torn end cut off since this process last
  // failed to write it: appends go straight to its end.
  #checked = false;
  /** The file, open for appending, while appends keep coming. */
  #file: Deno.FsFile | undefined;
  /** Appends for the next write: it is queued (in `#serial`) but has not begun. */
  #group: _AppendGroup | undefined;
  #syncs = 0;

  /** The ledger of connection `connectionId` in `folder` (FileStore's `<state>.ledger`). */
  constructor(folder: string, connectionId: string) {
    const name = encodeURIComponent(connectionId);
    this.path = `${folder}/${name}.ledger`;
    this.legacyPath = `${folder}/${name}.ids`;
    this.#id = connectionId;
  }

  load(): Promise<LedgerTable> {
    return this.#serial.run(async () => {
      const bytes = await this.#read(this.path);
      const complete = bytes !== undefined && (this.#checkHeader(bytes) & _COMPLETE) !== 0;
      const legacy = complete ? undefined : await this.#read(this.legacyPath);
      const table = legacy === undefined ? LedgerTable.empty() : _fromLegacyBytes(legacy);
      // A torn last record is ignored by apply.
      if (bytes !== undefined) table.apply(bytes.subarray(_HEADER_BYTES));
      return table;
    });
  }

  /**
   * Number of syncs of the ledger file by appends since this ledger was made; with group
   * commit far fewer than the appends when they arrive together.
   */
  get syncs(): number {
    return this.#syncs;
  }

  append(records: Uint8Array, fence: Fence): Promise<void> {
    return Promise.try(() => {
      fence.assertHeld();
      _checkRecords(records);
      if (!this.#group) {
        const group: _AppendGroup = { items: [] };
        this.#group = group;
        void this.#serial.run(() => this.#write(group));
      }
      const done = Promise.withResolvers<void>();
      this.#group.items.push({ records, fence, done });
      return done.promise;
    });
  }

  /**
   * Writes a group of appends at the file's end in one write and one sync, then settles each
   * caller: resolved once its records are synced, rejected when its fence no longer holds
   * (its records are left out) or when the write fails (every caller of the group).
   */
  async #write(group: _AppendGroup): Promise<void> {
    if (this.#group === group) this.#group = undefined;
    let items = group.items;
    try {
      const file = items.some((item) => item.records.length > 0)
        ? await this.#openAtEnd()
        : undefined;
      // Right before the write: a caller whose lease went meanwhile writes nothing.
      items = items.filter(({ fence, done }) => {
        try {
          fence.assertHeld();
          return true;
        } catch (error) {
          done.reject(error);
          return false;
        }
      });
      const bytes = concatRecords(items.map((item) => item.records));
      if (file && bytes.length > 0) {
        try {
          await writeAll(file, bytes);
          await file.sync();
          this.#syncs++;
        } catch (error) {
          // The file may now end in part of these records: checked (and cut) again next time.
          this.#checked = false;
          this.#closeFile();
          throw error;
        }
      }
      for (const item of items) item.done.resolve();
    } catch (error) {
      for (const item of items) item.done.reject(error);
    } finally {
      // Nobody waiting: the file is closed before any caller goes on (they resume later).
      if (this.#group === undefined) this.#closeFile();
    }
  }

  #closeFile(): void {
    this.#file?.close();
    this.#file = undefined;
  }

  compact(table: LedgerTable, fence: Fence): Promise<void> {
    // Appends from now on go in a write after the compaction (LedgerTable.recordChunks: a
    // change to a bucket already written is in such an append).
    this.#group = undefined;
    return this.#serial.run(async () => {
      // The file is about to be replaced: appends open the new one.
      this.#closeFile();
      fence.assertHeld();
      const folder = dirname(this.path);
      await Deno.mkdir(folder, { recursive: true });
      // A failed write leaves the old file in place, whole: nothing to check again.
      // In pieces from one small buffer, not the whole table copied at once (recordChunks).
      await writeFileAtomically(this.path, _withHeader(_header(_COMPLETE), table.recordChunks()));
      this.#checked = true;
      // The new file says it is complete, so removing the id-only one only tidies up.
      try {
        await Deno.remove(this.legacyPath);
        await syncFolder(folder);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    });
  }

  /**
   * The file open for appending (every write goes to its end), created (with its header)
   * when missing; the one already open when there is one.
   */
  async #openAtEnd(): Promise<Deno.FsFile> {
    if (this.#file) return this.#file;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.path, { read: true, append: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      // Created whole, header and all, so no crash can leave a file with half a header.
      await Deno.mkdir(dirname(this.path), { recursive: true });
      await writeFileAtomically(this.path, _header(0));
      file = await Deno.open(this.path, { read: true, append: true });
      this.#checked = true;
    }
    try {
      if (!this.#checked) {
        const size = (await file.stat()).size;
        const header = new Uint8Array(Math.min(size, _HEADER_BYTES));
        for (let at = 0; at < header.length;) {
          const n = await file.read(header.subarray(at));
          if (n === null) break;
          at += n;
        }
        this.#checkHeader(header);
        const whole = size - ((size - _HEADER_BYTES) % LEDGER_RECORD_BYTES);
        // A record after a torn one would be read from the wrong place: cut the torn one off.
        if (whole < size) await file.truncate(whole);
        this.#checked = true;
      }
      this.#file = file;
      return file;
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /** The header's flags; a StateError naming the file when it is not such a ledger. */
  #checkHeader(bytes: Uint8Array): number {
    const magic = bytes.length >= _HEADER_BYTES && _MAGIC.every((b, i) => bytes[i] === b);
    if (!magic) {
      throw new StateError(
        `The ledger file ${this.path} of connection ${this.#id} is not a ledger of this ` +
          `program (it does not start with "mc2om-ledger"). It has not been changed. Move it ` +
          "aside: the connection then goes on without what it recorded, and its next " +
          "reconciliation starts the ledger again from Mailchimp's ids.",
      );
    }
    const version = bytes[_MAGIC.length]!;
    if (version !== _VERSION) {
      throw new StateError(
        `The ledger file ${this.path} of connection ${this.#id} has version ${version}, which ` +
          `this program does not know (it writes version ${_VERSION}); it may come from a ` +
          "newer release. It has not been changed. Use that release, or move the file aside.",
      );
    }
    return bytes[_MAGIC.length + 1]!;
  }

  async #read(path: string): Promise<Uint8Array | undefined> {
    try {
      return await Deno.readFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw new StateError(
        `Cannot read the ledger file ${path} of connection ${this.#id}: ${errorText(error)}.`,
        { cause: error },
      );
    }
  }
}

/** A ledger file's pieces: its header, then the records' pieces as they are packed. */
function* _withHeader(header: Uint8Array, records: Iterable<Uint8Array>): Generator<Uint8Array> {
  yield header;
  yield* records;
}

function _header(flags: number): Uint8Array {
  const header = new Uint8Array(_HEADER_BYTES);
  header.set(_MAGIC);
  header[_MAGIC.length] = _VERSION;
  header[_MAGIC.length + 1] = flags;
  return header;
}

// Records per KV value: 2,000 × 32 bytes stays under Deno KV's 64 KiB value limit.
const _KV_CHUNK_BYTES = 2000 * LEDGER_RECORD_BYTES;
// Deletions per atomic write, well under Deno KV's limit on mutations in one.
const _KV_DELETES = 100;

/**
 * A ledger in Deno KV: chunks of at most 2,000 packed records under
 * `["ledger2", id, generation, seq]` (`seq` zero-padded, increasing with every append), the
 * current generation under `["ledger2-generation", id]` ("0" until the first compaction).
 * `compact` writes the table as a new generation, switches to it in one atomic write and then
 * deletes every other chunk, so a crash at any point leaves one complete ledger. Every write is
 * fenced ({@linkcode commitFenced}): it carries the lease's check and stops with FencedError
 * once another process holds the connection. Until its first compaction, a connection synced
 * by an earlier release also has the id-only ledger `["ledger", id, generation, …]` (16 bytes
 * an id, its generation under `["ledger-generation", id]`): it is read as legacy entries
 * under the records, and deleted by that compaction.
 */
export class KvLedger implements Ledger {
  #kv: Deno.Kv;
  #id: string;
  #retry: <T>(op: () => Promise<T>) => Promise<T>;
  #serial = new _Serial();
  // Where the next append goes, found at the first load or append: the lease makes this
  // process the connection's only writer, so nobody else moves it.
  #generation: string | undefined;
  #nextSeq = 0;

  /** The ledger of connection `id` in `kv`, each KV operation run through `retry`. */
  constructor(kv: Deno.Kv, id: string, retry: <T>(op: () => Promise<T>) => Promise<T>) {
    this.#kv = kv;
    this.#id = id;
    this.#retry = retry;
  }

  load(): Promise<LedgerTable> {
    return this.#serial.run(async () => {
      const generation = await this.#retry(() =>
        this.#kv.get<string>(["ledger2-generation", this.#id])
      );
      // A generation is only ever set by a compaction, which left no legacy ledger to read.
      const table = generation.value === null ? await this.#loadLegacy() : LedgerTable.empty();
      const current = generation.value ?? "0";
      let next = 0;
      for await (const entry of this.#kv.list({ prefix: ["ledger2", this.#id, current] })) {
        table.apply(this.#chunk(entry));
        next = Number(entry.key[3]) + 1;
      }
      this.#generation = current;
      this.#nextSeq = next;
      return table;
    });
  }

  append(records: Uint8Array, fence: Fence): Promise<void> {
    return _append(this.#serial, records, fence, async () => {
      if (this.#generation === undefined) await this.#findEnd();
      for (let at = 0; at < records.length; at += _KV_CHUNK_BYTES) {
        const chunk = records.slice(at, at + _KV_CHUNK_BYTES);
        await commitFenced(fence, () => {
          const key = this.#chunkKey(this.#generation!, this.#nextSeq);
          // Only a new key: were there a second writer after all, it fails here (and looks
          // for the end again) instead of overwriting a chunk.
          return this.#kv.atomic().check({ key, versionstamp: null }).set(key, chunk);
        }, { retry: this.#retry, onConflict: () => this.#findEnd() });
        this.#nextSeq++;
      }
    });
  }

  compact(table: LedgerTable, fence: Fence): Promise<void> {
    return this.#serial.run(async () => {
      fence.assertHeld();
      const generationKey = ["ledger2-generation", this.#id];
      const before = await this.#retry(() => this.#kv.get<string>(generationKey));
      const next = crypto.randomUUID();
      const records = table.toRecords();
      let seq = 0;
      for (let at = 0; at < records.length; at += _KV_CHUNK_BYTES, seq++) {
        const key = this.#chunkKey(next, seq);
        const chunk = records.slice(at, at + _KV_CHUNK_BYTES);
        await commitFenced(fence, () => this.#kv.atomic().set(key, chunk), {
          retry: this.#retry,
        });
      }
      // The switch, only from the generation read above: a compaction nobody else undid.
      await commitFenced(fence, () => this.#kv.atomic().check(before).set(generationKey, next), {
        retry: this.#retry,
      });
      this.#generation = next;
      this.#nextSeq = seq;
      await this.#deleteAllBut(next, fence);
    });
  }

  /**
   * Deletes every chunk outside generation `keep` (the generation before, and any a
   * compaction wrote before a crash kept it from switching) and the id-only ledger. Listed in
   * two ranges around `keep`'s chunks, so those are not read again to be skipped.
   */
  async #deleteAllBut(keep: string, fence: Fence): Promise<void> {
    const prefix = ["ledger2", this.#id];
    const stale: Deno.KvKey[] = [["ledger-generation", this.#id]];
    const ranges: Deno.KvListSelector[] = [
      { prefix, end: [...prefix, keep] },
      // "\0" sorts after the end of a string, so this starts right after `keep`'s chunks.
      { prefix, start: [...prefix, `${keep}\0`] },
      { prefix: ["ledger", this.#id] },
    ];
    for (const selector of ranges) {
      for await (const entry of this.#kv.list(selector)) stale.push(entry.key);
    }
    for (let i = 0; i < stale.length; i += _KV_DELETES) {
      const keys = stale.slice(i, i + _KV_DELETES);
      await commitFenced(fence, () => {
        const atomic = this.#kv.atomic();
        for (const key of keys) atomic.delete(key);
        return atomic;
      }, { retry: this.#retry });
    }
  }

  /** Finds the current generation and the seq after its last chunk. */
  async #findEnd(): Promise<void> {
    const generation = await this.#retry(() =>
      this.#kv.get<string>(["ledger2-generation", this.#id])
    );
    const current = generation.value ?? "0";
    const last = await this.#retry(() =>
      Array.fromAsync(
        this.#kv.list({ prefix: ["ledger2", this.#id, current] }, { reverse: true, limit: 1 }),
      )
    );
    this.#generation = current;
    this.#nextSeq = last[0] === undefined ? 0 : Number(last[0].key[3]) + 1;
  }

  async #loadLegacy(): Promise<LedgerTable> {
    const generation = await this.#retry(() =>
      this.#kv.get<string>(["ledger-generation", this.#id])
    );
    const chunks: Uint8Array[] = [];
    const prefix = ["ledger", this.#id, generation.value ?? "0"];
    for await (const entry of this.#kv.list({ prefix })) {
      chunks.push(this.#chunk(entry));
    }
    if (chunks.length === 0) return LedgerTable.empty();
    const ids = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      ids.set(chunk, at);
      at += chunk.length;
    }
    return _fromLegacyBytes(ids);
  }

  #chunkKey(generation: string, seq: number): Deno.KvKey {
    return ["ledger2", this.#id, generation, String(seq).padStart(12, "0")];
  }

  #chunk(entry: Deno.KvEntry<unknown>): Uint8Array {
    if (entry.value instanceof Uint8Array) return entry.value;
    throw new StateError(
      `The ledger of connection ${this.#id} in Deno KV is damaged: ${
        JSON.stringify(entry.key)
      } does not hold packed bytes. Delete the keys under ["ledger2", "${this.#id}"] and ` +
        `["ledger", "${this.#id}"]: the next reconciliation starts the ledger again from ` +
        "Mailchimp's ids.",
    );
  }
}

/** Entries of an id-only ledger's bytes (a partial id at the end, cut by a crash, ignored). */
function _fromLegacyBytes(bytes: Uint8Array): LedgerTable {
  const whole = bytes.length - (bytes.length % ID_BYTES);
  return LedgerTable.fromLegacyIds(IdSet.fromPacked(bytes.subarray(0, whole)));
}

/**
 * Runs an append's `write` after the ledger's earlier operations, only while `fence` holds and
 * only for whole records (an empty append writes nothing).
 */
function _append(
  serial: _Serial,
  records: Uint8Array,
  fence: Fence,
  write: () => Promise<void>,
): Promise<void> {
  return serial.run(async () => {
    fence.assertHeld();
    _checkRecords(records);
    if (records.length > 0) await write();
  });
}

function _checkRecords(records: Uint8Array): void {
  if (records.length % LEDGER_RECORD_BYTES !== 0) {
    throw new RangeError(
      `Cannot append ${records.length} bytes to a ledger: it takes whole records of ` +
        `${LEDGER_RECORD_BYTES} bytes`,
    );
  }
}

/** Runs operations one at a time, in order: a ledger's appends and compactions never overlap. */
class _Serial {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(op: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(op);
    this.#tail = next.catch(() => {});
    return next;
  }
}
