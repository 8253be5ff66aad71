import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { FileStore } from "../../lib/state/file_store.ts";
import { encodeJournalLine, parseJournal } from "../../lib/state/journal.ts";
import type { ConnectionState } from "../../lib/state/schema.ts";
import { StateError } from "../../lib/state/store.ts";
import { put, sampleState, withTempDir } from "./_helpers.ts";

const FIXTURE = new URL("./fixtures/open_file_store.ts", import.meta.url).pathname;
const PROJECT_ROOT = new URL("../../", import.meta.url).pathname;

// The connection states in the journal on disk, in order (header left out).
async function journalStates(path: string): Promise<ConnectionState[]> {
  const parsed = parseJournal(await Deno.readFile(`${path}.journal`));
  assert.equal(parsed.damage, undefined);
  assert.equal(parsed.tornLength, 0);
  return parsed.entries as ConnectionState[];
}

// Runs `fn` on a copy of the state file and its journal as they are on disk now: what a
// SIGKILL at this moment would leave for the next process (the store keeps nothing else).
async function withCrashCopy(path: string, fn: (copy: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const copy = `${dir}/sync_jobs.json`;
    await Deno.copyFile(path, copy);
    await Deno.copyFile(`${path}.journal`, `${copy}.journal`).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    await fn(copy);
  });
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

Deno.test("FileStore keeps its document as version 1, with the connections by id", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const store = await FileStore.open(path, { clock: new FakeClock() });
    await put(store, sampleState("b"));
    await put(store, sampleState("a"));
    await store.close();
    const document = JSON.parse(await Deno.readTextFile(path));
    assert.equal(document.version, 1);
    assert.deepEqual(Object.keys(document.connections).sort(), ["a", "b"]);
  });
});

Deno.test("FileStore update() resolves only once the new state is in the journal on disk", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    // The first write starts the pair: a document to extend, and a journal naming it.
    await put(store, sampleState("a"));
    assert.equal(store.writes, 1);
    assert.equal(store.syncs, 0);
    assert.deepEqual(await journalStates(path), []);

    await put(store, sampleState("b"));
    await put(store, sampleState("a", "2026-02-01T00:00:00+00:00"));
    assert.equal(store.writes, 1, "checkpoints append, they do not rewrite the document");
    assert.equal(store.syncs, 2);
    assert.deepEqual(await journalStates(path), [
      sampleState("b"),
      sampleState("a", "2026-02-01T00:00:00+00:00"),
    ]);
    assert.equal(clock.pendingTimers, 0, "nothing waits on a timer");
    // What a crash right now would leave behind opens with every update.
    await withCrashCopy(path, async (copy) => {
      const reopened = await FileStore.open(copy, { clock });
      assert.deepEqual(await reopened.get("a"), sampleState("a", "2026-02-01T00:00:00+00:00"));
      assert.deepEqual(await reopened.get("b"), sampleState("b"));
      await reopened.close();
    });
    await store.close();
  });
});

Deno.test("FileStore group commit: updates arriving during a sync share the next one", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const store = await FileStore.open(path, { clock: new FakeClock() });
    await put(store, sampleState("first")); // writes the document; the rest append
    const updates = [];
    for (let i = 0; i < 200; i++) updates.push(put(store, sampleState(`c${i % 50}`)));
    await Promise.all(updates);
    assert.ok(store.syncs <= 2, `200 concurrent updates cost ${store.syncs} syncs`);
    // Each connection's latest state is written once per group, not once per update.
    const lines = await journalStates(path);
    assert.equal(lines.length, 50);
    assert.equal(store.writes, 1);

    const before = store.syncs;
    for (let i = 0; i < 5; i++) await put(store, sampleState(`s${i}`));
    assert.equal(store.syncs - before, 5, "an update awaited alone gets its own sync");
    await store.close();
  });
});

Deno.test("FileStore compacts a grown journal into the document and starts a short one", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const compactBytes = 8_000;
    const store = await FileStore.open(path, { clock, compactBytes });
    const line = encodeJournalLine(sampleState("c0")).length;
    for (let i = 0; i < 100; i++) await put(store, { ...sampleState(`c${i % 7}`), failures: i });
    const appended = 100 * line;
    assert.ok(store.writes >= Math.floor(appended / compactBytes), `${store.writes} writes`);
    const size = (await Deno.stat(`${path}.journal`)).size;
    assert.ok(size < compactBytes + line, `the journal holds ${size} bytes`);

    const expected = await store.list();
    assert.equal(expected.length, 7);
    await withCrashCopy(path, async (copy) => {
      const reopened = await FileStore.open(copy, { clock });
      assert.deepEqual(await reopened.list(), expected);
      await reopened.close();
    });
    // Closing compacts one last time and removes the journal.
    const writes = store.writes;
    await store.close();
    assert.equal(store.writes, writes + 1);
    assert.deepEqual(await listDir(dir), ["sync_jobs.json", "sync_jobs.json.lock"]);
    const again = await FileStore.open(path, { clock });
    assert.deepEqual(await again.list(), expected);
    await again.close();
    assert.equal(again.writes, 0, "close() writes nothing when nothing changed");
  });
});

