/**
 * Erasure's lifecycle through the sync service against both simulators on one fake clock:
 * filed with Ometria, the Mailchimp member deleted for good, the ledger forgetting it, the
 * record kept (a salted hash, no address) until Ometria reports it complete, `erasure.overdue`
 * past 30 days; and a permanent delete a webhook reports, for `erase_on_permanent_delete`.
 */
import assert from "node:assert/strict";
import { AlertManager } from "../../lib/freshness/alerts.ts";
import { renderStateMetrics } from "../../lib/metrics/state_metrics.ts";
import { erasureIdentity } from "../../lib/engine/erasure.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { serveWebhooks } from "../../lib/webhooks/receiver.ts";
import { startWebhooks } from "../../lib/webhooks/setup.ts";
import { captureLogs } from "../freshness/_helpers.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { startWorld } from "../_helpers/world.ts";

const LIST = "erase00001";
const DAY = 86_400_000;

Deno.test("erase --mailchimp: filed once per Ometria account, deleted in Mailchimp, forgotten, kept until complete, never an address in state or logs", async () => {
  using logs = captureLogs();
  const w = await startWorld({ ometria: { privacy: { deletionDelayMs: 3 * DAY } } });
  w.mailchimp.addList(LIST, { members: 10, seed: 2, lastChangedTo: w.clock.now() - 60_000 });
  w.mailchimp.addList("erase00002", { members: 5, seed: 3, lastChangedTo: w.clock.now() - 60_000 });
  const alerts = new AlertManager({ clock: w.clock, logger: logs.logger });
  const service = w.service([LIST, "erase00002"], { logger: logs.logger, alerts });
  try {
    await service.tick();
    const member = w.mailchimp.truth(LIST)[2]!;
    const email = member.email_address;
    const outcomes = await service.erase([email.toUpperCase()], { mailchimp: true });
    assert.deepEqual(
      outcomes.map((o) => o.held ? o.id : [o.id, o.results.map((r) => [r.ometria, r.mailchimp])]),
      [
        [LIST, [["filed", "deleted"]]],
        ["erase00002", [["filed", "not_found"]]],
      ],
    );
    assert.equal(w.ometria.privacy.deletionRequests().length, 1, "one account, one request");
    assert.equal(w.mailchimp.truth(LIST).some((m) => m.id === member.id), false);
    const table = await w.store.ledger(LIST).load();
    assert.equal(table.get(member.id), undefined, "gone from the ledger");

    const state = (await w.store.get(LIST))!;
    const [record] = state.erasures.open;
    assert.equal(record?.identity, await erasureIdentity(state.erasures.salt!, email));
    assert.equal(record?.request_id, w.ometria.privacy.deletionRequests()[0]?.id);
    const stored = JSON.stringify(await w.store.list());
    assert.ok(!stored.toLowerCase().includes(email.toLowerCase()), "no address in the state");
    assert.ok(!stored.includes(member.id), "nor its MD5");
    assert.match(
      renderStateMetrics(
        [{ id: LIST, list_id: LIST, threshold_seconds: 60, state }],
        w.clock.now(),
      ),
      /sync_connection_open_erasures\{connection="erase00001"\} 1/,
    );

    // Re-adding the address through the API is refused; a reconciliation has nothing to opt out.
    const readd = await fetch(`${w.mailchimp.url}/lists/${LIST}/members`, {
      method: "POST",
      headers: { authorization: `Bearer ${w.mailchimp.apiKey}` },
      body: JSON.stringify({ email_address: email, status: "subscribed" }),
    }).then((r) => r.json());
    assert.equal(readd.title, "Forgotten Email Not Subscribed");
    const [reconciled] = await service.reconcile([LIST]);
    assert.equal(reconciled?.summary?.orphans, 0);

    // Ticks ask Ometria once an hour; it completes the request after three days.
    for (let hour = 1; hour <= 80; hour++) {
      await w.clock.tick(3_600_000);
      await service.tick();
    }
    const after = (await w.store.get(LIST))!;
    assert.deepEqual([after.erasures.open.length, after.erasures.completed], [0, 1]);
    assert.ok(w.ometria.privacy.stats.deletionRequests <= 1 + 2 * 80, "asked at most hourly");
    assert.equal(w.ometria.privacy.stats.deletion429, 0);
    assert.match(
      String(w.ometria.contacts(collectionFor(LIST)).get(member.id)?.email),
      /@anonymous\.ometria$/,
    );
    assert.ok(!logs.text().toLowerCase().includes(email.toLowerCase()), "no address in the logs");
    assert.equal(logs.events("erasure.overdue").length, 0);
  } finally {
    await service.close();
    await alerts.close();
    await w.close();
  }
});

