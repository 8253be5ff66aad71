import assert from "node:assert/strict";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import { put, sampleState } from "./_helpers.ts";

Deno.test("MemoryStore round-trips connection state as copies", async () => {
  const store = new MemoryStore();
  assert.equal(store.kind, "memory");
  assert.equal(await store.get("a"), undefined);
  const state = sampleState("b");
  await put(store, state);
  await put(store, sampleState("a"));
  state.status = "failed";
  const got = await store.get("b");
  assert.deepEqual(got, sampleState("b"));
  got!.failures = 7;
  assert.deepEqual(await store.get("b"), sampleState("b"));
  assert.deepEqual((await store.list()).map((s) => s.id), ["a", "b"]);
  await store.flush();
  assert.deepEqual((await store.list()).map((s) => s.id), ["a", "b"]);
  await store.close();
});

Deno.test("MemoryStore update() rejects an invalid state", async () => {
  const store = new MemoryStore();
  const bad = { ...sampleState("a"), watermark: "not a time" };
  await assert.rejects(put(store, bad), /Invalid ISO datetime/);
  assert.equal(await store.get("a"), undefined);
});

Deno.test("MemoryStore acquire() refuses a connection already held in this process", async () => {
  const store = new MemoryStore();
  const lease = await store.acquire("a");
  assert.ok(lease);
  assert.equal(await store.acquire("a"), undefined);
  assert.ok(await store.acquire("b"));
  await lease.release();
  const again = await store.acquire("a");
  assert.ok(again);
  // A late second release of the old lease must not free the new holder's claim.
  await lease.release();
  assert.equal(await store.acquire("a"), undefined);
  await store.close();
});