Deno.test("FileStore ignores a torn last journal line and replaces the journal at the next write", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    await put(store, sampleState("a"));
    await put(store, sampleState("b"));
    await withCrashCopy(path, async (copy) => {
      // The kill came in the middle of the next append.
      const torn = encodeJournalLine(sampleState("a", "2026-03-01T00:00:00+00:00"));
      await Deno.writeTextFile(`${copy}.journal`, torn.slice(0, 40), { append: true });
      const readOnly = await FileStore.open(copy, { clock, readOnly: true });
      assert.deepEqual(await readOnly.get("a"), sampleState("a"));
      await readOnly.close();

      const reopened = await FileStore.open(copy, { clock });
      assert.deepEqual(await reopened.get("a"), sampleState("a"));
      assert.deepEqual(await reopened.get("b"), sampleState("b"));
      // Appending after the torn bytes would turn them into a damaged middle line.
      await put(reopened, sampleState("c"));
      assert.equal(reopened.writes, 1, "the first write after a torn end compacts");
      await put(reopened, sampleState("d"));
      await withCrashCopy(copy, async (second) => {
        const after = await FileStore.open(second, { clock });
        assert.deepEqual((await after.list()).map((s) => s.id), ["a", "b", "c", "d"]);
        await after.close();
      });
      await reopened.close();
    });
    await store.close();
  });
});

/**
 * Runs `fn` on a crash copy of a state file whose journal holds three connections' lines
 * (see `withCrashCopy`), with the store's clock.
 */
async function withJournalOfThree(
  fn: (copy: string, clock: FakeClock) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    for (const id of ["a", "b", "c"]) await put(store, sampleState(id));
    await withCrashCopy(path, (copy) => fn(copy, clock));
    await store.close();
  });
}

Deno.test("FileStore refuses a journal damaged before its end and changes neither file", async () => {
  await withJournalOfThree(async (copy, clock) => {
    const journal = await Deno.readTextFile(`${copy}.journal`);
    // One changed character in the second line (connection "b"'s state; "a" went into the
    // document with the first write).
    const damaged = journal.replace('"list_id":"list-b"', '"list_id":"list-x"');
    assert.notEqual(damaged, journal);
    await Deno.writeTextFile(`${copy}.journal`, damaged);
    const document = await Deno.readFile(copy);
    for (const readOnly of [false, true]) {
      const error = await FileStore.open(copy, { clock, readOnly }).then(
        () => assert.fail("a damaged journal was opened"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof StateError, `expected StateError, got ${error}`);
      assert.match(error.message, new RegExp(`The journal ${copy}\.journal .* is damaged`));
      assert.match(error.message, /line 2 its checksum does not match its content/);
      assert.match(error.message, /Neither file has been changed/);
    }
    assert.equal(await Deno.readTextFile(`${copy}.journal`), damaged);
    assert.deepEqual(await Deno.readFile(copy), document);
  });
});

Deno.test("FileStore refuses a journal none of whose lines can be read, rather than drop it", async () => {
  await withJournalOfThree(async (copy, clock) => {
    const journal = await Deno.readTextFile(`${copy}.journal`);
    // Every line's checksum off by one digit: each line whole, none of them readable.
    const unreadable = journal.split("\n").map((line) =>
      line === "" ? line : (line[0] === "0" ? "1" : "0") + line.slice(1)
    ).join("\n");
    await Deno.writeTextFile(`${copy}.journal`, unreadable);
    const error = await FileStore.open(copy, { clock }).then(
      () => assert.fail("a journal of unreadable lines was opened"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof StateError, `expected StateError, got ${error}`);
    assert.match(error.message, /is damaged: line 1 its checksum does not match its content/);
    assert.equal(await Deno.readTextFile(`${copy}.journal`), unreadable);
  });
});

Deno.test("FileStore refuses a journal of an unknown version", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    await Deno.writeTextFile(path, JSON.stringify({ version: 1, connections: {} }));
    const journal = encodeJournalLine({ journal: 3, base: "x" });
    await Deno.writeTextFile(`${path}.journal`, journal);
    const error = await expectStateError(path, new FakeClock());
    assert.match(error.message, /has version 3, which this program does not know/);
    assert.equal(await Deno.readTextFile(`${path}.journal`), journal);
  });
});

