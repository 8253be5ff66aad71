/**
 * What only the file store's inbox (`<state>.inbox`, see file_inbox.ts) does: reading back a
 * file a crash cut short, or one with damaged lines. What every inbox does is in
 * store_cases.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { FileStore } from "../../lib/state/file_store.ts";
import { event } from "./store_cases.ts";
import { renderRecord, withLogger, withTempDir } from "./_helpers.ts";

/** The line file_inbox.ts writes for an append. */
const appendLine = (seq: number, n: number) =>
  JSON.stringify({ c: "a", s: String(seq).padStart(12, "0"), e: event(n) });

/** The entries of connection `a`'s inbox. */
async function entriesOfA(store: FileStore) {
  return (await store.inbox("a").peek(10)).map((item) => item.entry);
}

Deno.test("FileStore's inbox ignores a torn last line, and its next write leaves it out", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock });
    await store.inbox("a").append(event(1), "k1");
    await store.inbox("a").append(event(2), "k2");
    await store.close();
    // The kill came in the middle of the next append, before it was acknowledged.
    await Deno.writeTextFile(`${path}.inbox`, appendLine(3, 3).slice(0, 30), { append: true });

    const reopened = await FileStore.open(path, { clock });
    assert.deepEqual(await entriesOfA(reopened), [event(1), event(2)]);
    assert.equal(await reopened.inbox("a").append(event(4), "k4"), "queued");
    await reopened.close();
    // Appending after the torn bytes would have glued them to the new line.
    const lines = (await Deno.readTextFile(`${path}.inbox`)).split("\n");
    assert.equal(lines.pop(), "");
    for (const line of lines) JSON.parse(line);
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.ok(!names.some((name) => name.endsWith(".tmp")), `left behind: ${names}`);
    const again = await FileStore.open(path, { clock });
    assert.deepEqual(await entriesOfA(again), [event(1), event(2), event(4)]);
    await again.close();
  });
});

Deno.test("FileStore's inbox skips damaged lines with a warning and keeps the rest", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const lines = [
      '{"inbox":1}',
      appendLine(1, 1),
      "not json at all",
      appendLine(2, 2),
      JSON.stringify({ c: "a", s: "000000000003", e: { type: 3 } }), // not an entry
      JSON.stringify({ c: "a", r: ["000000000001"] }),
    ];
    await Deno.writeTextFile(`${path}.inbox`, lines.map((line) => line + "\n").join(""));
    await withLogger(async (logger, records) => {
      const store = await FileStore.open(path, { clock: new FakeClock(), logger });
      assert.deepEqual(await entriesOfA(store), [event(2)]);
      const warnings = records.filter((r) => r.level === "warning").map(renderRecord);
      assert.deepEqual(warnings, [`Skipped 2 damaged line(s) of the webhook inbox ${path}.inbox`]);
      // Appends go on numbering from the highest seq of a line read.
      await store.inbox("a").append(event(4), "k4");
      const seqs = (await store.inbox("a").peek(10)).map((item) => item.seq);
      assert.deepEqual(seqs, ["000000000002", "000000000003"]);
      await store.close();
    });
  });
});
