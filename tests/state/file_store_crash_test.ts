/**
 * The file store's durability promise under a real crash: a child process updating in a
 * loop is killed with SIGKILL at a random moment, and the reopened store must hold every
 * update the child saw resolve. Real subprocesses, so this waits on their output, not a clock.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { seededRandom } from "../../lib/sim/random.ts";
import { FileStore } from "../../lib/state/file_store.ts";
import { withTempDir } from "./_helpers.ts";

const FIXTURE = new URL("./fixtures/update_until_killed.ts", import.meta.url).pathname;
const PROJECT_ROOT = new URL("../../", import.meta.url).pathname;

// Reads the child's lines until `lines` updates have been reported, kills it with SIGKILL,
// and returns the highest count reported per connection (including lines that arrived
// before the kill took effect).
async function runUntilKilled(
  path: string,
  compactBytes: number,
  lines: number,
): Promise<Map<string, number>> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", FIXTURE, path, String(compactBytes)],
    cwd: PROJECT_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // A watchdog, so a child that never prints cannot hang the test.
  const watchdog = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const reported = new Map<string, number>();
  let seen = 0;
  let killed = false;
  let rest = "";
  const decoder = new TextDecoder();
  try {
    for await (const chunk of child.stdout) {
      rest += decoder.decode(chunk, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const line of parts) {
        const [id, count] = line.split(" ");
        reported.set(id!, Math.max(reported.get(id!) ?? 0, Number(count)));
        seen++;
      }
      if (!killed && seen >= lines) {
        child.kill("SIGKILL");
        killed = true;
      }
    }
  } finally {
    clearTimeout(watchdog);
    const stderr = await new Response(child.stderr).text();
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL", `the child ended by itself: ${stderr}`);
  }
  assert.ok(seen >= lines, `the child reported ${seen} of ${lines} updates`);
  return reported;
}

Deno.test("FileStore keeps every resolved update through SIGKILL at random moments", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const random = seededRandom(8);
    const clock = new FakeClock();
    let last = new Map<string, number>();
    // A small compaction size, so that kills also land during compactions and on stale or
    // torn journals left by the kill before.
    for (let round = 0; round < 5; round++) {
      const reported = await runUntilKilled(path, 4096, 20 + Math.floor(random() * 400));
      // Read-only, so the files the kill left are what the next child opens.
      const store = await FileStore.open(path, { clock, readOnly: true });
      try {
        for (const [id, count] of reported) {
          const saved = (await store.get(id))?.failures ?? 0;
          assert.ok(saved >= count, `round ${round}: ${id} saved ${saved}, reported ${count}`);
        }
        // Nothing went backwards across the crashes either.
        for (const [id, count] of last) {
          assert.ok(((await store.get(id))?.failures ?? 0) >= count, `${id} went back`);
        }
        last = new Map((await store.list()).map((s) => [s.id, s.failures]));
      } finally {
        await store.close();
      }
    }
  });
});
