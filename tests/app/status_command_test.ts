/**
 * `status` in-process over a memory store: what `--check` lets pass and what it does not,
 * and that no configured secret reaches its output.
 */
import assert from "node:assert/strict";
import { runCommand } from "../../lib/app/cli.ts";
import { loadConfig } from "../../lib/config/config.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import { record } from "../../lib/state/transitions.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { failedRun, runSummary } from "../_helpers/run_events.ts";
import { captureLogs } from "../freshness/_helpers.ts";

const T0 = Date.UTC(2026, 5, 1, 12);
const MINUTE = 60_000;

async function status(store: MemoryStore, args: string[], secrets: string[] = []) {
  const loaded = await loadConfig({ env: {}, args: ["status", ...args] });
  assert.ok(loaded.ok, loaded.ok ? "" : loaded.errors.join("\n"));
  using logs = captureLogs();
  let out = "";
  const code = await runCommand(loaded.config, {
    clock: new FakeClock(T0),
    logger: logs.logger,
    fetch,
    store,
    write: (text) => void (out += text),
    cron: () => Promise.reject(new Error("status schedules nothing")),
    stop: new AbortController().signal,
    hardStop: new AbortController().signal,
    secrets,
  });
  return { code, out, logs: logs.records.map((r) => r.message.join("")).join("\n") };
}

/** A connection whose only run failed a minute ago: it has state, but never completed. */
async function failingNeverSynced(store: MemoryStore, id: string): Promise<void> {
  const c = { id, listId: id };
  await record(store, c, { type: "run-started", at: T0 - 2 * MINUTE, thresholdSeconds: 7200 });
  await record(
    store,
    c,
    failedRun(T0 - 2 * MINUTE, T0 - MINUTE, "Mailchimp rejected the API key (401)"),
  );
}

/** A connection whose last run completed a minute ago. */
async function synced(store: MemoryStore, id: string): Promise<void> {
  const c = { id, listId: id };
  await record(store, c, { type: "run-started", at: T0 - 2 * MINUTE, thresholdSeconds: 7200 });
  await record(store, c, {
    type: "run-completed",
    upperMs: T0 - 2 * MINUTE,
    error: null,
    summary: runSummary("ok", T0 - 2 * MINUTE, T0 - MINUTE, { read: 3, pushed: 3 }),
  });
}

Deno.test("status --check exits 1 for an id that has no state, naming it", async () => {
  const store = new MemoryStore();
  await synced(store, "lista00001");
  const result = await status(store, ["--check", "nosuchlist"]);
  assert.equal(result.code, 1, result.out);
  assert.match(result.logs, /nosuchlist has no state in memory/, JSON.stringify(result));
  // Listing a good one beside it does not hide it.
  assert.equal((await status(store, ["--check", "lista00001", "nosuchlist"])).code, 1);
  assert.equal((await status(store, ["--check", "lista00001"])).code, 0);
});

Deno.test("status --check exits 1 for a connection that never completed a sync", async () => {
  const store = new MemoryStore();
  await synced(store, "lista00001");
  await failingNeverSynced(store, "listb00002");
  for (const args of [["--check"], ["--check", "listb00002"], ["--json", "--check"]]) {
    const result = await status(store, args);
    assert.equal(result.code, 1, `${args}: ${result.out}`);
    assert.match(result.logs, /listb00002 has never completed a sync \(status failed: Mailchimp/);
    assert.doesNotMatch(result.logs, /lista00001/);
  }
});

Deno.test("status takes every configured secret out of its table and its JSON", async () => {
  const store = new MemoryStore();
  // A state written before ids were checked: a Mailchimp key passed as a list id.
  const key = "0123456789abcdef0123456789abcdef-us9";
  await failingNeverSynced(store, key);
  for (const args of [[], ["--json"]]) {
    const result = await status(store, args, [key]);
    assert.doesNotMatch(result.out, /0123456789abcdef/, result.out);
    assert.match(result.out, /\[redacted\]/);
  }
});

Deno.test("status --check exits 1 while a connection holds members in quarantine, with the count", async () => {
  const store = new MemoryStore();
  await synced(store, "held1");
  await record(store, { id: "held1", listId: "held1" }, {
    type: "quarantine",
    at: T0 - MINUTE,
    add: [{ id: "0".repeat(31) + "a", reason: "Ometria rejected it: invalid email" }],
    release: [],
  });
  const r = await status(store, ["--check", "held1"]);
  assert.equal(r.code, 1);
  assert.match(r.logs, /held1 holds 1 member\(s\) in quarantine/);
});
