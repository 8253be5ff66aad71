import assert from "node:assert/strict";
import { FakeClock } from "../../lib/clock/clock.ts";
import { FileStore } from "../../lib/state/file_store.ts";
import { StateError } from "../../lib/state/store.ts";
import { put, sampleState, withTempDir } from "./_helpers.ts";

const FIXTURE = new URL("./fixtures/open_file_store.ts", import.meta.url).pathname;
const PROJECT_ROOT = new URL("../../", import.meta.url).pathname;

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !condition(); i++) {
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.ok(condition(), `timed out waiting for ${what}`);
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

async function expectStateError(path: string, clock: FakeClock): Promise<StateError> {
  const error = await FileStore.open(path, { clock }).then(
    () => assert.fail("FileStore.open succeeded"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof StateError, `expected StateError, got ${error}`);
  return error;
}

Deno.test("FileStore round-trips connection state through the file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    assert.equal(await store.get("a"), undefined);
    await put(store, sampleState("b"));
    await put(store, sampleState("a"));
    await store.close();

    const document = JSON.parse(await Deno.readTextFile(path));
    assert.equal(document.version, 1);
    assert.deepEqual(Object.keys(document.connections).sort(), ["a", "b"]);

    const again = await FileStore.open(path, { clock });
    assert.deepEqual(await again.get("a"), sampleState("a"));
    assert.deepEqual((await again.list()).map((s) => s.id), ["a", "b"]);
    await again.close();
  });
});

Deno.test("FileStore get() and list() return copies the caller cannot change the store with", async () => {
  await withTempDir(async (dir) => {
    const store = await FileStore.open(`${dir}/s.json`, { clock: new FakeClock() });
    const state = sampleState("a");
    await put(store, state);
    state.status = "failed";
    const got = await store.get("a");
    assert.ok(got);
    got.watermark = null;
    (await store.list())[0]!.failures = 99;
    assert.deepEqual(await store.get("a"), sampleState("a"));
    await store.close();
  });
});

Deno.test("FileStore coalesces many puts into one write after coalesceMs", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock, coalesceMs: 1000 });
    for (let i = 0; i < 50; i++) await put(store, sampleState(`c${i % 5}`));
    await clock.tick(999);
    assert.equal(store.writes, 0);
    assert.equal(clock.pendingTimers, 1);
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);

    await clock.tick(1);
    await waitFor("the coalesced write", () => store.writes === 1);
    const document = JSON.parse(await Deno.readTextFile(path));
    assert.equal(Object.keys(document.connections).length, 5);
    assert.equal(clock.pendingTimers, 0);

    await store.close();
    assert.equal(store.writes, 1, "close() writes nothing when nothing changed");
  });
});

Deno.test("FileStore flush() writes at once and cancels the pending write", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    await put(store, sampleState("a"));
    await store.flush();
    assert.equal(store.writes, 1);
    assert.equal(clock.pendingTimers, 0);
    assert.ok(JSON.parse(await Deno.readTextFile(path)).connections.a);
    await store.flush();
    assert.equal(store.writes, 1, "a clean store is not written again");

    await put(store, sampleState("b"));
    await store.close();
    assert.equal(store.writes, 2, "close() flushes");
    assert.equal(clock.pendingTimers, 0);
    assert.ok(JSON.parse(await Deno.readTextFile(path)).connections.b);
  });
});

Deno.test("FileStore writes a complete document and leaves no temporary files", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    // Writes racing each other: each flush must leave a whole, parseable document.
    const flushes: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      await put(store, sampleState(`c${i}`));
      flushes.push(store.flush());
    }
    await Promise.all(flushes);
    const document = JSON.parse(await Deno.readTextFile(path));
    assert.equal(Object.keys(document.connections).length, 20);
    assert.deepEqual(await listDir(dir), ["sync_jobs.json", "sync_jobs.json.lock"]);
    await store.close();
  });
});

Deno.test("FileStore refuses a file that is not JSON and leaves it unchanged", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const bytes = new TextEncoder().encode('{"version": 1, "connections": {');
    await Deno.writeFile(path, bytes);
    const error = await expectStateError(path, new FakeClock());
    assert.match(error.message, new RegExp(`The state file ${path} is damaged`));
    assert.match(error.message, /not valid JSON/);
    assert.match(error.message, new RegExp(`restore it from ${path}\\.bak if present`, "i"));
    assert.match(error.message, /move it aside to start with a full sync/);
    assert.deepEqual(await Deno.readFile(path), bytes);
    // The failed open let go of the lock: trying again meets the same damage, not a lock.
    const again = await expectStateError(path, new FakeClock());
    assert.match(again.message, /is damaged/);
  });
});

