/**
 * `main.ts erase` as a process against both simulators: an erasure filed with Ometria and the
 * Mailchimp member deleted for good, named by its label and never by its address (output,
 * log, state file), then `erase --status` following it until Ometria completes it.
 */
import assert from "node:assert/strict";
import { runCli } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";

const LIST = "erasecli01";

Deno.test("main.ts erase --mailchimp files the erasure, says so without the address, and erase --status follows it to completion", async () => {
  const w = await startCliWorld({
    prefix: "erase_test_",
    ometria: { privacy: { deletionDelayMs: 0 } },
    env: { MAILCHIMP_CLOCK_MARGIN_SECONDS: "2" },
  });
  try {
    w.mailchimp.addList(LIST, { members: 8, seed: 6, lastChangedTo: Date.now() - 60_000 });
    const env = { ...w.env, LOG_FILE: `${w.dir}/log_file.log` };
    const state = ["--state", w.state];
    assert.equal((await runCli(["--once", ...state, LIST], env)).code, 0);
    const email = w.mailchimp.truth(LIST)[3]!.email_address;

    const erased = await runCli(
      ["erase", email, "--connection", LIST, "--mailchimp", ...state],
      env,
    );
    assert.equal(erased.code, 0, erased.stderr);
    assert.match(
      erased.stdout,
      new RegExp(
        `^${LIST}: address 1: erasure [0-9a-f]{12} filed with Ometria \\(request [0-9a-f-]{36}`,
      ),
    );
    assert.match(erased.stdout, /Mailchimp member deleted permanently; removed from the ledger/);
    assert.equal(w.mailchimp.truth(LIST).length, 7);
    assert.deepEqual(w.ometria.privacy.deletionRequests().map((r) => r.email), [
      email.toLowerCase(),
    ]);

    const status = await runCli(["erase", "--status", ...state], env);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`${LIST}: 1 open erasure\\(s\\), 0 completed`));
    // With the keys, --status asks Ometria first: the request (done at once here) completes.
    const asked = await runCli(["erase", "--status", "--connection", LIST, ...state], env);
    assert.equal(asked.code, 0, asked.stderr);
    assert.match(asked.stdout, new RegExp(`${LIST}: 0 open erasure\\(s\\), 1 completed`));

    const bad = await runCli(["erase", "nobody", "--connection", LIST, ...state], env);
    assert.equal(bad.code, 2);
    const written = [
      erased.stdout,
      erased.stderr,
      status.stdout,
      asked.stdout,
      await Deno.readTextFile(`${w.dir}/log_file.log`),
      await Deno.readTextFile(w.state),
    ].join("\n").toLowerCase();
    assert.ok(!written.includes(email.toLowerCase()), "no address anywhere");
  } finally {
    await w.close();
  }
});
