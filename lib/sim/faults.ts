/**
 * Fault injection shared by both simulators: a seeded plan of failures, plus faults queued
 * for the next requests, so tests can script exact sequences ("429, 429, then success").
 *
 * @module
 */
import { seededRandom } from "./random.ts";

/**
 * What a simulator can do instead of answering normally:
 * - a status code (403 bare, 408, 429, 500, 502, 503, 504): answered without doing the work;
 * - `"slow"`: the normal answer after `slowMs`;
 * - `"drop"`: the work is done, but the response dies after its headers, as when a
 *   connection is cut (the client sees a network error and cannot know the work happened).
 */
export type FaultKind = 403 | 408 | 429 | 500 | 502 | 503 | 504 | "slow" | "drop";

/** A random fault plan. */
export interface FaultPlan {
  /** Probability in [0, 1] that a request gets a fault. @default {0} */
  rate?: number;
  /** Kinds drawn uniformly when a fault happens. @default {[500]} */
  kinds?: FaultKind[];
  /** Seed of the draw. @default {1} */
  seed?: number;
  /** Delay of a `"slow"` fault, in milliseconds. @default {5000} */
  slowMs?: number;
  /** `Retry-After` seconds sent with 429/503 faults; none when undefined. */
  retryAfterSeconds?: number;
}

/** Decides, per request, whether and how a simulator misbehaves. */
export class FaultInjector {
  #plan: _CompletePlan;
  #random: () => number;
  #queue: FaultKind[] = [];
  /** Faults injected so far, by kind. */
  readonly injected = new Map<FaultKind, number>();

  constructor(plan: FaultPlan = {}) {
    this.#plan = _complete(plan);
    this.#random = seededRandom(this.#plan.seed);
  }

  /** Replaces the random plan (and reseeds it). */
  set(plan: FaultPlan): void {
    this.#plan = _complete(plan);
    this.#random = seededRandom(this.#plan.seed);
  }

  /** Forces the next requests to get these faults, in order, before the random plan. */
  queue(...kinds: FaultKind[]): void {
    this.#queue.push(...kinds);
  }

  /** `Retry-After` seconds to send with 429/503, if the plan has one. */
  get retryAfterSeconds(): number | undefined {
    return this.#plan.retryAfterSeconds;
  }

  /** Delay of a slow answer in milliseconds. */
  get slowMs(): number {
    return this.#plan.slowMs;
  }

  /** The fault for the request being served now, if any. */
  next(): FaultKind | undefined {
    let kind = this.#queue.shift();
    if (kind === undefined && this.#plan.rate > 0 && this.#random() < this.#plan.rate) {
      kind = this.#plan.kinds[Math.floor(this.#random() * this.#plan.kinds.length)];
    }
    if (kind !== undefined) this.injected.set(kind, (this.injected.get(kind) ?? 0) + 1);
    return kind;
  }
}

type _CompletePlan = Required<Omit<FaultPlan, "retryAfterSeconds">> & {
  retryAfterSeconds?: number;
};

function _complete(plan: FaultPlan): _CompletePlan {
  const rate = plan.rate ?? 0;
  if (rate < 0 || rate > 1) {
    throw new RangeError(`Cannot plan faults as 'rate' must be in [0, 1]: current value ${rate}`);
  }
  const kinds = plan.kinds ?? [500];
  if (kinds.length === 0) throw new RangeError("Cannot plan faults with an empty 'kinds' list");
  return {
    rate,
    kinds,
    seed: plan.seed ?? 1,
    slowMs: plan.slowMs ?? 5000,
    ...(plan.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: plan.retryAfterSeconds }),
  };
}

/**
 * A response whose body fails after the headers went out: the client sees a broken
 * connection, which is how the simulators play a dropped response.
 */
export function droppedResponse(): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.error(new Error("simulated dropped connection"));
    },
  });
  return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
}
