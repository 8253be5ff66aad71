import assert from "node:assert/strict";
import { commitFenced, unfenced } from "../../lib/state/fence.ts";
import { FencedError, StateError } from "../../lib/state/store.ts";
import { testFence } from "./_fence.ts";
import { withTempDir } from "./_helpers.ts";

async function withKv(fn: (kv: Deno.Kv) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const kv = await Deno.openKv(`${dir}/fence.kv`);
    try {
      await fn(kv);
    } finally {
      kv.close();
    }
  });
}

Deno.test("unfenced() never stops a write and adds no check", () => {
  const fence = unfenced("c");
  assert.equal(fence.connectionId, "c");
  fence.assertHeld();
  assert.equal(fence.signal.aborted, false);
  assert.equal(fence.kvCheck, undefined);
  assert.equal(fence.recheck, undefined);
});

Deno.test("commitFenced() adds the fence's check and retries with a fresh one while it holds", async () => {
  await withKv(async (kv) => {
    const lease = ["leases", "c"];
    await kv.set(lease, "mine");
    let stamp = "00000000000000000000"; // stale: the first attempt fails on it
    const fence = testFence("c", {
      kvCheck: () => ({ key: lease, versionstamp: stamp }),
      recheck: async () => {
        stamp = (await kv.get(lease)).versionstamp!;
        return true;
      },
    });
    const attempts: number[] = [];
    const result = await commitFenced(fence, (attempt) => {
      attempts.push(attempt);
      return kv.atomic().set(["x"], attempt);
    });
    assert.ok(result.ok);
    assert.deepEqual(attempts, [1, 2]);
    assert.equal(fence.rechecks, 1);
    assert.equal((await kv.get(["x"])).value, 2);
  });
});

Deno.test("commitFenced() throws FencedError and writes nothing once recheck says the lease is gone", async () => {
  await withKv(async (kv) => {
    const lease = ["leases", "c"];
    await kv.set(lease, "someone else");
    const fence = testFence("c", {
      kvCheck: () => ({ key: lease, versionstamp: "00000000000000000000" }),
      recheck: () => Promise.resolve(false),
    });
    await assert.rejects(commitFenced(fence, () => kv.atomic().set(["x"], 1)), FencedError);
    assert.equal((await kv.get(["x"])).value, null);
  });
});

Deno.test("commitFenced() checks assertHeld before every attempt", async () => {
  await withKv(async (kv) => {
    const fence = testFence("c");
    fence.lose();
    let built = 0;
    await assert.rejects(
      commitFenced(fence, () => {
        built++;
        return kv.atomic().set(["x"], 1);
      }),
      FencedError,
    );
    assert.equal(built, 0);
    assert.equal((await kv.get(["x"])).value, null);
  });
});

Deno.test("commitFenced() gives up with StateError when the caller's own check keeps failing", async () => {
  await withKv(async (kv) => {
    await kv.set(["x"], 0);
    const build = () => kv.atomic().check({ key: ["x"], versionstamp: null }).set(["x"], 1);
    let conflicts = 0;
    const onConflict = () => Promise.resolve(void conflicts++);
    await assert.rejects(
      commitFenced(unfenced("c"), build, { attempts: 3, onConflict }),
      StateError,
    );
    assert.equal(conflicts, 2);
    assert.equal((await kv.get(["x"])).value, 0);
  });
});
