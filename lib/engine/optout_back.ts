/**
 * Ometria → Mailchimp unsubscribes, for a connection with `optout_back`: one poll of
 * Ometria's unsubscribes listing (`GET /v2/unsubscribes`) through the connection's writer.
 * Each unsubscribe of a contact this connection pushed sets its Mailchimp member to
 * `unsubscribed` (the members endpoint's PATCH), once, and the member as Mailchimp answers it
 * goes to Ometria through the gate, so the copy stays identical and the next poll of the
 * members finds nothing to push.
 *
 * **Never a resubscribe.** The only write is `status: "unsubscribed"`: Mailchimp refuses API
 * resubscribes without double opt-in ("Member In Compliance State"), and whether someone is
 * subscribed again is theirs to decide, in Mailchimp.
 *
 * **Which member.** By the listing's contact id when an entry names this connection's
 * `@collection` (`mailchimp-<list_id>`; the contact id is the subscriber hash), else by the MD5
 * of the lowercased address, the subscriber hash, checked against the connection's ledger: an
 * address this connection never pushed is another source's, counted and left alone.
 *
 * **Crash-safe like the members window.** The watermark (Ometria's time) moves only past a
 * slice of the listing (an hour at most) whose every unsubscribe was acted on; each member set
 * to unsubscribed is recorded as it is, and a poll reads from the watermark less a lookback
 * (events listed late), skipping what it recorded. A crash costs at most one repeated PATCH,
 * which leaves the member as it was.
 *
 * **No loop.** Ometria does not list unsubscribes made through its API, so the opt-outs this
 * program pushes never come back here; the webhook `webhooks register` makes has
 * `sources.api` off, so this PATCH raises no webhook; and the opt-out, when it reaches Ometria,
 * is true there already.
 *
 * @module
 */
import { MailchimpError } from "../mailchimp/errors.ts";
import type { MemberLookup } from "../mailchimp/client.ts";
import { subscriberHash } from "../mailchimp/member.ts";
import { collectionFor } from "../mapping/contact.ts";
import { OMETRIA_EMAIL_UNSUBSCRIBE_TYPES, type OmetriaUnsubscribe } from "../ometria/client.ts";
import { errorText } from "../log/error_text.ts";
import { isMemberId } from "../state/id_set.ts";
import type { LedgerTable } from "../state/ledger_table.ts";
import type { OptoutDone } from "../state/schema.ts";
import type { GatedRecord } from "../writer/connection_writer.ts";
import { rejectedRecords, serializeMembers } from "./push_in_order.ts";
import type { EngineContext, MembersSource } from "./ports.ts";

/** What a poll needs of the Ometria client. */
export interface UnsubscribesSource {
  /** One type's unsubscribes stamped in `[sinceMs, beforeMs)`. */
  unsubscribes(
    q: { sinceMs: number; beforeMs: number; type: string },
    signal?: AbortSignal,
  ): Promise<OmetriaUnsubscribe[]>;
}

/** What a poll needs of the Mailchimp client beyond reading. */
export interface MemberOptOut extends MembersSource {
  /** Sets the member to `unsubscribed`; the member as it is then, or `gone`. */
  unsubscribeMember(
    listId: string,
    id: string,
    options?: { signal?: AbortSignal | undefined; beforeAttempt?: (() => void) | undefined },
  ): Promise<MemberLookup>;
}

/** Options of {@linkcode pollOptouts}. */
export interface OptoutBackOptions extends EngineContext {
  mailchimp: MemberOptOut;
  ometria: UnsubscribesSource;
  /** Stops between requests; what was recorded stays. */
  signal?: AbortSignal | undefined;
  /** How far before the watermark each poll reads again. @default {OPTOUT_BACK_LOOKBACK_MS} */
  lookbackMs?: number;
}

/** What one poll did. */
export interface OptoutBackResult {
  outcome: "ok" | "failed" | "aborted";
  /** Members set to unsubscribed in Mailchimp. */
  applied: number;
  /** Members Mailchimp no longer had. */
  gone: number;
  /** Members Mailchimp refused to change. */
  refused: number;
  /** Unsubscribes of contacts this connection never pushed. */
  notOurs: number;
  /** Requests to Ometria's listing. */
  ometriaRequests: number;
  /** PATCH requests to Mailchimp. */
  mailchimpWrites: number;
  error?: string;
}

