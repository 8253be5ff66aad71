/**
 * The webhook receiver as the tests of its answers use it: the real handler over a memory
 * store's inboxes, recording every outcome and every entry it appended.
 */
import type { Clock } from "../../lib/clock/clock.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import type { InboxEntry } from "../../lib/state/store.ts";
import {
  type ReceiverOutcome,
  webhookReceiver,
  type WebhookRoute,
} from "../../lib/webhooks/receiver.ts";

/** An entry the receiver appended, with its connection. */
export interface RecordedJob {
  connectionId: string;
  event: InboxEntry;
}

/** A receiver with what it did: outcomes in order, the entries it appended. */
export interface RecordingReceiver {
  /** Filled by `settle`. */
  readonly jobs: RecordedJob[];
  outcomes: ReceiverOutcome[];
  store: MemoryStore;
  handler: (request: Request) => Promise<Response>;
  /** POSTs a form body to `path`; resolves with the status and text of the answer. */
  post(path: string, body: string, headers?: Record<string, string>): Promise<[number, string]>;
  /** Reads the inboxes into `jobs`. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** Builds a {@linkcode RecordingReceiver} for `routes` on `clock`; `close` it. */
export function recordingReceiver(routes: WebhookRoute[], clock: Clock): RecordingReceiver {
  const outcomes: ReceiverOutcome[] = [];
  const store = new MemoryStore({ clock });
  const handler = webhookReceiver({
    routes,
    inboxFor: (id) => store.inbox(id),
    clock,
    logger: quietLogger(),
    onOutcome: (outcome) => outcomes.push(outcome),
  });
  const r: RecordingReceiver = {
    jobs: [],
    outcomes,
    store,
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
    settle: async () => {
      // In place: callers may hold the array (a spread copy of this object).
      r.jobs.length = 0;
      for (const route of routes) {
        for (const item of await store.inbox(route.id).peek(10_000)) {
          r.jobs.push({ connectionId: route.id, event: item.entry });
        }
      }
    },
    close: () => store.close(),
  };
  return r;
}
