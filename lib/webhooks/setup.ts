/**
 * Wires the webhook receiver to a sync service: the queue that suits the state store, and
 * the handler that routes and counts. Shared by the daemon (its own `WEBHOOK_PORT` listener)
 * and Deno Deploy (the one Deploy handler routes `/webhooks/…` here).
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { z } from "zod";
import type { Clock } from "../clock/clock.ts";
import type { ConnectionConfig } from "../config/config.ts";
import { errorText } from "../log/error_text.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { StateStore } from "../state/store.ts";
import { WEBHOOK_TYPES } from "./event.ts";
import {
  InProcessWebhookQueue,
  type KvQueueBackend,
  KvWebhookQueue,
  type WebhookJob,
  type WebhookJobHandler,
  type WebhookQueue,
} from "./queue.ts";
import { webhookReceiver } from "./receiver.ts";

const _jobSchema = z.object({
  connectionId: z.string(),
  receivedAtMs: z.number(),
  event: z.object({
    type: z.enum(WEBHOOK_TYPES),
    firedAtMs: z.number().nullable(),
    firedAtText: z.string(),
    listId: z.string().nullable(),
    action: z.enum(["unsub", "delete"]).nullable(),
    memberIds: z.array(z.string().regex(/^[0-9a-f]{32}$/)),
  }),
});

/** True when `value` (e.g. read back from a Deno KV queue) is a usable {@linkcode WebhookJob}. */
export function isWebhookJob(value: unknown): value is WebhookJob {
  return _jobSchema.safeParse(value).success;
}

/** Options of {@linkcode startWebhooks}. */
export interface StartWebhooksOptions {
  connections: readonly ConnectionConfig[];
  store: StateStore;
  /** Acts on one job (`SyncService.handleWebhook`). */
  handle: WebhookJobHandler;
  clock: Clock;
  logger: Logger;
  metrics?: Metrics | undefined;
  /** Secrets removed from logged errors. */
  secrets?: readonly string[];
}

/** A started receiver: its handler and its queue. */
export interface StartedWebhooks {
  handler: (request: Request) => Promise<Response>;
  queue: WebhookQueue;
}

/**
 * Builds the queue (Deno KV's when the store is Deno KV: durable before the 200 and shared by
 * isolates; else bounded in this process) and the receiver's handler, counting every
 * outcome in `metrics`.
 */
export function startWebhooks(o: StartWebhooksOptions): StartedWebhooks {
  const onError = (job: WebhookJob, error: unknown) =>
    o.logger.error("Webhook for {connection} could not be acted on: {error}", {
      connection: job.connectionId,
      error: errorText(error, o.secrets ?? []),
    });
  const queue: WebhookQueue = _isKvBackend(o.store)
    ? new KvWebhookQueue(o.store, { handler: o.handle, isJob: isWebhookJob, onError })
    : new InProcessWebhookQueue({ handler: o.handle, clock: o.clock, onError });
  const handler = webhookReceiver({
    routes: o.connections.map((c) => ({ id: c.id, listId: c.listId, secret: c.webhookSecret })),
    queue,
    clock: o.clock,
    logger: o.logger,
    onOutcome: (outcome) => o.metrics?.recordWebhook(undefined, { outcome }),
  });
  return { handler, queue };
}

function _isKvBackend(store: StateStore): store is StateStore & KvQueueBackend {
  return store.kind === "kv" && "enqueueOnce" in store && "listenQueue" in store;
}
