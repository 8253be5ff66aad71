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
  assert.match(out, /Full sync: ok, read 3,000, pushed 3,000, unchanged 0/);
  assert.match(out, /30 members changed in Mailchimp \(1%\)/);
  // A change that leaves the mapped record as it was (a name drawn again) is not sent.
  const incremental = /Incremental sync: ok, read 30, pushed (\d+), unchanged (\d+)/.exec(out);
  assert.equal(Number(incremental?.[1]) + Number(incremental?.[2]), 30, out);
  // A run under a second gets no members/s figure: "0.0s (83,333 members/s)" misled.
  assert.match(out, /Incremental sync: [^\n]* in \d+ ms \(\d+ Mailchimp/);
  assert.doesNotMatch(out, /Incremental sync: [^\n]*members\/s/);
  assert.match(out, /Webhook: a profile change reached Ometria in \d+ ms \(under 2 s\)/);
  assert.match(
    out,
    /Reconciliation: 2,997 members in Mailchimp compared with what Ometria was sent, 5 gone from it opted out in Ometria, 0 missed, 0 stale \(\d+ Mailchimp \+ 1 Ometria requests\)/,
  );
  assert.match(
    out,
    /✔ Ometria holds exactly what Mailchimp holds, mapped fields included: 2,997 members, 0 missing, 0 stale, 5 gone and opted out, 0 gone but still opted in/,
  );
});
