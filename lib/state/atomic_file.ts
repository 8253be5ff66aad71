/**
 * Replacing a file so that a crash leaves the old one or the new one, whole: write a temporary
 * file beside it, sync it, rename it over, sync the folder. The state document, its journal,
 * the ledger files and the webhook inbox are all replaced this way.
 *
 * @module
 */
import { dirname } from "node:path";

/** Options of {@linkcode writeFileAtomically} and {@linkcode replaceFileKeepingOpen}. */
export interface AtomicWriteOptions {
  /**
   * The temporary file to write first. A fixed name suits a writer that holds a lock: a crash
   * leaves at most that one file, which the next write overwrites.
   * @default {`<path>.<8 random hex digits>.tmp`, created new}
   */
  tempPath?: string | undefined;
}

/**
 * Replaces (or creates) the file at `path` with `bytes` atomically and durably: the bytes (or
 * the pieces of an array or other iterable, one after the other and each written before the
 * next is taken, so a header and a large body need not be copied into one buffer, and a
 * generator may hand out one buffer refilled) are written to a temporary file in the same folder and synced, the
 * temporary file is renamed over `path`, and the folder is synced so the rename survives a
 * crash too. On failure the temporary file is removed and `path` is as it was.
 */
export async function writeFileAtomically(
  path: string,
  bytes: Uint8Array | Iterable<Uint8Array>,
  options: AtomicWriteOptions = {},
): Promise<void> {
  (await replaceFileKeepingOpen(path, bytes, options)).close();
}

/**
 * Replaces the file at `path` with `bytes` as {@linkcode writeFileAtomically} does, and returns
 * the new file open for writing, positioned after `bytes`: a journal goes on appending to the
 * file it has just put in place, without opening it again.
 */
export async function replaceFileKeepingOpen(
  path: string,
  bytes: Uint8Array | Iterable<Uint8Array>,
  options: AtomicWriteOptions = {},
): Promise<Deno.FsFile> {
  const temp = options.tempPath ?? `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const file = await Deno.open(
    temp,
    options.tempPath === undefined
      ? { write: true, createNew: true }
      : { write: true, create: true, truncate: true },
  );
  try {
    for (const piece of bytes instanceof Uint8Array ? [bytes] : bytes) await writeAll(file, piece);
    await file.sync();
    await Deno.rename(temp, path);
  } catch (error) {
    file.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  await syncFolder(dirname(path));
  return file;
}

/**
 * Syncs the folder `folder`, which makes a rename or removal in it durable. Not every platform
 * can open a folder (Windows cannot), and what was written is complete either way, so a
 * failure is ignored.
 */
export async function syncFolder(folder: string): Promise<void> {
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

/** Writes all of `bytes` at the file's position (one `write` may write only part). */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}
