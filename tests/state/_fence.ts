/**
 * A fence for the state tests: a plain object implementing {@linkcode Fence}, held until the
 * test calls `lose()`, optionally with the Deno KV parts a test chooses.
 *
 * @module
 */
import { type Fence, FencedError } from "../../lib/state/store.ts";

/** A {@linkcode Fence} the test controls. */
export interface TestFence extends Fence {
  /** Ends the fence: `assertHeld` throws and `signal` aborts from now on. */
  lose(): void;
  /** How often `recheck` was called. */
  readonly rechecks: number;
}

/** Options of {@linkcode testFence}: the Deno KV parts, when the test wants them. */
export interface TestFenceOptions {
  kvCheck?: () => Deno.AtomicCheck;
  recheck?: () => Promise<boolean>;
}

/** A fence of connection `connectionId`, held until `lose()`. */
export function testFence(connectionId: string, options: TestFenceOptions = {}): TestFence {
  const controller = new AbortController();
  let rechecks = 0;
  const fence: TestFence = {
    connectionId,
    signal: controller.signal,
    get rechecks() {
      return rechecks;
    },
    assertHeld(): void {
      controller.signal.throwIfAborted();
    },
    lose(): void {
      controller.abort(new FencedError(`The test took the lease of ${connectionId} away`));
    },
  };
  if (options.kvCheck) fence.kvCheck = options.kvCheck;
  const recheck = options.recheck;
  if (recheck) {
    fence.recheck = () => {
      rechecks++;
      return recheck();
    };
  }
  return fence;
}
