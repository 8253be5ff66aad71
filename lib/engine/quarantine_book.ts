/**
 * The quarantine of one run: members held back from Ometria (unreadable, unmappable, refused),
 * and held members that went through and may leave. What it holds reaches the state only
 * through {@linkcode QuarantineBook.take} and {@linkcode QuarantineBook.write}: a run takes the
 * holds together with the cursor it is about to checkpoint, at one instant, and writes the
 * holds first. Every member that cursor passes without Ometria having it is among those holds
 * (a member is held before the cursor can pass it), so no checkpoint ever passes a member
 * that is neither in Ometria nor in the quarantine on disk.
 *
 * @module
 */
import type { InvalidMember } from "../mailchimp/member.ts";
import type { QuarantineEntry } from "../state/schema.ts";
import { QUARANTINE_LIMIT, type QuarantineFinding } from "../state/transitions.ts";

/** What the book writes: members to hold and ids to let go, as one quarantine event. */
export interface QuarantineWrite {
  add: QuarantineFinding[];
  release: string[];
}

/** Options of {@linkcode QuarantineBook}. */
export interface QuarantineBookOptions {
  /** The quarantine as the run found it. */
  entries: readonly QuarantineEntry[];
  /** Named in the message when the quarantine is full. */
  listId: string;
  /** Writes one quarantine event (the connection's writer). */
  write: (change: QuarantineWrite) => Promise<void>;
  /** Told about every hold once it is written. */
  onHeld?: (finding: QuarantineFinding) => void;
  /** @default {QUARANTINE_LIMIT} */
  limit?: number;
}

const _keyOf = (f: { id: string | null; reason: string }) => f.id ?? `?${f.reason}`;

/** One run's quarantine bookkeeping. */
export class QuarantineBook {
  readonly #o: QuarantineBookOptions;
  /** Every key the quarantine holds or will hold (the id, or `?reason` without one). */
  readonly #keys: Set<string>;
  /** Members met twice in a run (at the edge of two pages) count as one attempt. */
  readonly #thisRun = new Set<string>();
  #holds: QuarantineFinding[] = [];
  #releases: string[] = [];

  constructor(options: QuarantineBookOptions) {
    this.#o = options;
    this.#keys = new Set(options.entries.map(_keyOf));
  }

  /**
   * Held members with an id to try again at a run's start, at most `max`: those tried
   * longest ago first, so that over successive runs every held member gets its turn.
   */
  static retryable(entries: readonly QuarantineEntry[], max: number): string[] {
    return entries.filter((e) => e.id !== null)
      .toSorted((a, b) => Date.parse(a.last_tried_at) - Date.parse(b.last_tried_at))
      .slice(0, max)
      .map((e) => e.id!);
  }

  /**
   * Holds members back. Throws when the quarantine is full: the member cannot be held, so its
   * batch must not count as done and the cursor must not pass it (the throw fails the batch,
   * or the slice); the run fails and the next one reads it again.
   */
  hold(findings: readonly QuarantineFinding[]): void {
    const limit = this.#o.limit ?? QUARANTINE_LIMIT;
    for (const f of findings) {
      const key = _keyOf(f);
      if (this.#thisRun.has(key)) continue;
      if (!this.#keys.has(key) && this.#keys.size >= limit) {
        throw new Error(
          `More than ${limit} members of list ${this.#o.listId} cannot be ` +
            `delivered (the latest: ${f.reason}); the run stops before them so that none is ` +
            "skipped. Fix the cause shown by status, and the next run goes on from here",
        );
      }
      this.#keys.add(key);
      this.#thisRun.add(key);
      this.#holds.push(f);
    }
  }

  /** Holds members Mailchimp served malformed. */
  holdInvalid(invalid: readonly InvalidMember[]): void {
    if (invalid.length > 0) this.hold(invalid.map((m) => ({ id: m.id, reason: m.reason })));
  }

  /** Ids of `batch` held now: they leave quarantine once the batch goes through. */
  heldIn(batch: readonly { id: string }[]): string[] {
    return this.#keys.size === 0 ? [] : batch.flatMap((r) => this.#keys.has(r.id) ? [r.id] : []);
  }

  /** Held members that went through (or are gone): they leave at the next write. */
  release(ids: readonly string[]): void {
    if (ids.length > 0) this.#releases.push(...ids);
  }

  /** Whether holds or releases wait to be written. */
  get pending(): boolean {
    return this.#holds.length > 0 || this.#releases.length > 0;
  }

  /**
   * Takes what waits to be written, at one instant (see the module doc). A member held again
   * meanwhile does not leave.
   */
  take(): QuarantineWrite {
    const add = this.#holds;
    const again = new Set(add.map((f) => f.id));
    const release = this.#releases.filter((id) => !again.has(id));
    this.#holds = [];
    this.#releases = [];
    return { add, release };
  }

  /**
   * Writes what {@linkcode take} took. When the write fails, it waits for the next write (the
   * run's last one at the latest), so the cursor that run records never passes a hold that is
   * not on disk.
   */
  async write(change: QuarantineWrite): Promise<void> {
    if (change.add.length === 0 && change.release.length === 0) return;
    try {
      await this.#o.write(change);
    } catch (error) {
      this.#holds = [...change.add, ...this.#holds];
      this.#releases = [...change.release, ...this.#releases];
      throw error;
    }
    for (const id of change.release) this.#keys.delete(id);
    for (const f of change.add) this.#o.onHeld?.(f);
  }

  /** Takes and writes everything waiting. */
  flush(): Promise<void> {
    return this.write(this.take());
  }
}
