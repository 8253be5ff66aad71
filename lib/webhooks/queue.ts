/**
 * Where received webhook events wait to be acted on. The receiver answers Mailchimp only
 * once an event is queued (or known to be a duplicate), and acting on it happens behind the
 * answer, so a slow Mailchimp or Ometria never makes Mailchimp's 10-second delivery time out.
 *
 * Two queues, one interface: with Deno KV state (`kv:`, and always on Deno Deploy) a Deno KV
 * queue, which survives a crash and is shared by isolates; with the file or memory state a
 * bounded queue in this process. Losing the in-process queue in a crash loses nothing that
 * matters: polling still covers every change the events were about.
 *
 * @module
 */
import type { Clock } from "../clock/clock.ts";
import type { WebhookEvent } from "./event.ts";

/** One received event, for one connection, as it travels through a queue. */
export interface WebhookJob {
  connectionId: string;
  /** When the receiver took it (our clock), epoch ms. */
  receivedAtMs: number;
  event: WebhookEvent;
}

/** What happened to an offered job. */
export type OfferOutcome = "queued" | "duplicate" | "full";

/** Acts on one job; a throw is logged by the queue, never retried by the in-process one. */
export type WebhookJobHandler = (job: WebhookJob) => Promise<void>;

/** A queue of webhook jobs with de-duplication. */
export interface WebhookQueue {
  /** `kv` or `memory`, for the log line at start. */
  readonly kind: "kv" | "memory";
  /**
   * Queues `job` unless a job with `key` was queued within the de-duplication window;
   * resolves once it is queued (durably, for the KV queue). `full`: the bounded queue has no
   * room (the receiver answers 503, and Mailchimp retries).
   */
  offer(job: WebhookJob, key: string): Promise<OfferOutcome>;
  /** Resolves when every job this process queued has been handled (tests, shutdown). */
  idle(): Promise<void>;
  /** Stops taking jobs and waits for those being handled. */
  close(): Promise<void>;
}

/** How long a delivery is remembered for de-duplication (Mailchimp retries for 75 minutes). */
export const DEDUPE_WINDOW_MS = 90 * 60_000;

/**
 * Remembers keys for a window on a clock, with at most `max` keys (oldest forgotten first),
 * so a flood of distinct events cannot grow memory without bound.
 */
export class Deduper {
  readonly #clock: Clock;
  readonly #windowMs: number;
  readonly #max: number;
  /** Key → when it stops counting; Map order is insertion order, oldest first. */
  readonly #seen = new Map<string, number>();

  constructor(clock: Clock, options: { windowMs?: number; max?: number } = {}) {
    this.#clock = clock;
    this.#windowMs = options.windowMs ?? DEDUPE_WINDOW_MS;
    this.#max = options.max ?? 100_000;
  }

  /** True the first time `key` is seen within the window (and remembers it), else false. */
  first(key: string): boolean {
    const now = this.#clock.now();
    for (const [k, until] of this.#seen) {
      if (until > now && this.#seen.size < this.#max) break;
      this.#seen.delete(k);
    }
    const until = this.#seen.get(key);
    if (until !== undefined && until > now) return false;
    this.#seen.delete(key);
    this.#seen.set(key, now + this.#windowMs);
    return true;
  }

  /** Forgets `key` (a job that could not be queued may be delivered again). */
  forget(key: string): void {
    this.#seen.delete(key);
  }
}

/** Options of {@linkcode InProcessWebhookQueue}. */
export interface InProcessWebhookQueueOptions {
  handler: WebhookJobHandler;
  clock: Clock;
  /** Jobs waiting at most; more are refused (`full`). @default {1000} */
  capacity?: number;
  /** Jobs handled at once (each holds a Mailchimp and an Ometria request). @default {4} */
  concurrency?: number;
  /** Called when a handler throws. */
  onError?: (job: WebhookJob, error: unknown) => void;
  /** @default {DEDUPE_WINDOW_MS} */
  dedupeWindowMs?: number;
}

/**
 * A bounded queue in this process, for the file and memory state. Bounded, because an
 * endless backlog would only delay events that polling delivers anyway, while its memory
 * grows.
 */
export class InProcessWebhookQueue implements WebhookQueue {
  readonly kind = "memory" as const;
  readonly #o: InProcessWebhookQueueOptions;
  readonly #dedupe: Deduper;
  readonly #jobs: WebhookJob[] = [];
  #active = 0;
  #closed = false;
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(options: InProcessWebhookQueueOptions) {
    this.#o = options;
    const windowMs = options.dedupeWindowMs ?? DEDUPE_WINDOW_MS;
    this.#dedupe = new Deduper(options.clock, { windowMs });
  }

