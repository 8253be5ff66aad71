import assert from "node:assert/strict";
import { ProgressLine, ProgressLog } from "../../lib/app/progress.ts";
import { FakeClock } from "../../lib/clock/clock.ts";
import { captureLogs } from "../freshness/_helpers.ts";
import { startWorld, T0 } from "../_world.ts";

Deno.test("ProgressLog logs a connection's progress at most every interval, with rate and time left", () => {
  using logs = captureLogs();
  const clock = new FakeClock(T0);
  const progress = new ProgressLog({ logger: logs.logger, clock, intervalMs: 5000 });
  progress.update("list_1", { read: 0, pushed: 0, total: 10_000 });
  for (let i = 1; i <= 20; i++) {
    clock.set(T0 + i * 1000);
    progress.update("list_1", { read: i * 500, pushed: i * 400, total: 10_000 });
  }
  const lines = logs.records.filter((r) => r.level === "info");
  assert.equal(lines.length, 4, "20 s of updates, one line per 5 s");
  assert.deepEqual(
    { ...lines[0]!.properties },
    { connection: "list_1", read: 2500, pushed: 2000, total: 10_000, rate: 400, seconds_left: 20 },
  );
  assert.match(logs.text(), /read 2,500, pushed 2,000 \(of ~10,000\), 400\/s, ~20 s left/);
});

Deno.test("ProgressLine redraws one line in place on a terminal and nothing elsewhere", () => {
  const clock = new FakeClock(T0);
  const written: string[] = [];
  const line = new ProgressLine({ write: (t) => written.push(t), isTerminal: true, clock });
  line.update("list_1", { read: 0, pushed: 0 });
  clock.set(T0 + 1000);
  line.update("list_1", { read: 1000, pushed: 900 });
  clock.set(T0 + 1100);
  line.update("list_1", { read: 1100, pushed: 1000 }); // within 200 ms: not drawn
  line.end();
  assert.deepEqual(written, [
    "\r\x1b[2Klist_1: read 0, pushed 0, 0/s",
    "\r\x1b[2Klist_1: read 1,000, pushed 900, 900/s",
    "\n",
  ]);
  const silent: string[] = [];
  const off = new ProgressLine({ write: (t) => silent.push(t), isTerminal: false, clock });
  off.update("list_1", { read: 1, pushed: 1 });
  off.end();
  assert.deepEqual(silent, []);
});

Deno.test("a sync logs progress lines while it runs and an idle tick writes one line", async () => {
  const world = await startWorld({ mailchimp: { latencyMs: 2000 } });
  using logs = captureLogs();
  try {
    world.mailchimp.addList("list000001", {
      members: 5_000,
      seed: 3,
      lastChangedTo: T0 - 3_600_000,
    });
    world.mailchimp.addList("list000002", { members: 10, seed: 4, lastChangedTo: T0 - 3_600_000 });
    const service = world.service(["list000001", "list000002"], {
      logger: logs.logger,
      pageSize: 500,
      reconcileEveryHours: 0,
    });
    await service.tick();
    const progress = logs.records.filter((r) => String(r.message[0]).startsWith("Progress of "));
    assert.ok(progress.length >= 2, `progress was logged (${progress.length} lines)`);
    assert.equal(progress[0]!.level, "info");
    world.clock.set(world.clock.now() + 60_000);
    const before = logs.records.length;
    await service.tick();
    const idle = logs.records.slice(before).filter((r) => r.level !== "debug");
    assert.equal(idle.length, 1, logs.text());
    assert.match(String(idle[0]!.message.join("")), /0 run\(s\).*2 not run.*fresh: 2/);
  } finally {
    await world.close();
  }
});
