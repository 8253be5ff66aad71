/**
 * The daemon as a process with WEBHOOK_PORT: the simulated Mailchimp registers the webhook
 * (checking the URL with a GET), then delivers a change to the daemon's listener, and the
 * change reaches Ometria without waiting for a tick. It waits on a real subprocess, so it
 * polls briefly instead of using the fake clock.
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { runCli, spawnCli } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";
import { until } from "../_helpers/until.ts";

const LIST = "hook000001";
const SECRET = "cli-secret-0123456789abcdef";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("the daemon receives a webhook on WEBHOOK_PORT and the change reaches Ometria", async () => {
  const port = freePort();
  const w = await startCliWorld({
    prefix: "webhooks_daemon_",
    env: {
      MAILCHIMP_CLOCK_MARGIN_SECONDS: "2",
      WEBHOOK_PORT: String(port),
      MAILCHIMP_WEBHOOK_SECRET: SECRET,
    },
  });
  const { mailchimp, ometria, env, state } = w;
  mailchimp.addList(LIST, { members: 30, seed: 5, lastChangedTo: Date.now() - 600_000 });
  const child = spawnCli([LIST, "--state", state], env);
  let stderr = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderr += decoder.decode(chunk);
  })();
  // A webhook round trip takes a tick first; a failure shows what the daemon said.
  const patience = { timeoutMs: 30_000, intervalMs: 20, detail: () => stderr };
  try {
    await until(() => /List hook000001: ok/.test(stderr), "the first tick", patience);
    assert.match(stderr, /Receiving Mailchimp webhooks at http:\/\/127\.0\.0\.1:\d+/);
    assert.doesNotMatch(stderr, new RegExp(SECRET));

    // Registered while the daemon runs (no lock), through Mailchimp's GET check.
    const registered = await runCli(
      ["webhooks", "register", LIST, "--state", state, "--url", `http://127.0.0.1:${port}`],
      env,
    );
    assert.equal(registered.code, 0, registered.stderr);
    assert.match(registered.stdout, /webhook created/);
    assert.doesNotMatch(registered.stdout + registered.stderr, new RegExp(SECRET));
    const listed = await runCli(["webhooks", "list", LIST, "--state", state], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /\/webhooks\/mailchimp\/hook000001\/\*\*\*\*/);

    const member = mailchimp.truth(LIST)[0]!;
    mailchimp.upsertMember(LIST, { email: member.email_address, FNAME: "FromWebhook" });
    await mailchimp.webhooks.settle();
    await until(
      () => ometria.contacts(collectionFor(LIST)).get(member.id)?.firstname === "FromWebhook",
      "the change in Ometria",
      patience,
    );
    assert.equal(mailchimp.webhooks.stats.failed, 0);

    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    await reading;
    const status = await runCli(["status", "--json", "--state", state, LIST], env);
    const entry = JSON.parse(status.stdout).connections[0];
    assert.notEqual(entry.last_webhook_at, null);
    assert.equal(typeof entry.webhook_lag_seconds, "number");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await child.status;
    await reading;
    await w.close();
  }
});
