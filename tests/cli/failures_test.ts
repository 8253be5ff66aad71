/**
 * The CLI facing bad input and faults (issue 9): each must end with a message a user can act
 * on, the documented exit code and no stack trace.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { runCli, spawnCli } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";
import { fill, fullDiskUnavailable, tinyFileSystem } from "../_helpers/tiny_fs.ts";
import { until } from "../_helpers/until.ts";

const MINUTE = 60_000;
const LIST = "lista00001";

async function world(options: { members?: number; latencyMs?: number; clock?: FakeClock } = {}) {
  const w = await startCliWorld({
    prefix: "failures_test_",
    mailchimp: {
      latencyMs: options.latencyMs ?? 0,
      ...(options.clock ? { clock: options.clock } : {}),
    },
    env: { MAILCHIMP_CLOCK_MARGIN_SECONDS: "2" },
  });
  w.mailchimp.addList(LIST, {
    members: options.members ?? 20,
    seed: 3,
    lastChangedTo: Date.now() - 30 * MINUTE,
  });
  return w;
}

function assertNoStackTrace(stderr: string): void {
  assert.doesNotMatch(stderr, /Uncaught|^\s+at /m, stderr);
}

/** Collects a child's stderr as it arrives. */
function collect(stream: ReadableStream<Uint8Array>): { text: string; done: Promise<void> } {
  const out = { text: "", done: Promise.resolve() };
  out.done = stream.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (out.text += chunk) }),
  );
  return out;
}

Deno.test("main.ts exits 2 for a key with a line break, naming the variable, never the key", async () => {
  const result = await runCli(["--once", LIST], {
    MAILCHIMP_API_KEY: "0123456789abcdef\r\nLEAKED-us9",
    OMETRIA_API_KEY: "o k",
  });
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /MAILCHIMP_API_KEY contains a line break/);
  assert.match(result.stderr, /OMETRIA_API_KEY contains a space/);
  assert.doesNotMatch(result.stderr, /LEAKED/);
  assertNoStackTrace(result.stderr);
});

Deno.test("main.ts --once exits 2 with advice, not a stack trace, when the state cannot be written", async () => {
  const w = await world();
  try {
    // Write access to the state file and its lock only: the temp file of every atomic
    // replace is refused, as in a read-only folder (these tests may run as root, for whom
    // file modes do not stop writes).
    const permissions = [
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      `--allow-write=${w.state},${w.state}.lock`,
    ];
    const result = await runCli(["--once", "--state", w.state, LIST], w.env, { permissions });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, new RegExp(`Cannot write the state file ${w.state}`));
    assert.match(result.stderr, /The last saved state is kept/);
    assert.match(result.stderr, /Check that the folder is writable and the disk has free space/);
    assertNoStackTrace(result.stderr);
  } finally {
    await w.close();
  }
});

Deno.test("main.ts: the daemon keeps running and logging when the state cannot be written", async () => {
  const w = await world();
  try {
    const daemon = spawnCli(["--state", w.state, LIST], w.env, {
      permissions: [
        "--allow-net=127.0.0.1",
        "--allow-env",
        "--allow-read",
        `--allow-write=${w.state},${w.state}.lock`,
      ],
    });
    const stderr = collect(daemon.stderr);
    await until(() => /The last saved state is kept/.test(stderr.text), "the failed write");
    daemon.kill("SIGTERM");
    const status = await daemon.status;
    await stderr.done;
    await daemon.stdout.cancel();
    // Still running until told to stop, and then a state error (2), not a crash (1).
    assert.equal(status.code, 2, stderr.text);
    assert.match(stderr.text, /SIGTERM received/);
    assertNoStackTrace(stderr.text);
  } finally {
    await w.close();
  }
});

Deno.test("main.ts exits 2 naming METRICS_PORT when the port is taken, METRICS_HOST when it cannot listen there", async () => {
  const w = await world();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const busy = await runCli(["--once", "--state", w.state, LIST], {
      ...w.env,
      METRICS_PORT: String(port),
    });
    assert.equal(busy.code, 2, busy.stderr);
    assert.match(
      busy.stderr,
      new RegExp(`METRICS_PORT=${port} cannot be used: the port is already in use`),
    );
    assertNoStackTrace(busy.stderr);

    const badHost = await runCli(["--once", "--state", w.state, LIST], {
      ...w.env,
      METRICS_PORT: "0",
      METRICS_HOST: "192.0.2.1", // TEST-NET-1: never an address of this machine
    }, { permissions: ["--allow-net", "--allow-env", "--allow-read", "--allow-write"] });
    assert.equal(badHost.code, 2, badHost.stderr);
    assert.match(badHost.stderr, /METRICS_HOST=192\.0\.2\.1 cannot be listened on/);
    assertNoStackTrace(badHost.stderr);
  } finally {
    taken.close();
    await w.close();
  }
});

