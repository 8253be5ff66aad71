/**
 * Helpers around {@linkcode Fence}: the fence of a writer that holds no lease yet, and the one
 * way an atomic Deno KV write of a connection carries its fence.
 *
 * @module
 */
import { type Fence, FencedError, StateError } from "./store.ts";

/**
 * A fence that never stops a write: `assertHeld` never throws, its signal never aborts, and it
 * adds no check to Deno KV writes. Transitional: it serves the engine's call sites that do not
 * carry their lease's fence yet (a run, a reconciliation, a webhook event), so they write as
 * they did before fences existed; each goes once its caller passes the lease's fence down.
 */
export function unfenced(connectionId: string): Fence {
  return {
    connectionId,
    assertHeld(): void {},
    signal: new AbortController().signal,
  };
}

/** Options of {@linkcode commitFenced}. */
export interface FencedCommitOptions {
  /**
   * Runs each commit, e.g. KvStore's wait on a busy local database.
   * @default {running it once}
   */
  retry?: (<T>(op: () => Promise<T>) => Promise<T>) | undefined;
  /**
   * How many commits may fail on checks while the fence still holds (a renewal moved the
   * lease's versionstamp in between, or a check of the caller's own failed) before giving up
   * with a {@linkcode StateError}.
   * @default {10}
   */
  attempts?: number | undefined;
  /**
   * Called after a commit failed while the fence still holds, before the next attempt: where
   * the caller reads again what its own checks are about.
   */
  onConflict?: (() => Promise<void>) | undefined;
}

/**
 * Commits the atomic write that `build` makes (called again for every attempt, with the
 * attempt's number from 1), only while `fence` holds: `fence.assertHeld()` runs before each
 * attempt, and the fence's `kvCheck` is added to each one when it has one. When a commit
 * fails on its checks, `fence.recheck()` says whether the lease is still this holder's: then
 * the write is tried again with a fresh check, otherwise {@linkcode FencedError} is thrown and
 * nothing was written. A fence without `recheck` (one that adds no check) only retries, for
 * the caller's own checks (and `onConflict` lets it read them again).
 */
export async function commitFenced(
  fence: Fence,
  build: (attempt: number) => Deno.AtomicOperation,
  options: FencedCommitOptions = {},
): Promise<Deno.KvCommitResult> {
  const retry = options.retry ?? (<T>(op: () => Promise<T>) => op());
  const attempts = options.attempts ?? 10;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    fence.assertHeld();
    const result = await retry(() => {
      const atomic = build(attempt);
      if (fence.kvCheck) atomic.check(fence.kvCheck());
      return atomic.commit();
    });
    if (result.ok) return result;
    if (fence.recheck && !(await fence.recheck())) {
      throw new FencedError(
        `Cannot write connection ${fence.connectionId}: its lease is no longer this ` +
          "process's (another process may be writing it now)",
      );
    }
    if (attempt < attempts) await options.onConflict?.();
  }
  throw new StateError(
    `Cannot write connection ${fence.connectionId} in Deno KV: the write's checks failed ` +
      `${attempts} times while its lease held`,
  );
}
