/**
 * What the engine needs from the two APIs: the Mailchimp client and the Ometria client
 * satisfy these, and so would anything else that speaks the same.
 *
 * @module
 */
import type {
  MemberLookup,
  MembersQuery,
  MembersResult,
  MemberStampsResult,
} from "../mailchimp/client.ts";
import type { RecordJson } from "../mapping/contact.ts";
import type { OmetriaAsyncError } from "../ometria/client.ts";
import type { MappingForMembers } from "../mapping/field_mapper.ts";
import type { ConnectionWriter } from "../writer/connection_writer.ts";

/** The part of the Mailchimp client the engine uses. */
export interface MembersSource {
  /** One page of a list's members. */
  getMembers(listId: string, query: MembersQuery, signal?: AbortSignal): Promise<MembersResult>;
  /** One page of the same listing with only ids and `last_changed` (far smaller). */
  getMemberStamps(
    listId: string,
    query: MembersQuery,
    signal?: AbortSignal,
  ): Promise<MemberStampsResult>;
  /** One member as it is now, or `gone` when Mailchimp has none with that id. */
  getMember(listId: string, id: string, signal?: AbortSignal): Promise<MemberLookup>;
  /** The list's details; the engine reads its name once. */
  getList(listId: string, signal?: AbortSignal): Promise<{ name: string }>;
  /** One page of a list's member ids, in Mailchimp's default order. */
  getMemberIds(
    listId: string,
    query: { offset: number; count: number },
    signal?: AbortSignal,
  ): Promise<{ ids: string[]; size: number; totalItems: number }>;
}

/** What Ometria said about one batch. */
export interface SinkResult {
  accepted: number;
  /** Records not taken (rejected by Ometria or not sent as too large). */
  rejected: number;
  /** Ids of records not sent because they are too large. */
  tooLarge?: string[];
  /** Each record not taken, with the reason, when the sink can tell which. */
  rejectedRecords?: { id: string; reason: string }[];
  /** Ometria's recent error messages, when records were rejected. */
  errors?: string[];
  /** Requests beyond the first this push took (a 413 halved, rejections isolated). */
  extraRequests?: number;
  /** Ometria's `request_id` of the (last) request, when it gave one. */
  requestId?: string;
}

/** The part of the Ometria client the engine uses. */
export interface RecordsSink {
  /** Most records one `push` takes (the client's own limit, so the two cannot disagree). */
  readonly maxBatchSize: number;
  /** Sends one batch of records, serialised (`toRecordJson`). */
  pushJson(
    records: readonly RecordJson[],
    options?: {
      signal?: AbortSignal | undefined;
      label?: string | undefined;
      /** Called before every attempt; a throw stops the push (the writer's lease check). */
      beforeAttempt?: (() => void) | undefined;
    },
  ): Promise<SinkResult>;
  /**
   * The account's latest validation errors (`GET /v2/push/_errors`): what Ometria refused
   * after answering OK (docs/API_NOTES.md). Absent for a sink that validates as it answers.
   */
  recentErrors?(signal?: AbortSignal): Promise<OmetriaAsyncError[]>;
}

/**
 * What every engine entry point (a run, a reconciliation, inbox events) works with: the
 * connection's writer (which carries the connection, the store, the clock and the Ometria
 * client) and its Mailchimp client, field mapping and secrets.
 */
export interface EngineContext {
  writer: ConnectionWriter;
  mailchimp: MembersSource;
  /** Which record format to send. @default {"push"} */
  endpoint?: "push" | "record";
  /** Every configured secret, removed from error texts before they are stored. */
  secrets?: readonly string[];
  /**
   * The connection's field mapping (push endpoint only): a member must carry the same fields
   * whichever entry point pushes it, or a late push replaces the record with a poorer one.
   */
  mapping?: MappingForMembers | undefined;
}
