/**
 * The webhook receiver as the tests of its answers use it: the real handler over a real
 * in-process queue, recording every outcome and every job the queue hands on.
 */
import type { Clock } from "../../lib/clock/clock.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { InProcessWebhookQueue, type WebhookJob } from "../../lib/webhooks/queue.ts";
import {
  type ReceiverOutcome,
  webhookReceiver,
  type WebhookRoute,
} from "../../lib/webhooks/receiver.ts";

/** A receiver with what it did: outcomes in order, the jobs it queued. */
export interface RecordingReceiver {
  jobs: WebhookJob[];
  outcomes: ReceiverOutcome[];
  queue: InProcessWebhookQueue;
  handler: (request: Request) => Promise<Response>;
  /** POSTs a form body to `path`; resolves with the status and text of the answer. */
  post(path: string, body: string, headers?: Record<string, string>): Promise<[number, string]>;
}

/** Builds a {@linkcode RecordingReceiver} for `routes` on `clock`; close its `queue`. */
export function recordingReceiver(routes: WebhookRoute[], clock: Clock): RecordingReceiver {
  const jobs: WebhookJob[] = [];
  const outcomes: ReceiverOutcome[] = [];
  const queue = new InProcessWebhookQueue({
    clock,
    handler: (job) => {
      jobs.push(job);
      return Promise.resolve();
    },
  });
  const handler = webhookReceiver({
    routes,
    queue,
    clock,
    logger: quietLogger(),
    onOutcome: (outcome) => outcomes.push(outcome),
  });
  return {
    jobs,
    outcomes,
    queue,
    handler,
    post: async (path, body, headers = {}) => {
      const answer = await handler(
        new Request(`http://127.0.0.1${path}`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
          body,
        }),
      );
      return [answer.status, await answer.text()];
    },
  };
}
