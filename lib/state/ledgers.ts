/**
 * The three ledger backends (see {@linkcode Ledger}): in memory, in a folder of append-only
 * files beside the state file, and in Deno KV. All store ids as 16 bytes, so a million ids
 * cost 16 MB on disk and in memory while reconciling.
 *
 * @module
 */
import { dirname } from "node:path";
import { ID_BYTES, IdSet, packIds } from "./id_set.ts";
import type { Ledger } from "./store.ts";

/** A ledger that lives and dies with the process. */
export class MemoryLedger implements Ledger {
  #ids = new Set<string>();

  add(ids: readonly string[]): Promise<void> {
    return Promise.try(() => {
      packIds(ids); // validates the shape, like the other backends
      for (const id of ids) this.#ids.add(id);
    });
  }

  load(): Promise<IdSet> {
    return Promise.resolve(IdSet.of(this.#ids));
  }

  replace(ids: IdSet): Promise<void> {
    this.#ids = new Set(ids);
    return Promise.resolve();
  }
}

/**
 * A ledger in one file of packed ids, appended to and synced before each push. Appends may
 * repeat ids; `load` sorts and de-duplicates, and `replace` (after each reconciliation)
 * compacts the file by writing a new one and renaming it over the old.
 */
export class FileLedger implements Ledger {
  readonly path: string;
  // Appends and replacements run one at a time, in order.
  #queue: Promise<unknown> = Promise.resolve();
  // The folder is made once, not before every append.
  #folderMade = false;

  constructor(path: string) {
    this.path = path;
  }

  add(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    return this.#enqueue(async () => {
      const bytes = packIds(ids);
      await this.#makeFolder();
      const file = await Deno.open(this.path, { append: true, create: true });
      try {
        let written = 0;
        while (written < bytes.length) written += await file.write(bytes.subarray(written));
        await file.sync();
      } finally {
        file.close();
      }
    });
  }

  load(): Promise<IdSet> {
    return this.#enqueue(async () => {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(this.path);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return IdSet.empty();
        throw error;
      }
      // A crash during an append can leave a partial id at the end: it was never pushed.
      const whole = bytes.length - (bytes.length % ID_BYTES);
      return IdSet.fromPacked(bytes.subarray(0, whole));
    });
  }

  replace(ids: IdSet): Promise<void> {
    return this.#enqueue(async () => {
      await this.#makeFolder();
      const temp = `${this.path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
      try {
        await Deno.writeFile(temp, ids.bytes);
        const file = await Deno.open(temp, { write: true });
        try {
          await file.sync();
        } finally {
          file.close();
        }
        await Deno.rename(temp, this.path);
      } catch (error) {
        await Deno.remove(temp).catch(() => {});
        throw error;
      }
    });
  }

  async #makeFolder(): Promise<void> {
    if (this.#folderMade) return;
    await Deno.mkdir(dirname(this.path), { recursive: true });
    this.#folderMade = true;
  }

  #enqueue<T>(op: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(op);
    this.#queue = next.catch(() => {});
    return next;
  }
}

// Ids per KV value: 4,000 × 16 bytes stays under Deno KV's 64 KiB value limit.
const _KV_CHUNK_IDS = 4000;

/**
 * A ledger in Deno KV: chunks of packed ids under `["ledger", id, generation, seq]`, and the
 * current generation under `["ledger-generation", id]`. `replace` writes a new generation,
 * switches to it atomically and then deletes the old one, so a crash at any point leaves a
 * complete ledger. Appends and replacements of one connection happen under its lease, so no
 * two processes write one ledger at once.
 */
export class KvLedger implements Ledger {
  #kv: Deno.Kv;
  #id: string;
  #retry: <T>(op: () => Promise<T>) => Promise<T>;

  constructor(kv: Deno.Kv, id: string, retry: <T>(op: () => Promise<T>) => Promise<T>) {
    this.#kv = kv;
    this.#id = id;
    this.#retry = retry;
  }

  async add(ids: readonly string[]): Promise<void> {
    const generation = await this.#generation();
    for (let i = 0; i < ids.length; i += _KV_CHUNK_IDS) {
      const bytes = packIds(ids.slice(i, i + _KV_CHUNK_IDS));
      await this.#retry(() =>
        this.#kv.set(["ledger", this.#id, generation, crypto.randomUUID()], bytes)
      );
    }
  }

  async load(): Promise<IdSet> {
    const generation = await this.#generation();
    const chunks: Uint8Array[] = [];
    let total = 0;
    const entries = this.#kv.list<Uint8Array>({ prefix: ["ledger", this.#id, generation] });
    for await (const entry of entries) {
      chunks.push(entry.value);
      total += entry.value.length;
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const chunk of chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    return IdSet.fromPacked(all);
  }

  async replace(ids: IdSet): Promise<void> {
    const old = await this.#generation();
    const next = crypto.randomUUID();
    const chunkBytes = _KV_CHUNK_IDS * ID_BYTES;
    for (let i = 0; i < ids.bytes.length; i += chunkBytes) {
      const bytes = ids.bytes.slice(i, i + chunkBytes);
      const key = ["ledger", this.#id, next, String(i / chunkBytes).padStart(8, "0")];
      await this.#retry(() => this.#kv.set(key, bytes));
    }
    await this.#retry(() => this.#kv.set(["ledger-generation", this.#id], next));
    for await (const entry of this.#kv.list({ prefix: ["ledger", this.#id, old] })) {
      await this.#retry(() => this.#kv.delete(entry.key));
    }
  }

  async #generation(): Promise<string> {
    const entry = await this.#retry(() => this.#kv.get<string>(["ledger-generation", this.#id]));
    return entry.value ?? "0";
  }
}
