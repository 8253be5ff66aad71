import assert from "node:assert/strict";
import { runDemo } from "../../lib/app/demo.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { captureLogs } from "../freshness/_helpers.ts";

Deno.test("runDemo() syncs, changes 1%, re-syncs, reconciles and proves the copies identical", async () => {
  using logs = captureLogs();
  let out = "";
  const code = await runDemo({
    logger: logs.logger,
    clock: new FakeClock(Date.now(), { autoAdvance: true }),
    write: (text) => out += text,
    isTerminal: true,
    members: 3_000,
  });
  assert.equal(code, 0, out);
  assert.match(out, /Full sync: ok, read 3,000, pushed 3,000/);
  assert.match(out, /30 members changed in Mailchimp \(1%\)/);
  assert.match(out, /Incremental sync: ok, read 30, pushed 30/);
  // A run under a second gets no members/s figure: "0.0s (83,333 members/s)" misled.
  assert.match(out, /Incremental sync: [^\n]* in \d+ ms \(\d+ Mailchimp/);
  assert.doesNotMatch(out, /Incremental sync: [^\n]*members\/s/);
  assert.match(out, /Webhook: a profile change reached Ometria in \d+ ms \(under 2 s\)/);
  assert.match(out, /Reconciliation: 2,997 ids in Mailchimp, 5 gone from it opted out/);
  assert.match(
    out,
    /✔ Ometria holds exactly what Mailchimp holds, mapped fields included: 2,997 members, 0 missing, 0 stale, 5 gone and opted out, 0 gone but still opted in/,
  );
});
