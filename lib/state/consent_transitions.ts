/**
 * The consent and erasure part of a connection's state transitions (see `transitions.ts`,
 * which applies these): pure functions of the state's `optout_back` and `erasures` and one
 * event, so the one owner of connection state stays one function.
 *
 * @module
 */
import type { ConnectionState, ErasureRecord, OptoutBack, OptoutDone } from "./schema.ts";

/** Events of Ometria → Mailchimp unsubscribes (engine/optout_back.ts). Times are epoch ms. */
export type OptoutEvent =
  /**
   * Unsubscribes acted on (`done`), and others counted as not this connection's
   * (`notOurs`); with `throughMs`, every unsubscribe stamped before it has been acted on,
   * and the watermark moves there (`done` older than `throughMs − lookbackMs` are dropped).
   * `startMs` is the watermark of a connection polled for the first time.
   */
  | {
    type: "optouts";
    at: number;
    startMs: number;
    done: readonly OptoutDone[];
    notOurs: number;
    throughMs?: number | undefined;
    lookbackMs: number;
  }
  /** A poll failed; its watermark stays. */
  | { type: "optout-failed"; at: number; startMs: number; error: string };

/** Events of erasures (engine/erasure.ts). */
export type ErasureEvent =
  /**
   * An erasure filed (or that failed to be): replaces the open record of the same identity.
   * `salt` is the one its identity was hashed with, kept when the connection had none.
   */
  | { type: "erasure-filed"; record: ErasureRecord; salt: string }
  /** Ometria was asked about the open erasures at `at`; those of `completed` are done. */
  | { type: "erasures-checked"; at: number; completed: readonly string[] }
  /** `erasure.overdue` was raised at `at` for these identities. */
  | { type: "erasures-alerted"; at: number; identities: readonly string[] };

function _iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** `optout_back` after `event`. Pure. */
export function nextOptoutBack(state: OptoutBack | null, event: OptoutEvent): OptoutBack {
  const base: OptoutBack = state ?? {
    watermark: _iso(event.startMs),
    recent: [],
    applied: 0,
    not_ours: 0,
    gone: 0,
    refused: 0,
    last_polled_at: null,
    last_applied_at: null,
    last_error: null,
  };
  if (event.type === "optout-failed") return { ...base, last_error: event.error };
  const count = (outcome: OptoutDone["outcome"]) =>
    event.done.filter((d) => d.outcome === outcome).length;
  const watermarkMs = Math.max(Date.parse(base.watermark), event.throughMs ?? -Infinity);
  const keepFrom = watermarkMs - event.lookbackMs;
  const applied = count("applied");
  return {
    watermark: _iso(watermarkMs),
    recent: [...base.recent, ...event.done].filter((d) => Date.parse(d.at) >= keepFrom),
    applied: base.applied + applied,
    not_ours: base.not_ours + event.notOurs,
    gone: base.gone + count("gone"),
    refused: base.refused + count("refused"),
    last_polled_at: event.throughMs === undefined ? base.last_polled_at : _iso(event.at),
    last_applied_at: applied > 0 ? _iso(event.at) : base.last_applied_at,
    last_error: event.throughMs === undefined ? base.last_error : null,
  };
}

/** `erasures` after `event`. Pure. */
export function nextErasures(
  state: ConnectionState["erasures"],
  event: ErasureEvent,
): ConnectionState["erasures"] {
  switch (event.type) {
    case "erasure-filed":
      return {
        ...state,
        salt: state.salt ?? event.salt,
        open: [...state.open.filter((r) => r.identity !== event.record.identity), event.record],
      };
    case "erasures-checked": {
      const done = new Set(event.completed);
      const open = state.open.filter((r) => !done.has(r.identity));
      return {
        ...state,
        open,
        completed: state.completed + (state.open.length - open.length),
        checked_at: _iso(event.at),
      };
    }
    case "erasures-alerted": {
      const alerted = new Set(event.identities);
      return {
        ...state,
        open: state.open.map((r) =>
          alerted.has(r.identity) ? { ...r, alerted_at: _iso(event.at) } : r
        ),
      };
    }
  }
}
