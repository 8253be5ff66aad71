import assert from "node:assert/strict";
import { isFinal, judge, type Observation } from "../../lib/writer/gate.ts";
import type { LedgerEntry } from "../../lib/state/ledger_table.ts";

const T = Date.UTC(2026, 10, 1, 12, 0, 0);

const entry = (over: Partial<LedgerEntry> = {}): LedgerEntry => ({
  versionMs: T,
  hash: "aaaaaaaaaaaaaaaa",
  acked: true,
  gone: false,
  final: true,
  ...over,
});

const seen = (over: Partial<Observation> = {}): Observation => ({
  versionMs: T,
  gone: false,
  final: true,
  hash: "aaaaaaaaaaaaaaaa",
  readSeq: 10,
  ...over,
});

Deno.test("judge() sends what nothing was sent for, and skips what Ometria acknowledged", () => {
  assert.equal(judge(undefined, 0, seen()), "send");
  assert.equal(judge(entry(), 0, seen()), "unchanged");
  assert.equal(judge(entry({ acked: false }), 0, seen()), "send", "written ahead, maybe lost");
  assert.equal(judge(entry(), 0, seen(), { repush: true }), "send");
});

Deno.test("judge() lets a read that started after the push win, whatever its last_changed", async (t) => {
  await t.step("a newer read with other contents is sent", () => {
    assert.equal(judge(entry(), 5, seen({ hash: "bbbbbbbbbbbbbbbb", readSeq: 6 })), "send");
  });
  await t.step("Mailchimp's clock stepped back: an older stamp read later is still sent", () => {
    const o = seen({ versionMs: T - 600_000, hash: "bbbbbbbbbbbbbbbb", readSeq: 6 });
    assert.equal(judge(entry(), 5, o), "send");
    assert.equal(judge(entry(), 0, o), "send", "an entry found on disk predates every read");
  });
  await t.step("a member gone since it was pushed is opted out", () => {
    assert.equal(judge(entry(), 5, seen({ gone: true, final: false, readSeq: 6 })), "send");
  });
  await t.step("a member created again after its opt-out is sent", () => {
    assert.equal(judge(entry({ gone: true }), 5, seen({ readSeq: 6 })), "send");
  });
});

Deno.test("judge() orders overlapping reads by version, and never sends the older", async (t) => {
  await t.step("the read began before a newer version's push was issued: stale", () => {
    assert.equal(judge(entry(), 9, seen({ versionMs: T - 1000, hash: "b", readSeq: 4 })), "stale");
  });
  await t.step("the read began before, but saw a newer version: sent", () => {
    assert.equal(judge(entry(), 9, seen({ versionMs: T + 1000, hash: "b", readSeq: 4 })), "send");
  });
  await t.step("an edit read before the delete's 404: stale", () => {
    const optOut = entry({ gone: true, versionMs: T + 5000, final: false });
    assert.equal(judge(optOut, 9, seen({ hash: "b", readSeq: 4 })), "stale");
  });
  await t.step("a 404 read before a newer version was pushed: stale", () => {
    assert.equal(judge(entry(), 9, seen({ gone: true, versionMs: T - 1000, readSeq: 4 })), "stale");
  });
  await t.step("an opt-out already acknowledged is not sent again", () => {
    assert.equal(judge(entry({ gone: true }), 0, seen({ gone: true, hash: "x" })), "unchanged");
  });
});

Deno.test("judge() breaks a tie within one second with a final read, or reads again", async (t) => {
  const other = { hash: "bbbbbbbbbbbbbbbb", readSeq: 4 };
  await t.step("a final read wins", () => {
    assert.equal(judge(entry({ final: false }), 9, seen({ ...other, final: true })), "send");
  });
  await t.step("a read that is not final loses to a final entry", () => {
    assert.equal(judge(entry({ final: true }), 9, seen({ ...other, final: false })), "stale");
  });
  await t.step("neither final: read again", () => {
    assert.equal(judge(entry({ final: false }), 9, seen({ ...other, final: false })), "recheck");
  });
  await t.step("alive and gone in the same second: read again unless one is final", () => {
    const gone = entry({ gone: true, final: false });
    assert.equal(judge(gone, 9, seen({ readSeq: 4, final: false })), "recheck");
    assert.equal(judge(gone, 9, seen({ readSeq: 4, final: true })), "send");
    const alive = entry({ final: false });
    assert.equal(judge(alive, 9, seen({ gone: true, final: false, readSeq: 4 })), "recheck");
  });
});

Deno.test("isFinal() wants the answer at least 2 s after the version", () => {
  assert.equal(isFinal(T, T + 1999), false);
  assert.equal(isFinal(T, T + 2000), true);
  assert.equal(isFinal(T, undefined), false);
});
