/**
 * The pusher's mechanisms over real HTTP: acknowledgements in order whatever order Ometria
 * answers in, the bounds on what runs ahead of a slow batch (what a crash can cost), reading
 * held back while pushing is behind, and stops.
 */
import assert from "node:assert/strict";
import { instantPushClient } from "../_helpers/instant_sink.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import {
  OrderedPusher,
  type OutgoingRecord,
  StoppedError,
} from "../../lib/engine/push_in_order.ts";
import { toRecordJson } from "../../lib/mapping/contact.ts";
import { OmetriaSimulator } from "../../lib/sim/ometria_sim.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { recordHash } from "../../lib/state/record_hash.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import { ConnectionWriter } from "../../lib/writer/connection_writer.ts";
import { until } from "../_helpers/until.ts";

const SLOW_MS = 10_000;

/** Ometria whose "slow" answers wait for the test to move `clock`. */
async function world() {
  const clock = new FakeClock(Date.UTC(2026, 10, 1));
  const sim = await OmetriaSimulator.start({
    clock,
    maxRequestsPerSecond: 0,
    faults: { slowMs: SLOW_MS },
  });
  const ometria = instantPushClient(sim);
  // Batches go through the connection's writer, as every push does.
  const store = new MemoryStore({ clock });
  const lease = (await store.acquire("list1"))!;
  const client = new ConnectionWriter({
    connection: { id: "list1", listId: "list1" },
    store,
    lease,
    sink: ometria,
    clock,
    logger: quietLogger(),
  });
  return { clock, sim, client };
}

/** Batch `i` (from 0): one record, changed at second `i`; reaching `i + 1` when done. */
function record(i: number): OutgoingRecord {
  const json = toRecordJson({
    "@type": "contact",
    "@collection": "mailchimp-list1",
    id: _id(i),
    email: `m${i}@example.com`,
    firstname: "",
    lastname: "",
    marketing_optin: "NOT_SPECIFIED",
  });
  return {
    ...json,
    versionMs: i * 1000,
    gone: false,
    final: true,
    hash: recordHash(json.json),
    readSeq: 1,
  };
}

function _id(i: number): string {
  return i.toString(16).padStart(32, "0");
}

Deno.test("OrderedPusher acknowledges in order and runs at most 2 × concurrency batches past a slow one", async () => {
  const { clock, sim, client } = await world();
  try {
    const acks: { reach: number; pushed: number }[] = [];
    const pusher = new OrderedPusher({
      sink: client,
      connectionId: "list1",
      concurrency: 2,
      queued: 3,
      onAcknowledged: (reach, counts) => {
        acks.push({ reach, pushed: counts.pushed });
        return Promise.resolve();
      },
      onRejected: () => assert.fail("nothing is rejected"),
    });
    sim.faults.queue("slow"); // the first batch's answer waits for the clock
    let added = 0;
    const feeding = pusher.feed(async () => {
      for (let i = 0; i < 30; i++) {
        await pusher.add([record(i)], (i + 1) * 1000);
        added = i + 1;
      }
    });
    // Batches 2 to 4 are answered; the 5th may not start while the 1st is unacknowledged.
    await until(() => sim.stats.requests === 4 && clock.pendingTimers === 1, "4 requests");
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(sim.stats.requests, 4, "2 × concurrency batches started, no more");
    assert.equal(acks.length, 0, "the reach waits for the first batch");
    assert.equal(added, 4 + 3, "reading waits too: 3 batches queued beyond those started");

    await clock.tick(SLOW_MS);
    await feeding;
    assert.equal(sim.stats.recordsReceived, 30);
    assert.deepEqual(acks[0], { reach: 4_000, pushed: 4 }, "the first four at once");
    for (let i = 1; i < acks.length; i++) {
      assert.ok(acks[i]!.reach > acks[i - 1]!.reach, "the reach only grows");
    }
    assert.equal(acks.at(-1)!.reach, 30_000);
    assert.equal(acks.reduce((sum, a) => sum + a.pushed, 0), 30);
  } finally {
    await sim.close();
  }
});

Deno.test("OrderedPusher runs at most 2 × concurrency batches past the last checkpoint written", async () => {
  const { sim, client } = await world();
  try {
    const writing = Promise.withResolvers<void>();
    const acks: number[] = [];
    const pusher = new OrderedPusher({
      sink: client,
      connectionId: "list1",
      concurrency: 2,
      // The first checkpoint takes as long as the test says: Ometria answers meanwhile.
      onAcknowledged: async (reach) => {
        if (acks.length === 0) await writing.promise;
        acks.push(reach);
      },
      onRejected: () => assert.fail("nothing is rejected"),
    });
    const feeding = pusher.feed(async () => {
      for (let i = 0; i < 30; i++) await pusher.add([record(i)], (i + 1) * 1000);
    });
    await until(() => sim.stats.requests === 4, "4 requests");
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(sim.stats.requests, 4, "no batch beyond the bound while the write is slow");
    writing.resolve();
    await feeding;
    assert.equal(sim.stats.recordsReceived, 30);
    assert.equal(acks.at(-1), 30_000);
  } finally {
    await sim.close();
  }
});

Deno.test("OrderedPusher on a graceful stop lets batches in flight finish, reports them, then throws", async () => {
  const { clock, sim, client } = await world();
  try {
    const stop = new AbortController();
    const acks: number[] = [];
    const pusher = new OrderedPusher({
      sink: client,
      connectionId: "list1",
      concurrency: 2,
      signal: stop.signal,
      onAcknowledged: (reach) => {
        acks.push(reach);
        return Promise.resolve();
      },
      onRejected: () => {},
    });
    sim.faults.queue("slow", "slow");
    const feeding = pusher.feed(async () => {
      for (let i = 0; i < 10; i++) await pusher.add([record(i)], (i + 1) * 1000);
    });
    const rejected = assert.rejects(feeding, StoppedError);
    await until(() => clock.pendingTimers === 2, "two batches in flight");
    stop.abort();
    await clock.tick(SLOW_MS);
    await rejected;
    assert.equal(sim.stats.recordsReceived, 2, "no batch started after the stop");
    assert.equal(acks.at(-1), 2_000, "the two in flight were acknowledged");
  } finally {
    await sim.close();
  }
});

Deno.test("OrderedPusher fails when a checkpoint cannot be written, and acknowledges nothing after it", async () => {
  const { sim, client } = await world();
  try {
    const acks: number[] = [];
    const pusher = new OrderedPusher({
      sink: client,
      connectionId: "list1",
      concurrency: 1,
      onAcknowledged: (reach) => {
        if (reach === 3_000) return Promise.reject(new Error("disk full"));
        acks.push(reach);
        return Promise.resolve();
      },
      onRejected: () => {},
    });
    await assert.rejects(
      pusher.feed(async () => {
        for (let i = 0; i < 10; i++) await pusher.add([record(i)], (i + 1) * 1000);
      }),
      /disk full/,
    );
    assert.deepEqual(acks, [1_000, 2_000]);
    assert.ok(sim.stats.recordsReceived < 10, `${sim.stats.recordsReceived} sent`);
  } finally {
    await sim.close();
  }
});