Deno.test("an erasure Ometria leaves open past 30 days raises erasure.overdue once; a failed filing is recorded as such", async () => {
  using logs = captureLogs();
  const w = await startWorld({ ometria: { privacy: { deletionDelayMs: 60 * DAY } } });
  w.mailchimp.addList(LIST, { members: 4, seed: 2, lastChangedTo: w.clock.now() - 60_000 });
  const alerts = new AlertManager({ clock: w.clock, logger: logs.logger });
  const service = w.service([LIST], { logger: logs.logger, alerts, reconcileEveryHours: 0 });
  try {
    await service.tick();
    await service.erase(["late@example.com"], { mailchimp: false });
    w.ometria.faults.queue(500);
    const [failed] = await service.erase(["refused@example.com"], { mailchimp: false });
    assert.equal(!failed!.held && failed!.results[0]?.ometria, "failed");
    for (let day = 1; day <= 35; day++) {
      await w.clock.tick(DAY);
      await service.tick();
    }
    const overdue = logs.events("erasure.overdue");
    assert.equal(overdue.length, 1, "once");
    assert.equal(overdue[0]?.properties.erasures, 2);
    const state = (await w.store.get(LIST))!;
    assert.deepEqual(state.erasures.open.map((r) => r.status).sort(), ["failed", "filed"]);
    assert.ok(state.erasures.open.every((r) => r.alerted_at !== null));
    assert.ok(
      !logs.text().includes("late@example.com") && !logs.text().includes("refused@example.com"),
    );
  } finally {
    await service.close();
    await alerts.close();
    await w.close();
  }
});

Deno.test("erase_on_permanent_delete: a permanent delete a webhook reports files the erasure, the address sealed in the inbox", async () => {
  const w = await startWorld({ ometria: { privacy: { deletionDelayMs: DAY } } });
  w.mailchimp.addList(LIST, { members: 6, seed: 4, lastChangedTo: w.clock.now() - 60_000 });
  const secret = "erase-secret-0123456789";
  const connection = w.connection(LIST, { webhookSecret: secret, eraseOnPermanentDelete: true });
  const plain = w.connection("erase00002", { webhookSecret: secret });
  w.mailchimp.addList("erase00002", { members: 3, seed: 5, lastChangedTo: w.clock.now() - 60_000 });
  const service = w.service([connection, plain], { reconcileEveryHours: 0 });
  const appended: string[] = [];
  const handler = startWebhooks({
    connections: [connection, plain],
    store: w.store,
    clock: w.clock,
    logger: quietLogger(),
  });
  const server = serveWebhooks({ handler, port: 0 });
  try {
    await service.tick();
    for (const c of [connection, plain]) {
      w.mailchimp.webhooks.sendTo(c.listId, `${server.url}/webhooks/mailchimp/${c.id}/${secret}`);
    }
    const watch = w.store.inbox(LIST);
    const member = w.mailchimp.truth(LIST)[1]!;
    const other = w.mailchimp.truth("erase00002")[0]!;
    // The opt-out's push is held, so the entry is still in the inbox to be looked at.
    const holding = w.ometria.holdPush((ids) => ids.includes(member.id));
    w.mailchimp.deleteMember(LIST, member.email_address);
    w.mailchimp.deleteMember("erase00002", other.email_address);
    await w.mailchimp.webhooks.settle();
    for (const item of await watch.peek(10)) appended.push(JSON.stringify(item.entry));
    holding.release();
    await service.idle();
    assert.equal(appended.length, 1);
    assert.match(appended[0]!, /"sealed":"/);
    assert.ok(!appended[0]!.includes(member.email_address), "sealed, not in clear");
    const requests = w.ometria.privacy.deletionRequests();
    assert.deepEqual(requests.map((r) => r.email), [member.email_address.toLowerCase()]);
    const state = (await w.store.get(LIST))!;
    assert.deepEqual(state.erasures.open.map((r) => [r.source, r.mailchimp]), [[
      "webhook",
      "not_found",
    ]]);
    assert.equal(
      w.ometria.contacts(collectionFor(LIST)).get(member.id)?.marketing_optin,
      "EXPLICITLY_OPTEDOUT",
    );
    assert.equal((await w.store.get("erase00002"))?.erasures.open.length, 0, "only where asked");
    assert.equal(
      w.ometria.contacts(collectionFor("erase00002")).get(other.id)?.marketing_optin,
      "EXPLICITLY_OPTEDOUT",
      "the other is only opted out",
    );
  } finally {
    await w.mailchimp.webhooks.settle();
    await server.close();
    await service.close();
    await w.close();
  }
});
