import assert from "node:assert/strict";
import { recordOutcome, type RunEnd } from "../../lib/engine/run_outcome.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import { record } from "../../lib/state/transitions.ts";
import { ConnectionWriter } from "../../lib/writer/connection_writer.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";

const ID = "list000ro1";
const T = Date.UTC(2026, 10, 1, 12);
const COUNTS = {
  read: 10,
  pushed: 9,
  rejected: 1,
  unchanged: 0,
  mailchimpRequests: 2,
  ometriaRequests: 1,
};

async function writerOver(store: MemoryStore, clock: FakeClock) {
  const lease = (await store.acquire(ID))!;
  const writer = new ConnectionWriter({
    connection: { id: ID, listId: ID },
    store,
    lease,
    sink: { maxBatchSize: 100, pushJson: () => Promise.resolve({ accepted: 0, rejected: 0 }) },
    clock,
    logger: quietLogger(),
  });
  return { writer, lease };
}

function end(writer: ConnectionWriter, over: Partial<RunEnd> = {}): RunEnd {
  return {
    writer,
    outcome: "ok",
    error: undefined,
    completed: true,
    upperMs: T - 60_000,
    fullRead: false,
    startedMs: T - 5_000,
    resumedStartedAt: undefined,
    counts: COUNTS,
    findings: {},
    progress: null,
    sawArchived: false,
    ...over,
  };
}

Deno.test("recordOutcome() never reports ok over a member held in quarantine", async () => {
  const clock = new FakeClock(T);
  const store = new MemoryStore({ clock });
  const { writer } = await writerOver(store, clock);
  await record(store, writer.connection, {
    type: "quarantine",
    at: T,
    add: [{ id: "0".repeat(31) + "1", reason: "Ometria rejected it" }],
    release: [],
  }, writer.fence);
  const result = await recordOutcome(end(writer));
  assert.equal(result.outcome, "failed");
  assert.equal(result.completed, true, "the window itself is done: no backoff");
  assert.match(result.error!, /1 member\(s\) quarantined/);
  const state = await store.get(ID);
  assert.equal(state?.watermark, new Date(T - 60_000).toISOString());
  assert.equal(state?.last_run?.outcome, "failed");
});

Deno.test("recordOutcome() records nothing once the lease is lost, and says so", async () => {
  const clock = new FakeClock(T);
  const store = new MemoryStore({ clock });
  const { writer, lease } = await writerOver(store, clock);
  await lease.release(); // as when another process took the lease over
  const result = await recordOutcome(end(writer));
  assert.equal(result.outcome, "failed");
  assert.equal(result.fenced, true);
  assert.equal(result.completed, false);
  assert.match(result.error!, /another process may run this connection now/i);
  assert.equal(await store.get(ID), undefined, "no write under a lost lease");
});

Deno.test("recordOutcome() keeps the checkpoint of a run that did not complete", async () => {
  const clock = new FakeClock(T);
  const store = new MemoryStore({ clock });
  const { writer } = await writerOver(store, clock);
  const progress = {
    upper: new Date(T - 60_000).toISOString(),
    cursor: new Date(T - 3_600_000).toISOString(),
    started_at: new Date(T - 5_000).toISOString(),
    read: 10,
    pushed: 9,
    rejected: 1,
  };
  const result = await recordOutcome(
    end(writer, { outcome: "failed", error: "Mailchimp 503", completed: false, progress }),
  );
  assert.equal(result.outcome, "failed");
  const state = await store.get(ID);
  assert.deepEqual(state?.run, progress);
  assert.equal(state?.watermark, null);
  assert.equal(state?.failures, 1);
});