Deno.test("FileStore journals a checkpoint of a connection holding many members as a small line", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock, compactBytes: 1e9 });
    await put(store, sampleState("a"));
    const held = Array.from({ length: 5_000 }, (_, i) => ({
      id: i.toString(16).padStart(32, "0"),
      reason: "Ometria rejected it: email is not valid",
      first_seen_at: "2026-01-01T00:00:00.000Z",
      last_tried_at: "2026-01-01T00:00:00.000Z",
      attempts: 1,
    }));
    await store.update("a", (s) => ({ ...s!, quarantine: held }));
    for (let i = 1; i <= 50; i++) {
      await store.update("a", (s) => ({ ...s!, run: { ...s!.run!, read: 10 + i, pushed: 9 + i } }));
    }
    // A change of the quarantine is written whole again.
    await store.update("a", (s) => ({ ...s!, quarantine: s!.quarantine.slice(1) }));
    const lines = (await Deno.readTextFile(`${path}.journal`)).trimEnd().split("\n");
    const sizes = lines.slice(1).map((line) => line.length);
    // The first write of a new file is the document itself; then the hold, 50 checkpoints
    // and the change.
    assert.equal(sizes.length, 1 + 50 + 1);
    assert.ok(sizes[0]! > 500_000 && sizes.at(-1)! > 500_000, "holds are written whole");
    assert.ok(sizes.slice(1, -1).every((n) => n < 2_000), `checkpoints: ${sizes.slice(1, 4)}`);
    await withCrashCopy(path, async (copy) => {
      const reopened = await FileStore.open(copy, { clock });
      const state = await reopened.get("a");
      assert.equal(state?.run?.read, 60);
      assert.deepEqual(state?.quarantine, held.slice(1));
      await reopened.close();
    });
    // Replayed up to a checkpoint, the quarantine is the one it kept.
    const upToCheckpoint = lines.slice(0, -1).join("\n") + "\n";
    await withCrashCopy(path, async (copy) => {
      await Deno.writeTextFile(`${copy}.journal`, upToCheckpoint);
      const reopened = await FileStore.open(copy, { clock });
      assert.deepEqual((await reopened.get("a"))?.quarantine, held);
      await reopened.close();
    });
    await store.close();
  });
});

Deno.test("FileStore reads a version 1 journal and starts a new one rather than append to it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const document = JSON.stringify({ version: 1, connections: {} });
    await Deno.writeTextFile(path, document);
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(document));
    const base = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    await Deno.writeTextFile(
      `${path}.journal`,
      encodeJournalLine({ journal: 1, base }) + encodeJournalLine(sampleState("a")),
    );
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    assert.equal((await store.get("a"))?.watermark, sampleState("a").watermark);
    await put(store, sampleState("b"));
    // An older release reading this journal must not meet a line it cannot read whole.
    const parsed = parseJournal(await Deno.readFile(`${path}.journal`));
    assert.equal(parsed.header?.journal, 2);
    await store.close();
    const reopened = await FileStore.open(path, { clock });
    assert.deepEqual((await reopened.list()).map((s) => s.id), ["a", "b"]);
    await reopened.close();
  });
});

Deno.test("FileStore refuses a journal line keeping a quarantine no earlier state has", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    await put(store, sampleState("a"));
    await store.close();
    // Reopened with a journal whose only line keeps the quarantine of an unknown connection.
    const document = await Deno.readFile(path);
    const digest = await crypto.subtle.digest("SHA-256", document);
    const base = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    const { quarantine: _, ...rest } = sampleState("zz");
    await Deno.writeTextFile(
      `${path}.journal`,
      encodeJournalLine({ journal: 2, base }) +
        encodeJournalLine({ ...rest, keep_quarantine: true }) +
        encodeJournalLine(sampleState("a")),
    );
    const error = await expectStateError(path, clock);
    assert.match(
      error.message,
      /line 2: it keeps the quarantine of "zz", which no earlier state has/,
    );
  });
});

