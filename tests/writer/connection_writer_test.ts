/**
 * ConnectionWriter.push over real HTTP against the Ometria simulator, on a memory store: what
 * one push sends and writes ahead, how a member's second push waits for the request carrying
 * its first, and which entry an acknowledgement marks.
 */
import assert from "node:assert/strict";
import { instantPushClient } from "../_helpers/instant_sink.ts";
import { collectionFor, toRecordJson } from "../../lib/mapping/contact.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { OmetriaSimulator } from "../../lib/sim/ometria_sim.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import { recordHash } from "../../lib/state/record_hash.ts";
import { ConnectionWriter, type GatedRecord } from "../../lib/writer/connection_writer.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";

const LIST = "list1";

async function world() {
  const clock = new FakeClock(Date.UTC(2026, 10, 1));
  const sim = await OmetriaSimulator.start({ clock, maxRequestsPerSecond: 0 });
  const sink = instantPushClient(sim);
  const store = new MemoryStore({ clock });
  const lease = (await store.acquire(LIST))!;
  const writer = new ConnectionWriter({
    connection: { id: LIST, listId: LIST },
    store,
    lease,
    sink,
    clock,
    logger: quietLogger(),
  });
  return { sim, writer, store };
}

/** Member `n` as read at version `second` (its first name says which), read at `readSeq`. */
function read(n: number, second: number, readSeq: number): GatedRecord {
  const json = toRecordJson({
    "@type": "contact",
    "@collection": collectionFor(LIST),
    id: id(n),
    email: `m${n}@example.com`,
    firstname: `v${second}`,
    lastname: "",
    marketing_optin: "EXPLICITLY_OPTEDIN",
  });
  return {
    ...json,
    versionMs: second * 1000,
    gone: false,
    final: true,
    hash: recordHash(json.json),
    readSeq,
  };
}

function id(n: number): string {
  return n.toString(16).padStart(32, "0");
}

function firstName(sim: OmetriaSimulator, n: number): unknown {
  return sim.contacts(collectionFor(LIST)).get(id(n))?.firstname;
}

Deno.test("ConnectionWriter.push() sends a member read twice in one push once, as its later read", async () => {
  const { sim, writer, store } = await world();
  try {
    const seq = writer.nextSeq();
    const result = await writer.push([read(1, 10, seq), read(2, 10, seq), read(1, 11, seq)]);
    assert.deepEqual(
      { sent: result.sent, stale: result.stale, accepted: result.accepted },
      { sent: 2, stale: 1, accepted: 2 },
    );
    assert.equal(sim.stats.pushRequests, 1);
    assert.equal(sim.stats.recordsReceived, 2, "one request, the member once");
    assert.equal(firstName(sim, 1), "v11");
    const table = await writer.table();
    assert.equal(table.get(id(1))?.versionMs, 11_000);
    assert.equal(table.get(id(1))?.acked, true);
    // Written ahead, then acknowledged: what the next writer loads says the same.
    await writer.flushAcks();
    const saved = await store.ledger(LIST).load();
    assert.deepEqual(
      [...saved.entries()].map(([k, e]) => [k, e.versionMs, e.acked]),
      [[id(1), 11_000, true], [id(2), 10_000, true]],
    );
  } finally {
    await sim.close();
  }
});

Deno.test("ConnectionWriter.push() holds a member's next push until the request carrying it settles", async () => {
  const { sim, writer } = await world();
  try {
    const held = sim.holdPush((ids) => ids.includes(id(1)));
    const first = writer.push([read(1, 10, writer.nextSeq()), read(2, 10, writer.nextSeq())]);
    await held.arrived;
    // Read again while the first push is in flight: newer, so it is to be sent, but only once
    // the first request has settled (never two requests of one member at once).
    const second = writer.push([read(3, 10, writer.nextSeq()), read(1, 12, writer.nextSeq())]);
    // A push of other members only goes meanwhile.
    const other = await writer.push([read(4, 10, writer.nextSeq())]);
    assert.equal(other.sent, 1);
    assert.equal(firstName(sim, 4), "v10");
    assert.equal(firstName(sim, 3), undefined, "the second push waits, all of it");
    const table = await writer.table();
    assert.deepEqual(
      [table.get(id(1))?.versionMs, table.get(id(1))?.acked],
      [12_000, false],
      "the second push's entry, written ahead",
    );
    held.release();
    const [a, b] = await Promise.all([first, second]);
    assert.deepEqual([a.sent, b.sent], [2, 2]);
    assert.equal(sim.stats.pushRequests, 3);
    assert.equal(firstName(sim, 1), "v12", "the later read landed last");
    // The first push's acknowledgement did not mark the entry the second replaced; the
    // second's did.
    assert.deepEqual([table.get(id(1))?.versionMs, table.get(id(1))?.acked], [12_000, true]);
    assert.equal(table.get(id(2))?.acked, true);
  } finally {
    await sim.close();
  }
});

Deno.test("ConnectionWriter.push() leaves an entry a newer push replaced unacknowledged", async () => {
  const { sim, writer } = await world();
  try {
    const firstHeld = sim.holdPush((ids) => ids.includes(id(1)));
    const secondHeld = sim.holdPush((ids) => ids.includes(id(1)));
    const first = writer.push([read(1, 10, writer.nextSeq())]);
    await firstHeld.arrived;
    const second = writer.push([read(1, 12, writer.nextSeq())]);
    firstHeld.release();
    await first;
    await secondHeld.arrived;
    const table = await writer.table();
    // Ometria took version 10, but the entry is version 12's, still in flight.
    assert.deepEqual([table.get(id(1))?.versionMs, table.get(id(1))?.acked], [12_000, false]);
    // So a read of version 12 made now is sent again (not counted unchanged).
    secondHeld.release();
    await second;
    assert.equal(table.get(id(1))?.acked, true);
    const again = await writer.push([read(1, 12, writer.nextSeq())]);
    assert.deepEqual([again.sent, again.unchanged], [0, 1]);
  } finally {
    await sim.close();
  }
});
