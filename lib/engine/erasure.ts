/**
 * Data-protection erasures of one connection, through its writer (docs/ARCHITECTURE.md, "One
 * writer per connection"): {@linkcode eraseEmail} deletes the Mailchimp member permanently
 * (when asked), files Ometria's data deletion request, removes the member from the ledger and
 * keeps an erasure record until {@linkcode checkErasures} finds Ometria reporting it complete.
 *
 * **No address is kept.** A record holds `sha256:` and the SHA-256 of a random per-connection
 * salt (kept in the state) and the lowercased address: never the address, nor its MD5 (the
 * subscriber hash, which anyone with a list of addresses reverses in a second). The salt does
 * not stop whoever holds the state from testing a guessed address — a keyed hash whose key
 * lived elsewhere would, at the price of one more secret to keep — but it stops a table of
 * hashes made once from reading every installation's records, and it lets `erase` recognise
 * an erasure asked twice. Logs name an erasure by the first 12 hex digits of its identity.
 *
 * **Order.** Mailchimp first (a member deleted there can never be copied to Ometria again),
 * then Ometria (6 requests a minute; processed within 14 days), then the ledger (so no
 * reconciliation opts the contact out again, re-creating a listing after the anonymisation).
 * A failure to file is recorded as such, with no address in it, and `erase` says to run again.
 *
 * @module
 */
import { errorText, redact } from "../log/error_text.ts";
import type { MemberLookup } from "../mailchimp/client.ts";
import { subscriberHash } from "../mailchimp/member.ts";
import type { FiledDeletionRequest, OmetriaDeletionRequest } from "../ometria/client.ts";
import type { ErasureRecord } from "../state/schema.ts";
import type { ConnectionWriter } from "../writer/connection_writer.ts";

/** What erasures need of the Ometria client. */
export interface ErasureApi {
  /** Files a data deletion request for `email` (sent once: it is not an upsert). */
  fileDataDeletionRequest(
    email: string,
    options?: {
      comment?: string;
      signal?: AbortSignal | undefined;
      beforeAttempt?: (() => void) | undefined;
    },
  ): Promise<FiledDeletionRequest>;
  /** Every deletion request of the account. */
  dataDeletionRequests(signal?: AbortSignal): Promise<OmetriaDeletionRequest[]>;
}

/** What erasures need of the Mailchimp client. */
export interface MemberEraser {
  /** Deletes the member for good; false when Mailchimp had none. */
  deleteMemberPermanently(
    listId: string,
    id: string,
    options?: { signal?: AbortSignal | undefined; beforeAttempt?: (() => void) | undefined },
  ): Promise<boolean>;
  /** One member as it is now, or `gone`. */
  getMember(listId: string, id: string, signal?: AbortSignal): Promise<MemberLookup>;
}

/** Options of {@linkcode eraseEmail}. */
export interface EraseOptions {
  writer: ConnectionWriter;
  ometria: ErasureApi;
  mailchimp: MemberEraser;
  /** The address to erase (held in memory only). */
  email: string;
  /** Delete the Mailchimp member permanently too (`--mailchimp`). */
  deleteInMailchimp: boolean;
  /** Who asked. @default {"command"} */
  source?: ErasureRecord["source"];
  /**
   * The request already filed for this address with the same Ometria account (another
   * connection of one `erase`): reused, not filed twice.
   */
  filed?: FiledDeletionRequest | undefined;
  /** Secrets to keep out of error texts (the address is always kept out). */
  secrets?: readonly string[];
  signal?: AbortSignal | undefined;
}

/** What {@linkcode eraseEmail} did. */
export interface EraseResult {
  /** The record's identity (`sha256:…`). */
  identity: string;
  /** Whether Ometria took the deletion request. */
  ometria: "filed" | "failed";
  /** The request as Ometria answered it, when filed. */
  filed?: FiledDeletionRequest;
  /** What became of the Mailchimp member. */
  mailchimp: ErasureRecord["mailchimp"];
  /** Why Ometria did not take it (no address in it). */
  error?: string;
}

/** After this long an open erasure raises `erasure.overdue` (Ometria promises 14 days). */
export const ERASURE_OVERDUE_MS = 30 * 86_400_000;

