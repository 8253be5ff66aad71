/**
 * Acting on one Mailchimp webhook event for one connection. The event only says which
 * members changed: each is fetched by its subscriber hash and pushed as Mailchimp holds it
 * now, so a stale, replayed or forged-looking event can at worst cause a needless push.
 *
 * The rules are the engine's own: an id goes into the ledger before its push (write-ahead);
 * a member Mailchimp serves malformed, or Ometria does not take, is quarantined (and the next
 * run retries it); a member Mailchimp answers 404 for — the old id of an `upemail`, a member
 * deleted (`unsubscribe` with `action=delete`) — is handled as reconciliation handles an
 * orphan: opted out at once with the same record, when this program pushed it before. Polling
 * stays the source of truth: nothing here moves a watermark or `fresh_as_of`.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { errorText } from "../log/error_text.ts";
import type { Member } from "../mailchimp/member.ts";
import { toOrphanRecord, toRecordJson } from "../mapping/contact.ts";
import { unfenced } from "../state/fence.ts";
import { LedgerTable } from "../state/ledger_table.ts";
import { type QuarantineFinding, record } from "../state/transitions.ts";
import type { WebhookEvent } from "../webhooks/event.ts";
import type { ConnectionContext } from "./ports.ts";
import { pushInOrder, rejectedRecords } from "./push_in_order.ts";
import { writeAheadRecords } from "./run_connection.ts";

/** Options of {@linkcode actOnWebhookEvent}. */
export interface WebhookEventOptions extends ConnectionContext {
  event: WebhookEvent;
  /** When the event was received (our clock), recorded as `last_webhook.received_at`. */
  receivedAtMs: number;
  signal?: AbortSignal;
}

/** What acting on one event did. */
export interface WebhookEventResult {
  /**
   * `pushed`: every member named is in Ometria as it is now (or opted out); `quarantined`:
   * some were held back; `ignored`: the event names no member (`campaign`); `failed`: an API
   * failed (polling covers the change).
   */
  outcome: "pushed" | "quarantined" | "ignored" | "failed";
  /** Members pushed. */
  pushed: number;
  /** Gone members opted out. */
  optedOut: number;
  error?: string;
}

/** Acts on one event; never throws for API failures (they become `failed` and are logged). */
export async function actOnWebhookEvent(o: WebhookEventOptions): Promise<WebhookEventResult> {
  const { connection, event, store, clock, signal } = o;
  const log = o.logger.with({ connection: connection.id, list_id: connection.listId });
  const endpoint = o.endpoint ?? "push";
  const result: WebhookEventResult = { outcome: "pushed", pushed: 0, optedOut: 0 };
  if (event.memberIds.length === 0) {
    result.outcome = "ignored";
  } else {
    try {
      const members: Member[] = [];
      const gone: string[] = [];
      const hold: QuarantineFinding[] = [];
      for (const id of event.memberIds) {
        signal?.throwIfAborted();
        const now = await o.mailchimp.getMember(connection.listId, id, signal);
        if (now === undefined) gone.push(id);
        else if ("member" in now) members.push(now.member);
        else hold.push({ id: now.invalid.id ?? id, reason: now.invalid.reason });
      }
      const ledger = store.ledger(connection.id);
      if (members.length > 0) {
        // Write-ahead, as in a run: the ledger never lacks an id Ometria may hold.
        // Transitional: an event does not carry its connection's lease and fence yet.
        await ledger.append(writeAheadRecords(members), unfenced(connection.id));
        const refused = new Set<string>();
        await pushInOrder(members, 0, {
          sink: o.ometria,
          endpoint,
          connectionId: connection.id,
          listId: connection.listId,
          concurrency: 1,
          mapping: o.mapping,
          signal,
          onAcknowledged: () => Promise.resolve(),
          onRejected: (_label, rejected) => {
            for (const r of rejected) {
              refused.add(r.id);
              hold.push(r);
            }
          },
        });
        result.pushed = members.filter((m) => !refused.has(m.id)).length;
      }
      if (gone.length > 0) result.optedOut = await _optOut(gone, o, endpoint, hold, log);
      const pushedIds = members.map((m) => m.id).filter((id) => !hold.some((h) => h.id === id));
      const state = await store.get(connection.id);
      const held = new Set(state?.quarantine.flatMap((q) => q.id ?? []) ?? []);
      // A member that went through (or is gone) leaves quarantine, as after a run's retry.
      const release = [...pushedIds, ...gone].filter((id) => held.has(id));
      if (hold.length > 0 || release.length > 0) {
        for (const h of hold) {
          log.warn("Member {id} quarantined: {reason}", {
            id: h.id ?? "(no id)",
            reason: h.reason,
          });
        }
        await record(store, connection, {
          type: "quarantine",
          at: clock.now(),
          add: hold,
          release,
        });
      }
      if (hold.length > 0) result.outcome = "quarantined";
    } catch (error) {
      result.outcome = "failed";
      result.error = errorText(error, o.secrets ?? []);
      log.warn("Webhook {type} not acted on (polling will cover it): {error}", {
        type: event.type,
        error: result.error,
      });
    }
  }
  await record(store, connection, {
    type: "webhook",
    at: o.receivedAtMs,
    firedAt: event.firedAtMs,
    eventType: event.type,
  });
  log.info("Webhook {type}: {outcome}, {pushed} pushed, {optedOut} opted out", {
    type: event.type,
    outcome: result.outcome,
    pushed: result.pushed,
    optedOut: result.optedOut,
  });
  return result;
}

/**
 * Opts out the ids Mailchimp answered 404 for that this program pushed before (or all of
 * them while the connection has no ledger yet: a contact left opted in is the worse error),
 * and takes them out of the ledger when nobody else is working on the connection (the
 * lease): otherwise the next reconciliation does, finding them gone again.
 */
async function _optOut(
  gone: string[],
  o: WebhookEventOptions,
  endpoint: "push" | "record",
  hold: QuarantineFinding[],
  log: Logger,
): Promise<number> {
  const { connection, store, clock } = o;
  const ledger = store.ledger(connection.id);
  const pushedBefore = await ledger.load();
  const orphans = gone.filter((id) =>
    pushedBefore.liveSize === 0 || pushedBefore.get(id)?.gone === false
  );
  if (orphans.length === 0) return 0;
  const at = new Date(clock.now()).toISOString();
  const records = orphans.map((id) => toOrphanRecord(id, connection.listId, endpoint, at));
  const answer = await o.ometria.pushJson(records.map(toRecordJson), {
    label: `${connection.id} webhook orphans`,
    ...(o.signal ? { signal: o.signal } : {}),
  });
  const refused = new Set<string>();
  if (answer.rejected > 0) {
    for (const r of rejectedRecords(records, answer)) {
      refused.add(r.id);
      hold.push(r);
    }
  }
  const optedOut = orphans.filter((id) => !refused.has(id));
  if (optedOut.length > 0) {
    log.warn("Opted out {count} contact(s) gone from Mailchimp (webhook): {ids}", {
      count: optedOut.length,
      ids: optedOut.join(", "),
    });
    const lease = await store.acquire(connection.id);
    if (lease) {
      try {
        const removals = LedgerTable.packRecords(optedOut.map((id) => [id, undefined]));
        await ledger.append(removals, lease.fence);
      } finally {
        await lease.release();
      }
    }
  }
  return optedOut.length;
}