/** How far before the watermark a poll reads again: Ometria may list an event late. */
export const OPTOUT_BACK_LOOKBACK_MS = 10 * 60_000;
/**
 * How far back the first poll of a connection reads: an hour, one slice. Unsubscribes made in
 * Ometria long before `optout_back` was turned on are not replayed into Mailchimp by surprise.
 */
export const OPTOUT_BACK_FIRST_POLL_MS = 3_600_000;
/** The longest stretch of the listing asked at once (its paging is undocumented). */
const _SLICE_MS = 3_600_000;

/** Polls once; never throws for API failures (they become `failed`, the watermark stays). */
export async function pollOptouts(o: OptoutBackOptions): Promise<OptoutBackResult> {
  const { writer, signal } = o;
  const { connection } = writer;
  const log = writer.logger.with({ connection: connection.id, list_id: connection.listId });
  const lookbackMs = o.lookbackMs ?? OPTOUT_BACK_LOOKBACK_MS;
  const result: OptoutBackResult = {
    outcome: "ok",
    applied: 0,
    gone: 0,
    refused: 0,
    notOurs: 0,
    ometriaRequests: 0,
    mailchimpWrites: 0,
  };
  const now = writer.clock.now();
  const startMs = now - OPTOUT_BACK_FIRST_POLL_MS;
  try {
    const state = (await writer.store.get(connection.id))?.optout_back ?? null;
    const watermark = state === null ? startMs : Date.parse(state.watermark);
    const seen = new Set((state?.recent ?? []).map(_key));
    const upper = Math.floor(now / 1000) * 1000;
    const table = await writer.table();
    const patched = new Map<string, OptoutDone["outcome"]>();
    for (let from = state === null ? watermark : watermark - lookbackMs; from < upper;) {
      const to = Math.min(from + _SLICE_MS, upper);
      const events = await _listSlice(o, from, to, result);
      let notOurs = 0;
      for (const e of events) {
        const at = e.atMs ?? from;
        const id = _memberOf(e, connection.listId, table);
        if (id === undefined) {
          // Only counted once: an event before the watermark was counted by an earlier poll.
          if (at >= watermark) notOurs++;
          continue;
        }
        const done: OptoutDone = {
          id,
          at: new Date(at).toISOString(),
          type: e.type,
          outcome: "applied",
        };
        if (seen.has(_key(done))) continue;
        seen.add(_key(done));
        // One member unsubscribing twice (a link, then the preference centre) is one PATCH.
        const known = patched.get(id);
        const change = known === undefined ? await _optOut(o, id, result) : { outcome: known };
        done.outcome = change.outcome;
        patched.set(id, done.outcome);
        // Recorded before anything else is sent: a stop or a crash from here never PATCHes again.
        await writer.record({
          type: "optouts",
          at: now,
          startMs,
          done: [done],
          notOurs: 0,
          lookbackMs,
        });
        if (change.records) await _push(o, change.records);
      }
      result.notOurs += notOurs;
      await writer.record({
        type: "optouts",
        at: now,
        startMs,
        done: [],
        notOurs,
        throughMs: to,
        lookbackMs,
      });
      from = to;
    }
    if (result.applied + result.gone + result.refused > 0) {
      log.info(
        "Ometria unsubscribes: {applied} member(s) set to unsubscribed in Mailchimp, {gone} " +
          "gone from it, {refused} refused by it; {notOurs} not this connection's",
        { ...result },
      );
    }
    return result;
  } catch (error) {
    if (signal?.aborted) return { ...result, outcome: "aborted" };
    const text = errorText(error, o.secrets ?? []);
    log.error("Polling Ometria's unsubscribes failed: {error}", { error: text });
    await writer.record({ type: "optout-failed", at: now, startMs, error: text }).catch(() => {});
    return { ...result, outcome: "failed", error: text };
  }
}