Deno.test("main.ts status --check judges listed ids by their stored threshold too", async () => {
  const w = await world({ clock: new FakeClock(Date.now() - 20 * MINUTE) });
  try {
    const synced = await runCli(["--once", "--state", w.state, LIST], {
      ...w.env,
      NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA: "5",
    });
    assert.equal(synced.code, 0, synced.stderr);
    // This environment's default threshold (120 minutes) would call the list fresh; the
    // 5 minutes it ran with say it is behind, with or without ids.
    for (const ids of [[], [LIST]]) {
      const status = await runCli(["status", "--json", "--check", "--state", w.state, ...ids], {});
      assert.equal(status.code, 1, `ids ${ids}: ${status.stdout}`);
      const [entry] = JSON.parse(status.stdout).connections;
      assert.equal(entry.threshold_seconds, 300);
    }
  } finally {
    await w.close();
  }
});

Deno.test("main.ts --once stopped by SIGTERM exits 3 and keeps its checkpoint", async () => {
  const w = await world({ members: 30_000, latencyMs: 5 });
  try {
    const run = spawnCli(["--once", "--state", w.state, LIST], {
      ...w.env,
      BULK_MEMBER_COUNT: "100",
      OMETRIA_MAX_REQUESTS_PER_SECOND: "1000",
    });
    const stderr = collect(run.stderr);
    await until(() => w.ometria.stats.recordsReceived >= 1_000, "the run to push");
    run.kill("SIGTERM");
    const status = await run.status;
    await stderr.done;
    await run.stdout.cancel();
    assert.equal(status.code, 3, stderr.text);
    assert.ok(w.ometria.stats.recordsReceived < 30_000, "it stopped in the middle of the run");
    const saved = JSON.parse(await Deno.readTextFile(w.state));
    assert.ok(saved.connections[LIST].run?.pushed > 0, "the interrupted run is kept to resume");
    assertNoStackTrace(stderr.text);
  } finally {
    await w.close();
  }
});

Deno.test("main.ts simulate answers a busy port in one line and exits 2", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const result = await runCli(["simulate", "--mailchimp-port", String(port)], {});
    assert.equal(result.code, 2, result.stderr);
    assert.equal(
      result.stderr.trim(),
      `Cannot start the Mailchimp simulator: port ${port} on 127.0.0.1 is in use. Stop what uses it or pass --mailchimp-port <free port>.`,
    );
  } finally {
    taken.close();
  }
});

Deno.test("main.ts reports a misspelt flag with its suggestion and the other problems", async () => {
  const result = await runCli(["--onse", LIST], {
    MAILCHIMP_API_KEY: "k-us1",
    OMETRIA_API_KEY: "o",
    BULK_MEMBER_COUNT: "lots",
    SYNC_SCHEDULE: "99 * * * *",
  });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /Unknown option --onse: did you mean --once\?/);
  assert.match(result.stderr, /BULK_MEMBER_COUNT must be a whole number/);
  assert.match(result.stderr, /SYNC_SCHEDULE "99 \* \* \* \*" is not a valid cron expression/);
});

Deno.test("main.ts exits 2 in one line when LOG_FILE cannot be written, before syncing anything", async () => {
  const w = await world();
  try {
    for (const logFile of [`${w.dir}/no-such-folder/log_file.log`, w.dir]) {
      const result = await runCli(["--once", "--state", w.state, LIST], {
        ...w.env,
        LOG_FILE: logFile,
      });
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`^Cannot write LOG_FILE=${logFile}: `));
      assertNoStackTrace(result.stderr);
    }
    assert.equal(w.ometria.stats.recordsReceived, 0, "nothing ran");
  } finally {
    await w.close();
  }
});

const noTmpfs = await fullDiskUnavailable();

Deno.test({
  name: `main.ts --once on a full disk exits 2 with advice and the state untouched${
    noTmpfs === undefined ? "" : ` (skipped: cannot mount a tmpfs here: ${noTmpfs})`
  }`,
  ignore: noTmpfs !== undefined,
  async fn() {
    const w = await world();
    const disk = await tinyFileSystem(64);
    assert.ok(typeof disk !== "string", disk as string);
    try {
      // A first run, as users run it: in the state's folder, logging to log_file.log there.
      const env = { ...w.env, LOG_FILE: "log_file.log" };
      const first = await runCli(["--once", LIST], env, { cwd: disk.dir });
      assert.equal(first.code, 0, first.stderr);
      const before = await Deno.readFile(`${disk.dir}/sync_jobs.json`);
      await fill(disk.dir);
      const result = await runCli(["--once", "--force", LIST], env, { cwd: disk.dir });
      assert.equal(result.code, 2, result.stderr);
      assert.doesNotMatch(result.stderr, /unexpected error|This is a bug/);
      assert.match(result.stderr, /sync_jobs\.json.*No space left on device/);
      assert.match(result.stderr, /is full: free space on it, or pass a --state on another disk/);
      assertNoStackTrace(result.stderr);
      assert.deepEqual(await Deno.readFile(`${disk.dir}/sync_jobs.json`), before, "untouched");
    } finally {
      await disk.close();
      await w.close();
    }
  },
});
