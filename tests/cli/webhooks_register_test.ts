/**
 * `webhooks register` as a user first meets it (issue 18): before the receiver listens,
 * Mailchimp's check of the URL fails, and the answer must say that the receiver comes first;
 * a public http:// URL would carry the secret in clear, and is warned about.
 */
import assert from "node:assert/strict";
import { runCli } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";

const LIST = "hook000002";

Deno.test("webhooks register before the receiver listens says it must answer first, and warns of http://", async () => {
  const w = await startCliWorld({
    prefix: "webhooks_register_",
    env: { MAILCHIMP_WEBHOOK_SECRET: "register-secret-0123456789" },
  });
  try {
    w.mailchimp.addList(LIST, { members: 1 });
    // A reserved name (RFC 2606) that never resolves: the simulated Mailchimp's check of
    // the URL gets no answer, as Mailchimp's does before the daemon runs.
    const base = "http://sync.example.invalid";
    const r = await runCli(
      ["webhooks", "register", LIST, "--url", base, "--state", w.state],
      w.env,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /could not be validated/);
    assert.match(
      r.stdout,
      new RegExp(`the receiver must already answer at ${base}/webhooks/mailchimp/${LIST}/…`),
    );
    assert.match(r.stdout, /start the daemon with WEBHOOK_PORT/);
    assert.match(r.stderr, /--url http:\/\/sync\.example\.invalid is http:\/\/: .* in clear/);
    assert.match(r.stderr, /register https:\/\/sync\.example\.invalid instead/);
    assert.ok(!(r.stdout + r.stderr).includes("register-secret-0123456789"), "no secret");
  } finally {
    await w.close();
  }
});