/** The identity of `email` in a record of a connection whose salt is `salt`. */
export async function erasureIdentity(salt: string, email: string): Promise<string> {
  const bytes = new TextEncoder().encode(`${salt}\u0000${email.trim().toLowerCase()}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return `sha256:${Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** How logs and output name an erasure: the first 12 hex digits of its identity. */
export function erasureLabel(identity: string): string {
  return identity.replace(/^sha256:/, "").slice(0, 12);
}

/**
 * Erases one address for the writer's connection (see the module doc). Throws when
 * Mailchimp fails (nothing is recorded: run it again); a failure to file with Ometria is
 * recorded as `failed` and returned.
 */
export async function eraseEmail(o: EraseOptions): Promise<EraseResult> {
  const { writer, signal } = o;
  const { connection } = writer;
  const email = o.email.trim().toLowerCase();
  const id = subscriberHash(email);
  const secrets = [...(o.secrets ?? []), o.email, email];
  const erasures = (await writer.store.get(connection.id))?.erasures;
  const salt = erasures?.salt ?? _newSalt();
  const identity = await erasureIdentity(salt, email);
  // Asked again while Ometria works on it: the request filed stands, and so does its age.
  const earlier = erasures?.open.find((r) => r.identity === identity && r.status === "filed");
  writer.fence.assertHeld();
  // Every write made for the connection carries its fence.
  const fenced = {
    signal: signal ? AbortSignal.any([signal, writer.fence.signal]) : writer.fence.signal,
    beforeAttempt: () => writer.fence.assertHeld(),
  };
  let mailchimp: ErasureRecord["mailchimp"];
  if (o.deleteInMailchimp) {
    const deleted = await o.mailchimp.deleteMemberPermanently(connection.listId, id, fenced);
    mailchimp = deleted ? "deleted" : "not_found";
  } else {
    const now = await o.mailchimp.getMember(connection.listId, id, signal);
    mailchimp = "gone" in now ? "not_found" : "kept";
  }
  let filed = o.filed ??
    (earlier &&
      { id: earlier.request_id ?? undefined, apiRequestId: earlier.api_request_id ?? undefined });
  let error: string | undefined;
  if (filed === undefined) {
    try {
      filed = await o.ometria.fileDataDeletionRequest(email, {
        comment: `mailchimp-ometria-sync erase, connection ${connection.id}`,
        ...fenced,
      });
    } catch (failure) {
      if (signal?.aborted) throw failure;
      error = redact(errorText(failure, secrets), secrets);
    }
  }
  await writer.forget([id]);
  const held = (await writer.store.get(connection.id))?.quarantine.some((q) => q.id === id);
  if (held) {
    await writer.record({ type: "quarantine", at: writer.clock.now(), add: [], release: [id] });
  }
  const record: ErasureRecord = {
    identity,
    filed_at: earlier?.filed_at ?? new Date(writer.clock.now()).toISOString(),
    request_id: filed?.id ?? null,
    api_request_id: filed?.apiRequestId ?? null,
    status: filed === undefined ? "failed" : "filed",
    error: error ?? null,
    mailchimp,
    source: o.source ?? "command",
    alerted_at: earlier?.alerted_at ?? null,
  };
  await writer.record({ type: "erasure-filed", record, salt });
  const log = writer.logger.with({ connection: connection.id, erasure: erasureLabel(identity) });
  if (filed === undefined) {
    log.error("Erasure {erasure} of {connection}: Ometria did not take it: {error}", { error });
  } else {
    log.info(
      "Erasure {erasure} of {connection} filed with Ometria (request {request}); Mailchimp member {mailchimp}",
      {
        request: filed.id ?? filed.apiRequestId ?? "unnamed",
        mailchimp,
      },
    );
  }
  return {
    identity,
    ometria: filed === undefined ? "failed" : "filed",
    ...(filed ? { filed } : {}),
    mailchimp,
    ...(error !== undefined ? { error } : {}),
  };
}

/**
 * Asks Ometria about the connection's open erasures (one listing) and drops those it reports
 * complete; resolves with how many completed and how many stay open. Throws when Ometria
 * cannot be asked (the records stay).
 */
export async function checkErasures(
  o: { writer: ConnectionWriter; ometria: ErasureApi; signal?: AbortSignal | undefined },
): Promise<{ completed: number; open: number }> {
  const { writer } = o;
  const open = (await writer.store.get(writer.connection.id))?.erasures.open ?? [];
  const filed = open.filter((r) => r.status === "filed");
  if (filed.length === 0) return { completed: 0, open: open.length };
  writer.fence.assertHeld();
  const requests = await o.ometria.dataDeletionRequests(o.signal);
  const done = new Set(
    requests.filter((r) => r.completedAtMs !== undefined).flatMap((r) => [
      `id:${r.id}`,
      ...(r.apiRequestId ? [`api:${r.apiRequestId}`] : []),
    ]),
  );
  const completed = filed.filter((r) =>
    r.request_id !== null ? done.has(`id:${r.request_id}`) : done.has(`api:${r.api_request_id}`)
  ).map((r) => r.identity);
  await writer.record({ type: "erasures-checked", at: writer.clock.now(), completed });
  if (completed.length > 0) {
    writer.logger.info("Ometria completed {count} erasure(s) of {connection}: {erasures}", {
      count: completed.length,
      connection: writer.connection.id,
      erasures: completed.map(erasureLabel).join(", "),
    });
  }
  return { completed: completed.length, open: open.length - completed.length };
}

/** Whether an open erasure is past {@linkcode ERASURE_OVERDUE_MS} at `nowMs`. */
export function isOverdue(record: ErasureRecord, nowMs: number): boolean {
  return nowMs - Date.parse(record.filed_at) > ERASURE_OVERDUE_MS;
}

function _newSalt(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
