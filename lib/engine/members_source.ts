/**
 * What the engine needs from the two APIs: the Mailchimp client and the Ometria client
 * satisfy these, and so would anything else that speaks the same.
 *
 * @module
 */
import type { MembersQuery, MembersResult } from "../mailchimp/client.ts";
import type { OmetriaRecord } from "../mapping/contact.ts";

/** The part of the Mailchimp client the engine uses. */
export interface MembersSource {
  getMembers(listId: string, query: MembersQuery, signal?: AbortSignal): Promise<MembersResult>;
}

/** The part of the Ometria client the engine uses. */
export interface RecordsSink {
  /** Most records one `push` takes (the client's own limit, so the two cannot disagree). */
  readonly maxBatchSize: number;
  push(
    records: OmetriaRecord[],
    options?: { signal?: AbortSignal; label?: string },
  ): Promise<{ accepted: number; rejected: number; tooLarge?: string[]; errors?: string[] }>;
}
