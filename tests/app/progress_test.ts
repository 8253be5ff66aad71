import assert from "node:assert/strict";
import { ProgressLine, ProgressLog, TerminalLine } from "../../lib/app/progress.ts";
import { setupLogging, shutdownLogging } from "../../lib/log/logging.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { captureLogs } from "../freshness/_helpers.ts";
import { startWorld, T0 } from "../_helpers/world.ts";

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
    {
      connection: "list_1",
      read: 2500,
      pushed: 2000,
      unchanged: 0,
      total: 10_000,
      rate: 400,
      seconds_left: 20,
    },
  );
  assert.match(logs.text(), /read 2,500, pushed 2,000 \(of ~10,000\), 400\/s, ~20 s left/);
});

Deno.test("ProgressLog counts unchanged members apart, and as done for the rate and time left", () => {
  using logs = captureLogs();
  const clock = new FakeClock(T0);
  const progress = new ProgressLog({ logger: logs.logger, clock, intervalMs: 5000 });
  progress.update("list_1", { read: 0, pushed: 0, unchanged: 0, total: 10_000 });
  clock.set(T0 + 5000);
  progress.update("list_1", { read: 2500, pushed: 100, unchanged: 1900, total: 10_000 });
  assert.match(
    logs.text(),
    /read 2,500, pushed 100, unchanged 1,900 \(of ~10,000\), 400\/s, ~20 s left/,
  );
  const line = logs.records.find((r) => r.level === "info")!;
  assert.deepEqual([line.properties.pushed, line.properties.unchanged], [100, 1900]);
});

Deno.test("ProgressLine redraws one line in place on the terminal", () => {
  const clock = new FakeClock(T0);
  const written: string[] = [];
  const line = new ProgressLine({ line: new TerminalLine((t) => written.push(t)), clock });
  line.update("list_1", { read: 0, pushed: 0 });
  clock.set(T0 + 1000);
  line.update("list_1", { read: 1000, pushed: 900 });
  clock.set(T0 + 1100);
  line.update("list_1", { read: 1100, pushed: 1000 }); // within 200 ms: not drawn
  line.update("list_2", { read: 10, pushed: 10 });
  clock.set(T0 + 1400);
  line.update("list_2", { read: 20, pushed: 20 });
  line.finish("list_1"); // drawn at once without it
  line.finish("list_2"); // none left: the line is erased before the summaries are logged
  assert.deepEqual(written, [
    "\r\x1b[2Klist_1: read 0, pushed 0, 0/s",
    "\r\x1b[2Klist_1: read 1,000, pushed 900, 900/s",
    "\r\x1b[2Klist_1: read 1,100, pushed 1,000, 714/s | list_2: read 20, pushed 20, 67/s",
    "\r\x1b[2Klist_2: read 20, pushed 20, 67/s",
    "\r\x1b[2K",
  ]);
  clock.set(T0 + 2000); // a next run
  line.update("list_1", { read: 5, pushed: 5 });
  line.end();
  assert.deepEqual(written.slice(5), ["\r\x1b[2Klist_1: read 5, pushed 5, 0/s", "\n"]);
});

Deno.test("log lines on the terminal go above the live line, which is drawn again below them", async () => {
  // One terminal: what stdout (the line) and stderr (the logs) write lands in one stream.
  let screen = "";
  const terminal = new TerminalLine((t) => screen += t);
  const lines: string[] = [];
  const logger = await setupLogging({
    console: { error: (line: string) => screen += `${line}\n` } as unknown as Console,
    aroundConsole: (write) => terminal.interject(write),
  });
  try {
    logger.info("before any progress");
    terminal.show("list_1: read 100");
    logger.warn("a warning while it runs");
    terminal.show("list_1: read 200");
    terminal.end();
    logger.info("after the run");
    // What a terminal shows: \r returns to the line's start, ESC[2K erases it.
    for (const raw of screen.split("\n")) {
      const shown = raw.split("\r").map((part) => part.replace("\x1b[2K", "")).filter((p) => p);
      lines.push(shown.at(-1) ?? "");
    }
  } finally {
    await shutdownLogging();
  }
  // Timestamp and level off the start of each log line, and only there.
  assert.deepEqual(lines.map((l) => l.replace(/^\d{4}-\d\d-\d\d \S+ \S+ \[\w+\] /, "")), [
    "sync: before any progress",
    "sync: a warning while it runs",
    "list_1: read 200",
    "sync: after the run",
    "",
  ]);
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

Deno.test("ProgressLine fits the terminal's width, never reaching its last column", async (t) => {
  for (const columns of [300, 170, 80, 12]) {
    await t.step(`${columns} columns`, () => {
      const clock = new FakeClock(T0);
      const written: string[] = [];
      const line = new ProgressLine({
        line: new TerminalLine((text) => written.push(text), () => columns),
        clock,
      });
      for (let i = 1; i <= 6; i++) {
        clock.set(T0 + i * 1000);
        for (const id of ["shop-uk-newsletter", "shop-de-newsletter", "outlet-all"]) {
          line.update(id, { read: i * 12_000, pushed: i * 11_900, total: 1_250_000 });
        }
      }
      const drawn = written.map((w) => w.replace("\r\x1b[2K", ""));
      assert.ok(drawn.length > 0);
      for (const text of drawn) {
        assert.ok([...text].length < columns, `${[...text].length} of ${columns}: ${text}`);
      }
      const last = drawn.at(-1)!;
      // As much as fits: every run in full, then each run in short, then the totals.
      const expected = {
        300:
          /^shop-uk-newsletter: read 72,000, pushed 71,400 \(of ~1,250,000\), .* \| outlet-all: /,
        170: /^3 running, pushed \d+k, \d+k\/s: shop-uk-newsletter 71k\/1\.3M · .* · outlet-all /,
        80: /^3 running, pushed \d+k, \d+k\/s$/,
        12: /^3 running,…$/,
      }[columns]!;
      assert.match(last, expected);
    });
  }
});
