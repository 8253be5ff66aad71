/**
 * What Ometria refused after answering OK. Its push API validates asynchronously ("the 'OK'
 * result does not mean that the records passed validation", docs/API_NOTES.md), and lists the
 * account's latest validation errors at `GET /v2/push/_errors` (at most 100, newest last,
 * in one of two shapes). So after a run that pushed, the connection's writer reads that list
 * and compares it with the last reading kept in the state:
 *
 * - an error naming a record (`recordId`) of this connection's ledger holds that member in
 *   quarantine with Ometria's reason, and its ledger entry stops counting as acknowledged, so
 *   it is sent again (the run's outcome is then a failure until it goes through);
 * - an error naming a request of another integration is not ours and is left alone;
 * - an error that names neither (the documented shape names neither) cannot be tied to a
 *   member: the run fails with their count and `connection.rejected_async` is raised, never
 *   silence. When the run's answers themselves rejected records (an account validating as
 *   it answers), those are what the list shows — each try of one as its batch is bisected —
 *   and they are held already, so they explain the untied entries.
 *
 * Errors validated after the run ended are found by the next run that pushes. A reading of
 * 100 entries none of which were seen before may have lost some: that is said too.
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";
import type { OmetriaAsyncError } from "../ometria/client.ts";
import type { QuarantineFinding } from "../state/transitions.ts";
import type { ConnectionWriter } from "../writer/connection_writer.ts";

/** `_errors` keeps this many entries: a reading of this many may have lost older ones. */
const _ERRORS_KEPT = 100;

/** What one reading of Ometria's validation errors found for a connection. */
export interface AsyncRejections {
  /** Members of this connection Ometria refused, with its reason. */
  held: QuarantineFinding[];
  /** Errors that cannot be tied to a member (their texts). */
  untied: string[];
  /** The reading may have lost errors (it was full and none had been seen before). */
  truncated: boolean;
}

/** One entry as a comparable text (identical entries are counted, not merged). */
function _fingerprint(e: OmetriaAsyncError): string {
  return [e.recordId, e.requestId, e.path, e.message, e.timestamp].map((x) => x ?? "").join("|");
}

/**
 * Reads the errors the connection has not seen yet without acting on them: the baseline a
 * connection's first run takes before it pushes, so that errors older than it are not its.
 * Resolves false when the errors cannot be read (nothing is recorded).
 */
export async function takeErrorBaseline(
  writer: ConnectionWriter,
  signal?: AbortSignal,
): Promise<boolean> {
  const reading = await _read(writer, signal);
  if (reading === undefined) return false;
  await writer.record({ type: "async-errors-seen", seen: reading.map(_fingerprint) });
  return true;
}

/**
 * Reads the errors, records the reading, and returns the new ones sorted as the module doc
 * says; undefined when Ometria's list cannot be read now (logged: the next run tries again).
 * `requestIds` are the push requests of this run; `rejectedAtOnce` how many records its
 * answers already reported as rejected.
 */
export async function checkAsyncRejections(
  writer: ConnectionWriter,
  seenBefore: readonly string[] | null,
  requestIds: ReadonlySet<string>,
  rejectedAtOnce: number,
  signal?: AbortSignal,
): Promise<AsyncRejections | undefined> {
  const reading = await _read(writer, signal);
  if (reading === undefined) return undefined;
  const unseen = new Map<string, number>();
  for (const f of seenBefore ?? []) unseen.set(f, (unseen.get(f) ?? 0) + 1);
  const fresh: OmetriaAsyncError[] = [];
  let old = 0;
  for (const e of reading) {
    const f = _fingerprint(e);
    const left = unseen.get(f) ?? 0;
    if (left > 0) {
      unseen.set(f, left - 1);
      old++;
    } else fresh.push(e);
  }
  await writer.record({ type: "async-errors-seen", seen: reading.map(_fingerprint) });
  const table = await writer.table();
  const held = new Map<string, string>();
  const untied: string[] = [];
  for (const e of fresh) {
    const text = e.field ? `${e.field}: ${e.message}` : e.message;
    if (e.recordId !== undefined) {
      const entry = table.get(e.recordId);
      if (entry !== undefined && !entry.gone) {
        held.set(e.recordId, `Ometria refused it after answering OK: ${text}`);
      }
    } else if (e.requestId !== undefined) {
      if (requestIds.has(e.requestId)) untied.push(text);
    } else untied.push(text);
  }
  // An account whose answers reject at once lists those records too (each try of one while
  // its batch is bisected, so several times): they are held already, and explain the rest.
  if (rejectedAtOnce > 0) untied.length = 0;
  return {
    held: [...held].map(([id, reason]) => ({ id, reason })),
    untied,
    truncated: reading.length >= _ERRORS_KEPT && old === 0 && (seenBefore?.length ?? 0) > 0,
  };
}

async function _read(
  writer: ConnectionWriter,
  signal: AbortSignal | undefined,
): Promise<OmetriaAsyncError[] | undefined> {
  try {
    return await writer.recentErrors(signal);
  } catch (error) {
    writer.logger.warn(
      "Cannot read Ometria's validation errors for {connection} now: {error}; the next run " +
        "that pushes reads them",
      { connection: writer.connection.id, error: errorText(error) },
    );
    return undefined;
  }
}
