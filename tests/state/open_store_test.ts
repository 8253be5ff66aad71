import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { FileStore } from "../../lib/state/file_store.ts";
import { KvStore } from "../../lib/state/kv_store.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import { DEFAULT_STATE_PATH, openStore } from "../../lib/state/open_store.ts";
import { renderRecord, withLogger, withTempDir } from "./_helpers.ts";

Deno.test("openStore opens a FileStore for a path", async () => {
  await withLogger(async (logger, records) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/state.json`;
      const store = await openStore(path, { clock: new FakeClock(), logger, canUseFiles: true });
      assert.ok(store instanceof FileStore);
      assert.equal(store.kind, "file");
      assert.equal(store.location, path);
      await store.close();
      assert.equal(records.length, 0);
    });
  });
});

Deno.test("openStore opens a KvStore for kv:<path>", async () => {
  await withLogger(async (logger) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/state.kv`;
      const store = await openStore(`kv:${path}`, {
        clock: new FakeClock(),
        logger,
        canUseFiles: true,
      });
      assert.ok(store instanceof KvStore);
      assert.equal(store.location, `Deno KV ${path}`);
      await store.close();
      await Deno.stat(path);
    });
  });
});

Deno.test("openStore opens a MemoryStore for memory: without a warning", async () => {
  await withLogger(async (logger, records) => {
    const store = await openStore("memory:", {
      clock: new FakeClock(),
      logger,
      canUseFiles: true,
    });
    assert.ok(store instanceof MemoryStore);
    await store.close();
    assert.equal(records.length, 0);
  });
});

Deno.test("openStore keeps state in memory with a warning when files cannot be used", async () => {
  await withLogger(async (logger, records) => {
    const store = await openStore(undefined, {
      clock: new FakeClock(),
      logger,
      canUseFiles: false,
    });
    assert.ok(store instanceof MemoryStore);
    await store.close();
    assert.equal(records.length, 1);
    assert.equal(records[0]!.level, "warning");
    assert.equal(
      renderRecord(records[0]!),
      "State is kept in memory only: progress will not survive a restart. Run with " +
        "--allow-read --allow-write (for ./sync_jobs.json, or for the path of --state <file> " +
        "or --state kv:<path>) to keep it.",
    );
  });
});

Deno.test("openStore uses ./sync_jobs.json when files can be used", async () => {
  await withLogger(async (logger) => {
    await withTempDir(async (dir) => {
      const cwd = Deno.cwd();
      Deno.chdir(dir);
      try {
        const store = await openStore(undefined, {
          clock: new FakeClock(),
          logger,
          canUseFiles: true,
        });
        assert.ok(store instanceof FileStore);
        assert.equal(store.location, DEFAULT_STATE_PATH);
        await store.close();
        await Deno.stat(`${dir}/sync_jobs.json.lock`);
      } finally {
        Deno.chdir(cwd);
      }
    });
  });
});