  offer(job: WebhookJob, key: string): Promise<OfferOutcome> {
    if (this.#closed || this.#jobs.length >= (this.#o.capacity ?? 1000)) {
      return Promise.resolve("full");
    }
    if (!this.#dedupe.first(key)) return Promise.resolve("duplicate");
    this.#jobs.push(job);
    this.#pump();
    return Promise.resolve("queued");
  }

  idle(): Promise<void> {
    if (this.#jobs.length === 0 && this.#active === 0) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  async close(): Promise<void> {
    this.#closed = true;
    // Waiting jobs are dropped: polling covers them.
    this.#jobs.length = 0;
    await this.idle();
  }

  #pump(): void {
    while (this.#active < (this.#o.concurrency ?? 4) && this.#jobs.length > 0) {
      const job = this.#jobs.shift()!;
      this.#active++;
      this.#o.handler(job).catch((error) => this.#o.onError?.(job, error)).finally(() => {
        this.#active--;
        this.#pump();
        if (this.#active === 0 && this.#jobs.length === 0 && this.#idle) {
          this.#idle.resolve();
          this.#idle = undefined;
        }
      });
    }
  }
}

/** The part of the Deno KV store the KV queue uses (see `KvStore`). */
export interface KvQueueBackend {
  enqueueOnce(dedupeKey: string, value: unknown, windowMs: number): Promise<boolean>;
  listenQueue(handler: (value: unknown) => Promise<void>): Promise<void>;
}

/** Options of {@linkcode KvWebhookQueue}. */
export interface KvWebhookQueueOptions {
  handler: WebhookJobHandler;
  /**
   * Checks a dequeued value is a job (values come from a database other versions of this
   * program may share); an unusable one is dropped.
   */
  isJob: (value: unknown) => value is WebhookJob;
  onError?: (job: WebhookJob, error: unknown) => void;
  /** @default {DEDUPE_WINDOW_MS} */
  dedupeWindowMs?: number;
}

/**
 * A Deno KV queue: a job is durable once `offer` resolves, de-duplicated across isolates in
 * the same atomic write, and handed to whichever isolate listens. A handler that throws is
 * retried by Deno KV; the handler itself only throws for failures worth a retry.
 */
export class KvWebhookQueue implements WebhookQueue {
  readonly kind = "kv" as const;
  readonly #backend: KvQueueBackend;
  readonly #o: KvWebhookQueueOptions;
  #pending = 0;
  #running = new Set<Promise<void>>();
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;
  readonly #listening: Promise<void>;

  constructor(backend: KvQueueBackend, options: KvWebhookQueueOptions) {
    this.#backend = backend;
    this.#o = options;
    this.#listening = backend.listenQueue(async (value) => {
      if (!options.isJob(value)) return;
      const run = options.handler(value);
      const tracked = run.catch(() => {});
      this.#running.add(tracked);
      try {
        await run;
      } catch (error) {
        options.onError?.(value, error);
        throw error;
      } finally {
        this.#running.delete(tracked);
        this.#done();
      }
    }).catch(() => {});
  }

  async offer(job: WebhookJob, key: string): Promise<OfferOutcome> {
    this.#pending++;
    let queued = false;
    try {
      queued = await this.#backend.enqueueOnce(
        key,
        job,
        this.#o.dedupeWindowMs ?? DEDUPE_WINDOW_MS,
      );
    } finally {
      if (!queued) this.#done();
    }
    return queued ? "queued" : "duplicate";
  }

  idle(): Promise<void> {
    if (this.#pending <= 0) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  /**
   * Waits for the jobs this process is handling; jobs still queued stay in Deno KV for the
   * next listener. The listener itself ends when the store closes.
   */
  async close(): Promise<void> {
    await Promise.all(this.#running);
  }

  /** Resolves when the store this queue listens on is closed. */
  get listening(): Promise<void> {
    return this.#listening;
  }

  #done(): void {
    this.#pending = Math.max(0, this.#pending - 1);
    if (this.#pending === 0 && this.#idle) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }
}
