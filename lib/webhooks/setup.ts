/**
 * Wires the webhook receiver to the state store: each connection's events go to its inbox
 * (durable before the 200), and the connection's writer drains it (writer/writer_pool.ts,
 * engine/inbox_events.ts). Shared by the daemon (its own `WEBHOOK_PORT` listener) and Deno
 * Deploy (the one Deploy handler routes `/webhooks/…` here).
 *
 * @module
 */
import type { Clock } from "../clock/clock.ts";
import type { Logger } from "@logtape/logtape";
import type { ConnectionConfig } from "../config/config.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { StateStore } from "../state/store.ts";
import { webhookReceiver, webhookRoutes } from "./receiver.ts";

/** Options of {@linkcode startWebhooks}. */
export interface StartWebhooksOptions {
  connections: readonly ConnectionConfig[];
  store: StateStore;
  clock: Clock;
  logger: Logger;
  metrics?: Metrics | undefined;
}

/**
 * The receiver's handler for `connections`, appending to their inboxes in `store` and
 * counting every outcome in `metrics`. Whatever drains the inboxes (a sync service over the
 * same store) must run in this process: the store wakes its writers on every append.
 */
export function startWebhooks(o: StartWebhooksOptions): (request: Request) => Promise<Response> {
  return webhookReceiver({
    routes: webhookRoutes(o.connections),
    inboxFor: (id) => o.store.inbox(id),
    clock: o.clock,
    logger: o.logger,
    onOutcome: (outcome) => o.metrics?.recordWebhook(undefined, { outcome }),
  });
}