Deno.test("FileStore refuses a document that does not match the schema, naming the fields", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const text = JSON.stringify({
      version: 1,
      connections: { a: { id: "a", list_id: "l1", watermark: "yesterday", failures: -1 } },
    });
    await Deno.writeTextFile(path, text);
    const error = await expectStateError(path, new FakeClock());
    assert.match(error.message, /connections\.a\.watermark/);
    assert.match(error.message, /connections\.a\.failures/);
    assert.match(error.message, /\.bak/);
    assert.equal(await Deno.readTextFile(path), text);
    assert.deepEqual(await listDir(dir), ["sync_jobs.json", "sync_jobs.json.lock"]);
  });
});

Deno.test("FileStore refuses a document of an unknown version", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const text = JSON.stringify({ version: 2, connections: {} });
    await Deno.writeTextFile(path, text);
    const error = await expectStateError(path, new FakeClock());
    assert.match(error.message, /has version 2, which this program does not know/);
    assert.equal(await Deno.readTextFile(path), text);
  });
});

Deno.test("FileStore refuses JSON that is neither its document nor the original tool's", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    await Deno.writeTextFile(path, "[1, 2, 3]");
    const error = await expectStateError(path, new FakeClock());
    assert.match(error.message, /is damaged/);
    assert.equal(await Deno.readTextFile(path), "[1, 2, 3]");
  });
});

Deno.test("FileStore acquire() stops one connection from running twice in this process", async () => {
  await withTempDir(async (dir) => {
    const store = await FileStore.open(`${dir}/s.json`, { clock: new FakeClock() });
    const lease = await store.acquire("a");
    assert.ok(lease);
    assert.equal(await store.acquire("a"), undefined);
    assert.ok(await store.acquire("b"));
    await lease.release();
    await lease.release();
    assert.ok(await store.acquire("a"));
    await store.close();
  });
});

Deno.test("FileStore gives up on a file locked by another store after lockTimeoutMs", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const holder = await FileStore.open(path, { clock: new FakeClock() });
    const clock = new FakeClock(Date.UTC(2026, 0, 1), { autoAdvance: true });
    const error = await FileStore.open(path, { clock, lockTimeoutMs: 500 }).then(
      () => assert.fail("a second store opened a locked file"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof StateError);
    assert.equal(
      error.message,
      `The state file ${path} is in use by another process (pid ${Deno.pid}). ` +
        "Stop that process, or use a different --state path.",
    );
    await holder.close();
  });
});

async function runFixture(path: string): Promise<{ code: number; stdout: string }> {
  // A watchdog: a child kept alive by a pending lock would otherwise hang the test.
  const watchdog = new AbortController();
  const timer = setTimeout(() => watchdog.abort(), 20_000);
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", FIXTURE, path],
      cwd: PROJECT_ROOT,
      stdout: "piped",
      stderr: "piped",
      signal: watchdog.signal,
    }).output();
    assert.ok(!watchdog.signal.aborted, "the second process did not exit by itself");
    return { code: output.code, stdout: new TextDecoder().decode(output.stdout) };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("FileStore makes a second process on the same file exit with a message naming our pid", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const store = await FileStore.open(path, { clock: new FakeClock() });
    await put(store, sampleState("a"));
    await store.flush();

    const blocked = await runFixture(path);
    assert.equal(blocked.code, 2);
    assert.match(blocked.stdout, /StateError/);
    assert.ok(
      blocked.stdout.includes(
        `The state file ${path} is in use by another process (pid ${Deno.pid}).`,
      ),
      blocked.stdout,
    );

    await store.close();
    const after = await runFixture(path);
    assert.equal(after.code, 0, after.stdout);
    assert.match(after.stdout, /opened with 1 connection/);
  });
});

Deno.test("FileStore rejects an invalid state and any use after close()", async () => {
  await withTempDir(async (dir) => {
    const store = await FileStore.open(`${dir}/s.json`, { clock: new FakeClock() });
    await assert.rejects(put(store, { ...sampleState("a"), failures: -1 }), /failures/);
    assert.equal(await store.get("a"), undefined);
    await store.close();
    await store.close();
    await assert.rejects(put(store, sampleState("a")), /is closed/);
    await assert.rejects(store.list(), /is closed/);
  });
});