Deno.test("FileStore ignores a journal that extends another document", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock, compactBytes: 1 });
    await put(store, sampleState("a"));
    await put(store, sampleState("a", "2026-02-01T00:00:00+00:00"));
    const oldJournal = await Deno.readFile(`${path}.journal`);
    // compactBytes 1: this write compacts, so the document holds the newest state.
    await put(store, sampleState("a", "2026-03-01T00:00:00+00:00"));
    await withCrashCopy(path, async (copy) => {
      // As if the crash came between the compaction's two renames: new document, old
      // journal, whose lines are older than the document and must not be replayed over it.
      await Deno.writeFile(`${copy}.journal`, oldJournal);
      const reopened = await FileStore.open(copy, { clock });
      assert.equal((await reopened.get("a"))?.watermark, "2026-03-01T00:00:00+00:00");
      await reopened.close();
      // A document moved aside to start afresh takes its journal's lines with it.
      await Deno.writeFile(`${copy}.journal`, oldJournal);
      await Deno.remove(copy);
      const fresh = await FileStore.open(copy, { clock });
      assert.deepEqual(await fresh.list(), []);
      await fresh.close();
    });
    await store.close();
  });
});

Deno.test("FileStore read-only sees journaled updates of a store that holds the lock", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const writer = await FileStore.open(path, { clock });
    await put(writer, sampleState("a"));
    await put(writer, sampleState("b"));
    await put(writer, sampleState("a", "2026-02-01T00:00:00+00:00"));
    const reader = await FileStore.open(path, { clock, readOnly: true });
    assert.deepEqual(await reader.list(), [
      sampleState("a", "2026-02-01T00:00:00+00:00"),
      sampleState("b"),
    ]);
    await assert.rejects(put(reader, sampleState("c")), StateError);
    await reader.flush();
    await reader.close();
    await writer.close();
  });
});

Deno.test("FileStore imports the original tool's file, then journals updates over it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const legacy = JSON.stringify({
      "1a2d7ebf82": {
        job_details: { list_id: "1a2d7ebf82", last_sync_date_time: "2023-09-21T04:12:19" },
        status: 2,
      },
    });
    await Deno.writeTextFile(path, legacy);
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock, legacyTimeZoneOffsetMinutes: () => 0 });
    const imported = await store.get("1a2d7ebf82");
    assert.equal(imported?.watermark, "2023-09-21T03:12:19+00:00");
    await put(store, { ...imported!, failures: 3 });
    assert.equal(store.writes, 1, "the first write migrates the document");
    await put(store, { ...imported!, failures: 4 });
    assert.equal(await Deno.readTextFile(`${path}.bak`), legacy);
    await withCrashCopy(path, async (copy) => {
      const reopened = await FileStore.open(copy, { clock });
      assert.equal((await reopened.get("1a2d7ebf82"))?.failures, 4);
      assert.equal((await reopened.get("1a2d7ebf82"))?.imported_from, path);
      await reopened.close();
    });
    await store.close();
    await assert.rejects(Deno.stat(`${path}.bak.1`), Deno.errors.NotFound);
  });
});

Deno.test("FileStore writes a complete document and leaves no temporary files", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    // Updates, compactions and flushes racing each other: whatever is on disk at any moment
    // is a whole, parseable document and a journal that opens with every resolved update.
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      writes.push(put(store, sampleState(`c${i}`)));
      if (i % 3 === 0) writes.push(store.flush());
    }
    await Promise.all(writes);
    const document = JSON.parse(await Deno.readTextFile(path));
    assert.equal(document.version, 1);
    await withCrashCopy(path, async (copy) => {
      const reopened = await FileStore.open(copy, { clock });
      assert.equal((await reopened.list()).length, 20);
      await reopened.close();
    });
    assert.deepEqual(await listDir(dir), [
      "sync_jobs.json",
      "sync_jobs.json.journal",
      "sync_jobs.json.lock",
    ]);
    await store.close();
    const closed = JSON.parse(await Deno.readTextFile(path));
    assert.equal(Object.keys(closed.connections).length, 20);
    assert.deepEqual(await listDir(dir), ["sync_jobs.json", "sync_jobs.json.lock"]);
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

Deno.test("FileStore rejects any use after close(), and closing twice is safe", async () => {
  await withTempDir(async (dir) => {
    const store = await FileStore.open(`${dir}/s.json`, { clock: new FakeClock() });
    await store.close();
    await store.close();
    await assert.rejects(put(store, sampleState("a")), /is closed/);
    await assert.rejects(store.list(), /is closed/);
  });
});

Deno.test("FileStore.open() says what to do when a folder stands where the file should, or its folder is missing", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/sync_jobs.json`);
    await assert.rejects(
      FileStore.open(`${dir}/sync_jobs.json`, { clock: new FakeClock() }),
      (error: Error) =>
        error instanceof StateError && /is a folder: pass the path of a file/.test(error.message),
    );
    await assert.rejects(
      FileStore.open(`${dir}/missing/sync_jobs.json`, { clock: new FakeClock() }),
      (error: Error) =>
        error instanceof StateError &&
        new RegExp(`The folder ${dir}/missing does not exist: create it`).test(error.message),
    );
  });
});