/** Every email unsubscribe of `[from, to)`, one request per type, oldest first. */
async function _listSlice(
  o: OptoutBackOptions,
  from: number,
  to: number,
  result: OptoutBackResult,
): Promise<OmetriaUnsubscribe[]> {
  const types: ReadonlySet<string> = new Set(OMETRIA_EMAIL_UNSUBSCRIBE_TYPES);
  const events: OmetriaUnsubscribe[] = [];
  for (const type of OMETRIA_EMAIL_UNSUBSCRIBE_TYPES) {
    o.signal?.throwIfAborted();
    o.writer.fence.assertHeld();
    result.ometriaRequests++;
    const listed = await o.ometria.unsubscribes({ sinceMs: from, beforeMs: to, type }, o.signal);
    // An account that ignores `type` answers every type: an SMS stop word is not an email's.
    events.push(...listed.filter((e) => types.has(e.type)));
  }
  return events.sort((a, b) => (a.atMs ?? from) - (b.atMs ?? from));
}

/**
 * The member an unsubscribe is about, when this connection pushed it: the contact id of a
 * listing in its collection, else the subscriber hash of the address, if the ledger has it.
 */
function _memberOf(
  e: OmetriaUnsubscribe,
  listId: string,
  table: LedgerTable,
): string | undefined {
  if (e.collection === collectionFor(listId) && e.contactId && isMemberId(e.contactId)) {
    return e.contactId;
  }
  if (e.email === undefined || !e.email.includes("@")) return undefined;
  const id = subscriberHash(e.email);
  const entry = table.get(id);
  return entry !== undefined && !entry.gone ? id : undefined;
}

/**
 * Sets member `id` to unsubscribed; what happened, and the member's records as Mailchimp
 * answered it, to push. A refusal (a 4xx: a cleaned or archived member, say) is not retried;
 * its words are not kept, since Mailchimp's name the address.
 */
async function _optOut(
  o: OptoutBackOptions,
  id: string,
  result: OptoutBackResult,
): Promise<{ outcome: OptoutDone["outcome"]; records?: GatedRecord[] }> {
  const { writer, signal } = o;
  const { connection } = writer;
  signal?.throwIfAborted();
  writer.fence.assertHeld();
  const seq = writer.nextSeq();
  result.mailchimpWrites++;
  let answer: MemberLookup;
  try {
    // A write made for the connection: under its fence, like every push.
    answer = await o.mailchimp.unsubscribeMember(connection.listId, id, {
      signal: signal ? AbortSignal.any([signal, writer.fence.signal]) : writer.fence.signal,
      beforeAttempt: () => writer.fence.assertHeld(),
    });
  } catch (error) {
    const refused = error instanceof MailchimpError && !error.retryable &&
      error.status !== undefined && error.status >= 400 && error.status < 500 &&
      error.status !== 401 && error.status !== 403;
    if (!refused) throw error;
    writer.logger.warn(
      "Mailchimp refused to unsubscribe member {id} of {connection}: {status} {title}",
      {
        id,
        connection: connection.id,
        status: error.status ?? 0,
        title: error.title ?? "",
      },
    );
    result.refused++;
    return { outcome: "refused" };
  }
  if ("gone" in answer) {
    result.gone++;
    return { outcome: "gone" };
  }
  result.applied++;
  // Served malformed: the next run quarantines it as it reads it.
  if ("invalid" in answer) return { outcome: "applied" };
  const { records } = await serializeMembers([answer.member], {
    endpoint: o.endpoint ?? "push",
    listId: connection.listId,
    mapping: o.mapping,
  }, { atMs: answer.serverTimeMs, seq });
  return { outcome: "applied", records };
}

/** Pushes what a PATCH answered; a record Ometria refuses is quarantined, as a run would. */
async function _push(o: OptoutBackOptions, records: readonly GatedRecord[]): Promise<void> {
  if (records.length === 0) return;
  const { writer } = o;
  const answer = await writer.push(records, {
    signal: o.signal,
    label: `${writer.connection.id} Ometria unsubscribes`,
  });
  const refused = rejectedRecords(records, answer);
  if (refused.length > 0) {
    await writer.record({ type: "quarantine", at: writer.clock.now(), add: refused, release: [] });
  }
}

function _key(d: Pick<OptoutDone, "id" | "at" | "type">): string {
  return `${d.id}|${d.at}|${d.type}`;
}
