/**
 * The cases every {@linkcode StateStore} backend must pass, registered by
 * {@linkcode storeCases} for one backend (as hono's routers share `common.case.test.ts`): a
 * new backend is one small test file calling it. Cases that need a store to survive a restart
 * run only where the backend persists; those of two stores open on one place at once (two
 * processes, the lease deciding who writes) only where the backend allows it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { DEDUPE_WINDOW_MS, INBOX_CAPACITY } from "../../lib/state/inbox.ts";
import type { ConnectionState } from "../../lib/state/schema.ts";
import {
  FencedError,
  type Inbox,
  type InboxEntry,
  type Lease,
  type StateStore,
} from "../../lib/state/store.ts";
import { nextState, record } from "../../lib/state/transitions.ts";
import { put, sampleState } from "./_helpers.ts";

/** Where one backend keeps a store's data; every case gets a new, empty one. */
export interface StorePlace {
  /**
   * Opens a store on this place: the first one, the next process's after a restart (once the
   * first is closed), or, where the backend allows it, a second process's beside the first.
   */
  open(clock: FakeClock): Promise<StateStore>;
  /** Removes the place (every store on it is closed by then). */
  remove(): Promise<void>;
}

/** One backend, as {@linkcode storeCases} runs it. */
export interface StoreBackend {
  /** Names the backend's tests, e.g. `FileStore`. */
  name: string;
  /** What its stores' `kind` says. */
  kind: StateStore["kind"];
  /** A new, empty place. */
  place(): Promise<StorePlace>;
  /** Whether a store opened on a place after a restart finds what an earlier one wrote. */
  persists?: boolean;
  /**
   * Present when two stores may be open on one place at once, leases excluding each other
   * (Deno KV): how long a lease lasts without renewal.
   */
  shared?: { leaseMs: number };
}

/** What a case works with: the store under test on a new place, and how to open more. */
export interface StoreContext {
  /** The first store opened on the place. */
  store: StateStore;
  /** Its clock, which only the case moves. */
  clock: FakeClock;
  /**
   * Closes the latest store opened by it (at first `store`) and opens the place again, as the
   * next process after a restart would.
   */
  restart(): Promise<StateStore>;
  /** Opens another store on the place beside `store` (a backend with `shared` only). */
  openPeer(clock: FakeClock): Promise<StateStore>;
}

/** A webhook event about member `n`, different for each `n`. */
export function event(n: number): InboxEntry {
  return {
    type: n % 3 === 2 ? "unsubscribe" : "profile",
    receivedAtMs: Date.UTC(2026, 0, 1) + n,
    firedAtMs: n % 2 === 0 ? Date.UTC(2026, 0, 1) + n - 500 : null,
    action: n % 3 === 2 ? "unsub" : null,
    memberIds: [n.toString(16).padStart(32, "0")],
  };
}

/**
 * A place in a new temporary folder, where `open` opens a store on `<folder>/<name>`: the
 * place of a backend that keeps its data in files.
 */
export async function tempPlace(
  name: string,
  open: (path: string, clock: FakeClock) => Promise<StateStore>,
): Promise<StorePlace> {
  const dir = await Deno.makeTempDir({ prefix: "store_cases_" });
  return {
    open: (clock) => open(`${dir}/${name}`, clock),
    remove: () => Deno.remove(dir, { recursive: true }),
  };
}

/** Runs `fn` with a new place of `backend`, closing every store it opened and removing it. */
export async function withStore(
  backend: StoreBackend,
  fn: (context: StoreContext) => Promise<void>,
): Promise<void> {
  const place = await backend.place();
  const opened: StateStore[] = [];
  const open = async (clock: FakeClock) => {
    const store = await place.open(clock);
    opened.push(store);
    return store;
  };
  try {
    const clock = new FakeClock();
    const store = await open(clock);
    let latest = store;
    await fn({
      store,
      clock,
      restart: async () => {
        await latest.close();
        return latest = await open(clock);
      },
      openPeer: open,
    });
  } finally {
    // Closing twice is safe on every store.
    for (const store of opened) await store.close();
    await place.remove();
  }
}

