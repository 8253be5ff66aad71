/**
 * What the engine needs from the two APIs: the Mailchimp client and the Ometria client
 * satisfy these, and so would anything else that speaks the same.
 *
 * @module
 */
import type { Member, MemberStatus } from "../mailchimp/member.ts";
import type { OmetriaRecord } from "../mapping/contact.ts";

/** The part of the Mailchimp client the engine uses. */
export interface MembersSource {
  getMembers(
    listId: string,
    query: {
      count: number;
      offset?: number;
      sinceMs?: number;
      beforeMs?: number;
      status?: MemberStatus;
      sortField?: "last_changed";
      sortDir?: "ASC" | "DESC";
    },
    signal?: AbortSignal,
  ): Promise<{ members: Member[]; totalItems: number; serverTimeMs?: number | undefined }>;
}

/** The part of the Ometria client the engine uses. */
export interface RecordsSink {
  push(
    records: OmetriaRecord[],
    options?: { signal?: AbortSignal; label?: string },
  ): Promise<{ accepted: number; rejected: number; tooLarge?: string[]; errors?: string[] }>;
}
