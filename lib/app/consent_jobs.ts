/**
 * The consent and erasure jobs of the sync service, each run with a connection's writer
 * (`SyncService.withWriter`, the one path that writes for a connection): the per-tick poll of
 * Ometria's unsubscribes for connections with `optout_back` and the hourly check of open
 * erasures ({@linkcode consentTick}), `erase` ({@linkcode eraseEverywhere}), and the erasure a
 * webhook's permanent delete files for a connection with `erase_on_permanent_delete`
 * ({@linkcode eraseConfirmedDeletes}).
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { ConnectionConfig } from "../config/config.ts";
import {
  checkErasures,
  eraseEmail,
  type EraseResult,
  type ErasureApi,
  erasureLabel,
  type MemberEraser,
} from "../engine/erasure.ts";
import { type MemberOptOut, pollOptouts, type UnsubscribesSource } from "../engine/optout_back.ts";
import type { EngineContext } from "../engine/ports.ts";
import { errorText } from "../log/error_text.ts";
import { subscriberHash } from "../mailchimp/member.ts";
import type { FiledDeletionRequest } from "../ometria/client.ts";
import type { ConnectionState } from "../state/schema.ts";
import { openSealedEmail } from "../webhooks/sealed_email.ts";
import type { ConnectionWriter } from "../writer/connection_writer.ts";
import type { Exclusive } from "../writer/writer_pool.ts";

/** A connection as the consent jobs use it: its config and its two clients. */
export interface ConsentConnection {
  config: ConnectionConfig;
  mailchimp: MemberOptOut & MemberEraser;
  ometria: UnsubscribesSource & ErasureApi;
}

/** What the jobs need of the sync service. */
export interface ConsentJobsDeps {
  /** Runs `job` with connection `id`'s writer (`SyncService.withWriter`). */
  exclusive<T>(id: string, job: (writer: ConnectionWriter) => Promise<T>): Promise<Exclusive<T>>;
  /** What every engine entry point gets for a connection and its writer. */
  engine(c: ConsentConnection, writer: ConnectionWriter): EngineContext;
  logger: Logger;
  /** Every configured secret, kept out of error texts. */
  secrets: readonly string[];
}

/** How often a tick asks Ometria about a connection's open erasures. */
const _CHECK_EVERY_MS = 3_600_000;

/**
 * One tick's consent work, `concurrency` connections at once: Ometria's unsubscribes polled
 * for every connection with `optout_back`, and open erasures checked for those last checked an
 * hour ago or more. Resolves with whether a poll failed (the tick then counts as failed).
 */
export async function consentTick(
  deps: ConsentJobsDeps,
  connections: readonly ConsentConnection[],
  o: {
    states: ReadonlyMap<string, ConnectionState>;
    nowMs: number;
    concurrency: number;
    signal?: AbortSignal | undefined;
  },
): Promise<{ failed: boolean }> {
  const due = connections.filter((c) =>
    c.config.optoutBack || _checkDue(o.states.get(c.config.id), o.nowMs)
  );
  let failed = false;
  let next = 0;
  const worker = async () => {
    while (next < due.length && !o.signal?.aborted) {
      const c = due[next++]!;
      const done = await deps.exclusive(c.config.id, async (writer) => {
        let pollFailed = false;
        if (c.config.optoutBack) {
          const polled = await pollOptouts({
            ...deps.engine(c, writer),
            mailchimp: c.mailchimp,
            ometria: c.ometria,
            signal: o.signal,
          });
          pollFailed = polled.outcome === "failed";
        }
        const state = await writer.store.get(c.config.id);
        if (_checkDue(state, o.nowMs)) {
          await checkErasures({ writer, ometria: c.ometria, signal: o.signal }).catch((error) => {
            deps.logger.warn("Cannot ask Ometria about the erasures of {connection} now: {error}", {
              connection: c.config.id,
              error: errorText(error, deps.secrets),
            });
          });
        }
        return pollFailed;
      });
      if (!done.held && done.value) failed = true;
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, due.length) }, worker));
  return { failed };
}

/** What `erase` did on one connection. */
export type EraseOutcome =
  | { id: string; held: false; results: EraseResult[] }
  | { id: string; held: true };

