/**
 * Two processes on one Deno KV state, one of them paused past its lease (SIGSTOP, as a VM
 * pause or a long GC would): the other takes the connection over, and the paused one, once
 * resumed, sends nothing more. Each process pushes to an Ometria simulator of its own, so
 * every request can be told apart; together they must hold every member.
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { OmetriaSimulator } from "../../lib/sim/ometria_sim.ts";
import { spawnCli } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";
import { until } from "../_helpers/until.ts";

const LIST = "list000fence";

Deno.test({
  name: "a process paused past its KV lease sends nothing after it resumes",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    // The first process is paused while it waits for Ometria's answers rather than in the
    // middle of a write to the state: two processes on one local KV file share SQLite's lock,
    // which a stopped process would keep.
    const world = await startCliWorld({
      prefix: "fencing_test_",
      mailchimp: { latencyMs: 15 },
      ometria: { latencyMs: 300 },
    });
    const second = await OmetriaSimulator.start({ maxRequestsPerSecond: 0, latencyMs: 10 });
    const kv = `kv:${world.dir}/state.kv`;
    const env = (ometriaUrl: string, rate: string) => ({
      ...world.env,
      OMETRIA_BASE_URL: ometriaUrl,
      OMETRIA_MAX_REQUESTS_PER_SECOND: rate,
      BULK_MEMBER_COUNT: "100",
      MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
      STATE_LEASE_SECONDS: "2",
    });
    let one: Deno.ChildProcess | undefined;
    let two: Deno.ChildProcess | undefined;
    try {
      world.mailchimp.addList(LIST, {
        members: 10_000,
        seed: 14,
        lastChangedTo: Date.now() - 3600_000,
      });
      // The first pushes at Ometria's default pace (it is still running when paused), the
      // second as fast as the simulator takes it.
      one = spawnCli(["--once", "--state", kv, LIST], env(world.ometria.url, "8"));
      const started = one;
      // Under a loaded machine this once timed out: the child's exit (if it stopped) says why.
      await until(() => world.ometria.stats.requests >= 5, "the first process pushing", {
        detail: () => `exit: ${JSON.stringify(started.status)}`,
        timeoutMs: 30_000,
      });
      // Its next pushes are held by Ometria: it waits on them, not on a write to the state,
      // when it is stopped.
      const holds = Array.from({ length: 40 }, () => world.ometria.holdPush());
      await holds[0]!.arrived;
      await new Promise((resolve) => setTimeout(resolve, 200));
      Deno.kill(one.pid, "SIGSTOP");
      // Past its lease on every clock: the second process may take over. A request it had
      // sent before it stopped (on the wire) arrives meanwhile, and is counted before.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      const pushedByOne = world.ometria.stats.requests;
      two = spawnCli(["--once", "--state", kv, LIST], env(second.url, "1000"));
      const early = two;
      await until(() => second.stats.pushRequests >= 3, "the second process pushing", {
        detail: () => `exit: ${JSON.stringify(early.status)}`,
        timeoutMs: 30_000,
      });
      Deno.kill(one.pid, "SIGCONT");
      const [first, other] = await Promise.all([one.output(), two.output()]);
      for (const hold of holds) hold.release();
      const decoder = new TextDecoder();
      const stderrOne = decoder.decode(first.stdout) + decoder.decode(first.stderr);
      assert.equal(other.code, 0, decoder.decode(other.stdout) + decoder.decode(other.stderr));
      assert.equal(first.code, 1, stderrOne);
      assert.match(stderrOne, /lease/i);
      assert.equal(
        world.ometria.stats.requests,
        pushedByOne,
        "the resumed process sent nothing more",
      );
      // Together they hold every member, each as Mailchimp has it.
      const both = new Map([
        ...world.ometria.contacts(collectionFor(LIST)),
        ...second.contacts(collectionFor(LIST)),
      ]);
      const truth = world.mailchimp.truth(LIST);
      const missing = truth.filter((m) => !both.has(m.id));
      assert.equal(missing.length, 0, `missing ${missing.slice(0, 3).map((m) => m.id)}`);
    } finally {
      for (const child of [one, two]) {
        try {
          child?.kill("SIGKILL");
        } catch {
          // already gone
        }
        await child?.status;
        await child?.stdout.cancel().catch(() => {});
        await child?.stderr.cancel().catch(() => {});
      }
      await second.close();
      await world.close();
    }
  },
});
