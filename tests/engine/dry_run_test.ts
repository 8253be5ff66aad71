import assert from "node:assert/strict";
import { changeCause } from "../../lib/engine/dry_run.ts";
import type { LedgerEntry } from "../../lib/state/ledger_table.ts";

const SENT: LedgerEntry = {
  versionMs: Date.parse("2026-03-01T10:00:00Z"),
  hash: "00000000000000aa",
  acked: true,
  gone: false,
  final: true,
};

Deno.test("changeCause() says why a record differs from the ledger's entry", async (t) => {
  const cases: [string, Partial<LedgerEntry>, { versionMs: number; hash: string }, string][] = [
    [
      "newer in Mailchimp",
      {},
      { versionMs: SENT.versionMs + 1000, hash: "bb" },
      "changed_in_mailchimp",
    ],
    [
      "same version, other record",
      {},
      { versionMs: SENT.versionMs, hash: "bb" },
      "mapping_changed",
    ],
    ["older than sent", {}, { versionMs: SENT.versionMs - 1000, hash: "bb" }, "older_than_sent"],
    [
      "never acknowledged",
      { acked: false },
      { versionMs: SENT.versionMs, hash: SENT.hash },
      "not_acknowledged",
    ],
    ["id-only entry of an earlier release", { versionMs: 0, hash: "" }, {
      versionMs: 5,
      hash: "bb",
    }, "changed_in_mailchimp"],
  ];
  for (const [name, entry, record, cause] of cases) {
    await t.step(name, () => assert.equal(changeCause({ ...SENT, ...entry }, record), cause));
  }
});
