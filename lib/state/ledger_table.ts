/**
 * The content ledger of one connection, in memory: for each member id, what this program last
 * sent Ometria for it. Packed (no object per member), so a million entries stay well under
 * 40 MB. The connection's writer keeps one while it holds the lease and consults it before
 * every push: a push whose version is older than the entry's is stale and is not sent; one
 * whose record hash equals an acknowledged entry's is unchanged and is not sent either.
 *
 * Records (the unit of a ledger's appends, 32 bytes each, little-endian):
 * `id` 16 bytes (the subscriber hash's hex digits packed) | `hash` 8 bytes | `version` u32
 * (whole seconds since the epoch) | `flags` u8 (bit 0 acked, bit 1 gone, bit 2 final, bit 7
 * removed) | 3 bytes zero.
 *
 * @module
 */
import type { IdSet } from "./id_set.ts";

/** Bytes of one packed ledger record. */
export const LEDGER_RECORD_BYTES = 32;

/** What this program last sent Ometria for one member. */
export interface LedgerEntry {
  /**
   * The version sent, in epoch ms (whole seconds): the member's `last_changed` for a push;
   * for the opt-out of a member gone from Mailchimp, the `Date` of Mailchimp's 404 answer.
   * 0 when unknown (an entry migrated from the id-only ledger).
   */
  versionMs: number;
  /** The record's hash as 16 hex digits (`recordHash`); "" when unknown. */
  hash: string;
  /**
   * Ometria acknowledged the request that carried it. False while written ahead of a push
   * that may or may not have landed: such an entry never makes a member count as unchanged.
   */
  acked: boolean;
  /** The member is gone from Mailchimp and this is the opt-out sent for it (a tombstone). */
  gone: boolean;
  /**
   * The version was read when it could no longer change within its second (its answer's
   * `Date` at least 2 s after it), so no other read of the same version can be newer.
   */
  final: boolean;
  /**
   * In memory only, never persisted: when the writer holding the table issued this entry's
   * push, in its numbering of reads and pushes (writer/gate.ts); 0 or absent for entries
   * loaded from the ledger (issued before any read of this writer).
   */
  issuedSeq?: number;
}

/** A packed, in-memory table of ledger entries keyed by member id. */
export class LedgerTable {
  /** An empty table. */
  static empty(): LedgerTable {
    throw new Error("not implemented");
  }

  /**
   * Replays packed records (appends of a ledger, in order): a later record of an id replaces
   * an earlier one, a removed record deletes it. A torn last record (fewer than 32 bytes) is
   * ignored.
   */
  static fromRecords(_records: Uint8Array): LedgerTable {
    throw new Error("not implemented");
  }

  /** Entries for ids of the id-only ledger of earlier releases: version and hash unknown, acked. */
  static fromLegacyIds(_ids: IdSet): LedgerTable {
    throw new Error("not implemented");
  }

  /** Packs one record: an upsert of `entry`, or the removal of `id` when `entry` is undefined. */
  static packRecord(_id: string, _entry: LedgerEntry | undefined): Uint8Array {
    throw new Error("not implemented");
  }

  /** Entries in the table, gone ones included. */
  get size(): number {
    throw new Error("not implemented");
  }

  /** Entries that are not gone: the members Ometria may hold opted in. */
  get liveSize(): number {
    throw new Error("not implemented");
  }

  /** Bytes the table holds (its arrays), for the memory budget. */
  get byteSize(): number {
    throw new Error("not implemented");
  }

  /** The entry of `id`, or undefined. */
  get(_id: string): LedgerEntry | undefined {
    throw new Error("not implemented");
  }

  /** Sets the entry of `id`. Throws a TypeError when `id` is not a subscriber hash. */
  set(_id: string, _entry: LedgerEntry): void {
    throw new Error("not implemented");
  }

  /** Deletes the entry of `id` (nothing when it has none). */
  delete(_id: string): void {
    throw new Error("not implemented");
  }

  /** Applies packed records in order, as `fromRecords` does. */
  apply(_records: Uint8Array): void {
    throw new Error("not implemented");
  }

  /** Every entry, sorted by id. */
  entries(): IterableIterator<[string, LedgerEntry]> {
    throw new Error("not implemented");
  }

  /** The ids of the entries that are not gone, as a sorted set. */
  liveIds(): IdSet {
    throw new Error("not implemented");
  }

  /** Every entry as packed records, sorted by id; gone ones left out when `dropGone`. */
  toRecords(_options?: { dropGone?: boolean }): Uint8Array {
    throw new Error("not implemented");
  }
}