/** Registers the shared store cases for `backend`, each on a new place. */
export function storeCases(backend: StoreBackend): void {
  const test = (what: string, fn: (context: StoreContext) => Promise<void>) =>
    Deno.test(`${backend.name}: ${what}`, () => withStore(backend, fn));
  _stateCases(backend, test);
  _leaseCases(test);
  _inboxCases(test);
  _capacityCases(test);
  if (backend.persists) _restartCases(test);
  if (backend.shared) _sharedCases(backend.shared.leaseMs, test);
}

type _Test = (what: string, fn: (context: StoreContext) => Promise<void>) => void;

function _stateCases(backend: StoreBackend, test: _Test): void {
  test("a new store has no connections and says which backend it is", async ({ store }) => {
    assert.equal(store.kind, backend.kind);
    assert.equal(await store.get("a"), undefined);
    assert.deepEqual(await store.list(), []);
  });

  test("update() stores a copy and returns it; get() and list() return copies, by id", async ({ store }) => {
    const state = sampleState("b");
    assert.deepEqual(await put(store, state), sampleState("b"));
    await put(store, sampleState("a"));
    state.status = "failed";
    const got = await store.get("b");
    assert.deepEqual(got, sampleState("b"));
    got!.failures = 7;
    (await store.list())[1]!.watermark = null;
    assert.deepEqual(await store.get("b"), sampleState("b"));
    assert.deepEqual((await store.list()).map((s) => s.id), ["a", "b"]);
    await store.flush();
    assert.deepEqual(await store.list(), [sampleState("a"), sampleState("b")]);
  });

  test("update() hands fn a copy of the current state, and undefined from fn changes nothing", async ({ store }) => {
    const seen: (ConnectionState | undefined)[] = [];
    assert.equal(await store.update("a", (s) => void seen.push(s)), undefined);
    assert.deepEqual(seen, [undefined]);
    assert.deepEqual(await store.list(), [], "nothing stored for a connection that never ran");
    await put(store, sampleState("a"));
    assert.deepEqual(await store.update("a", () => undefined), sampleState("a"));
    // fn must be pure; one that is not still cannot change the store through its argument.
    await store.update("a", (s) => {
      s!.failures = 5;
      return undefined;
    });
    assert.deepEqual(await store.get("a"), sampleState("a"));
  });

  test("update() applies fn to the latest state: concurrent updates lose none", async ({ store }) => {
    await put(store, sampleState("a"));
    const bump = () => store.update("a", (s) => ({ ...s!, failures: s!.failures + 1 }));
    const results = await Promise.all(Array.from({ length: 20 }, bump));
    // Each write built on the one before it: no two saw the same state.
    const counts = results.map((s) => s!.failures).sort((x, y) => x - y);
    assert.deepEqual(counts, Array.from({ length: 20 }, (_, i) => i + 1));
    assert.equal((await store.get("a"))?.failures, 20);
  });

  test("update() refuses an invalid state, rejecting, and writes nothing", async ({ store }) => {
    await put(store, sampleState("a"));
    await assert.rejects(put(store, { ...sampleState("a"), watermark: "not a time" }), {
      message: /Invalid ISO datetime/,
    });
    await assert.rejects(put(store, { ...sampleState("b"), failures: -1 }), /failures/);
    assert.deepEqual(await store.get("a"), sampleState("a"));
    assert.equal(await store.get("b"), undefined);
  });

  test("update() refuses a state whose id is not the connection's", async ({ store }) => {
    await assert.rejects(
      store.update("a", () => sampleState("b")),
      new TypeError("Cannot store the state of 'b' as connection 'a'"),
    );
    assert.deepEqual(await store.list(), []);
  });
}