/**
 * Erases `emails` from each connection in turn (see engine/erasure.ts), each under its lease;
 * an address is filed once per Ometria account, however many connections share it. Throws
 * what Mailchimp's failures throw (the erasures done so far are recorded).
 */
export async function eraseEverywhere(
  deps: ConsentJobsDeps,
  connections: readonly ConsentConnection[],
  emails: readonly string[],
  o: { mailchimp: boolean; signal?: AbortSignal | undefined },
): Promise<EraseOutcome[]> {
  const filed = new Map<string, FiledDeletionRequest>();
  const out: EraseOutcome[] = [];
  for (const c of connections) {
    if (o.signal?.aborted) break;
    const account = `${c.config.ometria.baseUrl}\u0000${c.config.ometria.apiKey}`;
    const done = await deps.exclusive(c.config.id, async (writer) => {
      const results: EraseResult[] = [];
      for (const email of emails) {
        const key = `${account}\u0000${email.trim().toLowerCase()}`;
        const result = await eraseEmail({
          writer,
          ometria: c.ometria,
          mailchimp: c.mailchimp,
          email,
          deleteInMailchimp: o.mailchimp,
          filed: filed.get(key),
          secrets: deps.secrets,
          signal: o.signal,
        });
        if (result.filed) filed.set(key, result.filed);
        results.push(result);
      }
      return results;
    });
    out.push(
      done.held
        ? { id: c.config.id, held: true }
        : { id: c.config.id, held: false, results: done.value },
    );
  }
  return out;
}

/**
 * Checks the open erasures of `connections` now (`erase --status`), each under its lease;
 * a connection Ometria cannot be asked about is logged and left as it was.
 */
export async function checkEverywhere(
  deps: ConsentJobsDeps,
  connections: readonly ConsentConnection[],
  signal?: AbortSignal,
): Promise<void> {
  for (const c of connections) {
    if (signal?.aborted) return;
    await deps.exclusive(
      c.config.id,
      (writer) =>
        checkErasures({ writer, ometria: c.ometria, signal }).catch((error) => {
          deps.logger.warn("Cannot ask Ometria about the erasures of {connection} now: {error}", {
            connection: c.config.id,
            error: errorText(error, deps.secrets),
          });
        }),
    );
  }
}

/**
 * The erasures a webhook's permanent delete asks for, once Mailchimp confirmed the member gone
 * (engine/inbox_events.ts), for a connection with `erase_on_permanent_delete`: each sealed
 * address is opened and erased. Throws when Ometria does not take one, so the inbox entry
 * stays and is tried again (the erasure record says `failed` meanwhile).
 */
export async function eraseConfirmedDeletes(
  deps: ConsentJobsDeps,
  c: ConsentConnection,
  writer: ConnectionWriter,
  deletes: readonly { id: string; sealed: string }[],
  signal: AbortSignal,
): Promise<void> {
  for (const d of deletes) {
    const email = await openSealedEmail(c.config.ometria.apiKey, d.sealed);
    if (email === undefined || subscriberHash(email) !== d.id) {
      deps.logger.error(
        "Member {id} of {connection} was deleted permanently, but its address cannot be read " +
          "back (was the Ometria key changed?): file its erasure with `erase`",
        { id: d.id, connection: c.config.id },
      );
      continue;
    }
    const result = await eraseEmail({
      writer,
      ometria: c.ometria,
      mailchimp: c.mailchimp,
      email,
      deleteInMailchimp: false,
      source: "webhook",
      secrets: deps.secrets,
      signal,
    });
    if (result.ometria === "failed") {
      throw new Error(
        `Ometria did not take erasure ${erasureLabel(result.identity)} of ${c.config.id}: ` +
          `${result.error}; it is tried again`,
      );
    }
  }
}

/** Whether a connection's open erasures are due a check with Ometria at `nowMs`. */
function _checkDue(state: ConnectionState | undefined, nowMs: number): boolean {
  if (!state?.erasures.open.some((r) => r.status === "filed")) return false;
  const checked = state.erasures.checked_at;
  return checked === null || nowMs - Date.parse(checked) >= _CHECK_EVERY_MS;
}
