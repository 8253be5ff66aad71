/**
 * Chooses and opens the state backend named by `--state`.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import { FileStore } from "./file_store.ts";
import { KvStore } from "./kv_store.ts";
import { MemoryStore } from "./memory_store.ts";
import type { StateStore } from "./store.ts";

/** The state file used when `--state` is not given and files may be used. */
export const DEFAULT_STATE_PATH = "./sync_jobs.json";

/** Options of {@linkcode openStore}. */
export interface OpenStoreOptions {
  /** Handed to the store (coalescing, lock waits, leases). */
  clock: Clock;
  /** Where the store reports migrations, failed background writes and the memory warning. */
  logger: Logger;
  /**
   * Whether the process may read and write files (the caller checks its permissions). When it
   * may not and no `--state` is given, state is kept in memory.
   */
  canUseFiles: boolean;
  /** Open a state file without its lock and never write it (`status`). @default {false} */
  readOnly?: boolean;
  /** How long a Deno KV lease lasts without renewal, in ms. @default {DEFAULT_LEASE_MS} */
  leaseMs?: number | undefined;
}

/**
 * Opens the store named by `spec`: `kv:` (the platform's default Deno KV) or `kv:<path>` for
 * {@linkcode KvStore}, `memory:` for {@linkcode MemoryStore}, anything else a file path for
 * {@linkcode FileStore}. Without a spec it uses `./sync_jobs.json`, or memory with a warning
 * when files cannot be used. Throws {@linkcode StateError} when the store cannot be opened.
 */
export async function openStore(
  spec: string | undefined,
  options: OpenStoreOptions,
): Promise<StateStore> {
  const { clock, logger } = options;
  const readOnly = options.readOnly ?? false;
  if (spec === undefined) {
    if (options.canUseFiles) {
      return await FileStore.open(DEFAULT_STATE_PATH, { clock, logger, readOnly });
    }
    logger.warn(
      "State is kept in memory only: progress will not survive a restart. Run with " +
        "--allow-read --allow-write (for ./sync_jobs.json, or for the path of --state <file> " +
        "or --state kv:<path>) to keep it.",
    );
    return new MemoryStore();
  }
  if (spec === "memory:") return new MemoryStore();
  if (spec.startsWith("kv:")) {
    const path = spec.slice("kv:".length);
    return await KvStore.open(path === "" ? undefined : path, {
      clock,
      logger,
      leaseMs: options.leaseMs,
    });
  }
  return await FileStore.open(spec, { clock, logger, readOnly });
}