function _leaseCases(test: _Test): void {
  test("acquire() gives a connection to one holder at a time in one store", async ({ store }) => {
    const [x, y] = await Promise.all([store.acquire("a"), store.acquire("a")]);
    assert.equal([x, y].filter((l) => l !== undefined).length, 1, "exactly one wins a race");
    const lease = (x ?? y)!;
    assert.equal(await store.acquire("a"), undefined);
    assert.ok(await store.acquire("b"), "other connections stay free");
    await lease.release();
    await lease.release();
    const again = await store.acquire("a");
    assert.ok(again, "a released lease can be taken");
    // A late second release of the old lease must not free the new holder's claim.
    await lease.release();
    assert.equal(await store.acquire("a"), undefined);
  });

  test("a fenced update writes while the lease holds and is FencedError once it is released", async ({ store }) => {
    const lease = (await store.acquire("a"))!;
    await store.update("a", () => sampleState("a"), lease.fence);
    lease.fence.assertHeld();
    assert.equal(lease.fence.connectionId, "a");
    assert.equal(lease.fence.signal.aborted, false);
    await lease.release();
    _assertLost(lease);
    let calls = 0;
    const fn = (s: ConnectionState | undefined) => {
      calls++;
      return { ...s!, failures: 1 };
    };
    await assert.rejects(store.update("a", fn, lease.fence), FencedError);
    assert.equal(calls, 0, "fn is not even called");
    assert.deepEqual(await store.get("a"), sampleState("a"));
  });

  test("close() ends every lease, leaves no timer, and the next store can take them", async ({ store, clock, restart }) => {
    const leases = [(await store.acquire("a"))!, (await store.acquire("b"))!];
    await store.close();
    for (const lease of leases) _assertLost(lease);
    assert.equal(clock.pendingTimers, 0, "no renewal outlives the store");
    const next = await restart();
    assert.ok(await next.acquire("a"));
    assert.ok(await next.acquire("b"));
  });
}

/** Asserts that `lease`'s fence no longer holds. */
function _assertLost(lease: Lease): void {
  assert.throws(() => lease.fence.assertHeld(), FencedError);
  assert.ok(lease.fence.signal.aborted);
  assert.ok(lease.fence.signal.reason instanceof FencedError);
}

/** Removes every entry of connection `id`'s inbox under a lease of its own. */
async function _drain(store: StateStore, id: string): Promise<void> {
  const lease = (await store.acquire(id))!;
  const items = await store.inbox(id).peek(INBOX_CAPACITY);
  await store.inbox(id).remove(items.map((item) => item.seq), lease.fence);
  await lease.release();
}

/** A few turns of the event loop (no time passes): what was about to happen has happened. */
async function _turns(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

/** Whether `promise` has settled, watched from now on. */
function _watch(promise: Promise<unknown>): { readonly settled: boolean } {
  const state = { settled: false };
  promise.then(() => state.settled = true, () => state.settled = true);
  return state;
}

function _inboxCases(test: _Test): void {
  test("an inbox gives entries back in append order, at most max at a time, as copies", async ({ store }) => {
    // A fresh inbox object for each append, as the receiver takes one per request.
    for (let n = 0; n < 5; n++) {
      assert.equal(await store.inbox("a").append(event(n), `k${n}`), "queued");
    }
    const items = await store.inbox("a").peek(10);
    assert.deepEqual(items.map((item) => item.entry), [0, 1, 2, 3, 4].map(event));
    const seqs = items.map((item) => item.seq);
    assert.deepEqual([...new Set(seqs)].sort(), seqs, "seqs increase with every append");
    assert.deepEqual(await store.inbox("a").peek(2), items.slice(0, 2));
    items[0]!.entry.memberIds.push("changed");
    const appended = event(5);
    await store.inbox("a").append(appended, "k5");
    appended.memberIds.push("changed");
    assert.deepEqual(
      (await store.inbox("a").peek(10)).map((i) => i.entry),
      [0, 1, 2, 3, 4, 5].map(event),
    );
    assert.deepEqual(await store.inbox("b").peek(10), [], "inboxes are per connection");
  });

  test("a delivery appended again within the window is a duplicate, even after its removal", async ({ store, clock }) => {
    const inbox = store.inbox("a");
    assert.equal(await inbox.append(event(1), "k"), "queued");
    assert.equal(await inbox.append(event(2), "k"), "duplicate");
    assert.equal(await store.inbox("b").append(event(3), "k"), "queued", "keys are per connection");
    assert.deepEqual((await inbox.peek(10)).map((item) => item.entry), [event(1)]);
    await _drain(store, "a");
    assert.equal(await inbox.append(event(2), "k"), "duplicate");
    await clock.tick(DEDUPE_WINDOW_MS - 1);
    assert.equal(await inbox.append(event(2), "k"), "duplicate");
    await clock.tick(1);
    assert.equal(await inbox.append(event(2), "k"), "queued", "the window has passed");
    assert.deepEqual((await inbox.peek(10)).map((item) => item.entry), [event(2)]);
  });

  test("remove() takes entries out by seq while the fence holds, and nothing once it is lost", async ({ store }) => {
    const inbox = store.inbox("a");
    for (let n = 0; n < 4; n++) await inbox.append(event(n), `k${n}`);
    const [i0, i1, i2, i3] = await inbox.peek(10);
    const lease = (await store.acquire("a"))!;
    await inbox.remove([i1!.seq, i3!.seq], lease.fence);
    assert.deepEqual(await inbox.peek(10), [i0, i2]);
    // Removing again, or nothing, changes nothing (and counts nothing down twice).
    await inbox.remove([i1!.seq], lease.fence);
    await inbox.remove([], lease.fence);
    assert.deepEqual(await inbox.peek(10), [i0, i2]);
    assert.deepEqual(await store.pendingInboxes(), ["a"]);
    await lease.release();
    await assert.rejects(inbox.remove([i0!.seq], lease.fence), FencedError);
    assert.deepEqual(await inbox.peek(10), [i0, i2]);
    await _drain(store, "a");
    assert.deepEqual(await store.pendingInboxes(), []);
  });

  test("changed() resolves at once while entries wait, else at the next append, or on abort", async ({ store }) => {
    const inbox = store.inbox("a");
    const waiting = inbox.changed(new AbortController().signal);
    const watched = _watch(waiting);
    await _turns();
    assert.equal(watched.settled, false, "nothing waits yet");
    await store.inbox("b").append(event(1), "k1");
    await _turns();
    assert.equal(watched.settled, false, "another connection's append is not this one's");
    await store.inbox("a").append(event(2), "k2");
    await waiting;
    await inbox.changed(new AbortController().signal); // an entry waits: at once
    await _drain(store, "a");
    const abort = new AbortController();
    const aborted = inbox.changed(abort.signal);
    abort.abort();
    await aborted;
    await inbox.changed(abort.signal); // aborted before the call
  });

  test("pendingInboxes() names the connections whose inbox holds entries", async ({ store }) => {
    assert.deepEqual(await store.pendingInboxes(), []);
    await store.inbox("b").append(event(1), "k1");
    await store.inbox("a").append(event(2), "k2");
    await store.inbox("a").append(event(3), "k3");
    assert.deepEqual((await store.pendingInboxes()).sort(), ["a", "b"]);
    await _drain(store, "a");
    assert.deepEqual(await store.pendingInboxes(), ["b"]);
  });

  test("onInboxAppended() wakes with the connection at each queued append until aborted", async ({ store }) => {
    const woken: string[] = [];
    const abort = new AbortController();
    store.onInboxAppended((id) => woken.push(id), abort.signal);
    const never = new AbortController();
    never.abort();
    store.onInboxAppended((id) => woken.push(`never ${id}`), never.signal);
    await store.inbox("a").append(event(1), "k1");
    await store.inbox("a").append(event(1), "k1"); // a duplicate queues nothing
    await store.inbox("b").append(event(2), "k2");
    assert.deepEqual(woken, ["a", "b"]);
    abort.abort();
    await store.inbox("a").append(event(3), "k3");
    assert.deepEqual(woken, ["a", "b"]);
  });
}

/**
 * Appends `count` entries with keys `<prefix><n>`, ten at a time: quick on a file (they share
 * its syncs) without more racing appends than Deno KV retries.
 */
async function _fill(inbox: Inbox, count: number, prefix: string): Promise<void> {
  for (let n = 0; n < count; n += 10) {
    const batch = Array.from({ length: Math.min(10, count - n) }, (_, i) => n + i);
    const outcomes = await Promise.all(batch.map((m) => inbox.append(event(m), `${prefix}${m}`)));
    assert.ok(outcomes.every((outcome) => outcome === "queued"), `appends from ${n}: ${outcomes}`);
  }
}

function _capacityCases(test: _Test): void {
  test("a full inbox answers `full`, even to appends racing for its last place, until one is removed", async ({ store }) => {
    const inbox = store.inbox("a");
    await _fill(inbox, INBOX_CAPACITY - 1, "k");
    const racing = await Promise.all([1, 2, 3, 4, 5].map((n) => inbox.append(event(n), `r${n}`)));
    assert.deepEqual(racing.filter((o) => o === "queued").length, 1, `outcomes: ${racing}`);
    assert.deepEqual(racing.filter((o) => o === "full").length, 4, `outcomes: ${racing}`);
    assert.equal((await inbox.peek(INBOX_CAPACITY + 10)).length, INBOX_CAPACITY);
    assert.equal(await inbox.append(event(0), "late"), "full");
    assert.equal(await inbox.append(event(0), "k7"), "duplicate", "a queued delivery is not 503'd");
    assert.equal(await store.inbox("b").append(event(0), "late"), "queued", "only `a` is full");
    const lease = (await store.acquire("a"))!;
    await inbox.remove([(await inbox.peek(1))[0]!.seq], lease.fence);
    await lease.release();
    // A delivery refused as full was not remembered: its retry is queued.
    assert.equal(await inbox.append(event(0), "late"), "queued");
    assert.equal(await inbox.append(event(0), "later"), "full");
  });
}

function _restartCases(test: _Test): void {
  test("what was updated is there after a restart, and what was refused is not", async ({ store, restart }) => {
    await put(store, sampleState("b"));
    await put(store, sampleState("a"));
    await assert.rejects(put(store, { ...sampleState("c"), failures: -1 }));
    await assert.rejects(store.update("d", () => sampleState("c")));
    await store.flush();
    const again = await restart();
    assert.deepEqual(await again.get("a"), sampleState("a"));
    assert.deepEqual(await again.list(), [sampleState("a"), sampleState("b")]);
  });

  test("the last verify is kept across a restart, with since when it differs", async ({ store, restart }) => {
    await put(store, sampleState("a"));
    const summary = {
      at: "2026-01-01T00:00:00.000Z",
      mode: "sample" as const,
      checked: 1000,
      missing: 1,
      stale: 2,
      extra: 0,
      fields: ["firstname", "properties.plan"],
      repaired: 0,
    };
    await store.update("a", (s) => s && nextState(s, { type: "verified", summary }));
    await store.flush();
    const again = await restart();
    assert.deepEqual((await again.get("a"))?.last_verify, {
      ...summary,
      diverged_since: summary.at,
    });
  });

  test("an inbox keeps its entries across a restart, not removed ones, and goes on after them", async ({ store, clock, restart }) => {
    for (let n = 0; n < 3; n++) await store.inbox("a").append(event(n), `k${n}`);
    await store.inbox("b").append(event(3), "k3");
    const [i0, i1, i2] = await store.inbox("a").peek(10);
    const lease = (await store.acquire("a"))!;
    await store.inbox("a").remove([i1!.seq], lease.fence);
    await lease.release();
    // A restart takes time (Deno KV's sequence numbers begin with it).
    await clock.tick(1000);
    let again = await restart();
    assert.deepEqual(await again.inbox("a").peek(10), [i0, i2]);
    assert.deepEqual((await again.inbox("b").peek(10)).map((item) => item.entry), [event(3)]);
    assert.deepEqual((await again.pendingInboxes()).sort(), ["a", "b"]);
    await again.inbox("a").append(event(4), "k4");
    const items = await again.inbox("a").peek(10);
    assert.deepEqual(items.map((item) => item.entry), [0, 2, 4].map(event));
    assert.ok(items[2]!.seq > i2!.seq, "a later append sorts after the entries kept");
    await _drain(again, "a");
    again = await restart();
    assert.deepEqual(await again.inbox("a").peek(10), []);
    assert.deepEqual(await again.pendingInboxes(), ["b"]);
  });
}

function _sharedCases(leaseMs: number, test: _Test): void {
  test("two stores on one place: only one holds a connection", async ({ store, clock, openPeer }) => {
    const peer = await openPeer(clock);
    const [a, b] = await Promise.all([store.acquire("c1"), peer.acquire("c1")]);
    assert.equal([a, b].filter((l) => l !== undefined).length, 1, "exactly one wins a race");
    const lease = (a ?? b)!;
    const [holder, other] = a ? [store, peer] : [peer, store];
    assert.equal(await other.acquire("c1"), undefined);
    assert.equal(await holder.acquire("c1"), undefined, "not twice in one process either");
    assert.ok(await other.acquire("c2"), "other connections stay free");
    await lease.release();
    await lease.release();
    assert.ok(await other.acquire("c1"), "a released lease can be taken");
    assert.equal(await holder.acquire("c1"), undefined);
  });

  test("a holder whose lease expired cannot write once another store took it over", async ({ store, openPeer }) => {
    // The store's clock never moves, so it never renews: a hung process.
    const old = (await store.acquire("a"))!;
    await store.update("a", () => sampleState("a"), old.fence);
    const clock = new FakeClock();
    const peer = await openPeer(clock);
    await clock.tick(leaseMs - 1);
    assert.equal(await peer.acquire("a"), undefined, "not before it expires");
    await clock.tick(2);
    const taken = await peer.acquire("a");
    assert.ok(taken, "an expired lease can be taken over");
    await peer.inbox("a").append(event(1), "k1");
    const items = await store.inbox("a").peek(10);
    await assert.rejects(
      store.update("a", (s) => ({ ...s!, failures: 9 }), old.fence),
      FencedError,
    );
    _assertLost(old);
    await assert.rejects(store.inbox("a").remove([items[0]!.seq], old.fence), FencedError);
    assert.deepEqual(await peer.inbox("a").peek(10), items);
    await peer.update("a", (s) => ({ ...s!, failures: 1 }), taken.fence);
    assert.equal((await store.get("a"))?.failures, 1);
    // The old holder letting go late must not free the new holder's lease.
    await old.release();
    const third = await openPeer(clock);
    assert.equal(await third.acquire("a"), undefined);
    await taken.release();
    assert.ok(await third.acquire("a"));
  });

  test("two stores updating one connection at once lose no write", async ({ store, clock, openPeer }) => {
    const peer = await openPeer(clock);
    const conn = { id: "c", listId: "list-c" };
    const summary = {
      started_at: "2026-01-01T00:00:00.000Z",
      finished_at: "2026-01-01T00:00:01.000Z",
      outcome: "failed" as const,
      read: 0,
      pushed: 0,
      rejected: 0,
      duration_ms: 1000,
      mailchimp_requests: 1,
      ometria_requests: 0,
    };
    const fail = (s: StateStore) =>
      record(s, conn, { type: "run-failed", at: 0, run: null, summary, error: "x" });
    const alert = (s: StateStore, n: number) =>
      record(s, conn, {
        type: "alert",
        alert: { behind_since: new Date(n).toISOString(), last_alert_at: null },
      });
    // Each failure increments a counter read from the stored state: a lost update would show
    // as a count below 40.
    await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) => [fail(store), fail(peer), alert(i % 2 ? store : peer, i)],
      )
        .flat(),
    );
    const final = await store.get("c");
    assert.equal(final?.failures, 40);
    assert.equal(final?.status, "failed");
    assert.notEqual(final?.alert.behind_since, null);
  });

  test("an append by another store wakes changed() and shows in pendingInboxes(), not in onInboxAppended()", async ({ store, clock, openPeer }) => {
    const peer = await openPeer(clock);
    const woken: string[] = [];
    const abort = new AbortController();
    store.onInboxAppended((id) => woken.push(id), abort.signal);
    const waiting = store.inbox("a").changed(new AbortController().signal);
    await peer.inbox("a").append(event(1), "k1");
    await waiting;
    assert.deepEqual(await store.pendingInboxes(), ["a"]);
    assert.deepEqual((await store.inbox("a").peek(10)).map((item) => item.entry), [event(1)]);
    assert.equal(await store.inbox("a").append(event(1), "k1"), "duplicate", "seen by either");
    assert.deepEqual(woken, [], "the process that received it wakes its own writer");
    abort.abort();
  });
}
