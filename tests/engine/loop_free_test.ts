/**
 * Consent both ways, with no loop: both directions run for several daemon ticks against both
 * simulators (the webhook registered by `webhooks register`, delivered over real HTTP), and
 * every request is counted. An unsubscribe made in Ometria costs one Mailchimp write and one
 * push of the member's new state (the copy must stay identical), and nothing more: no webhook
 * (the registration leaves API changes out), no listing in Ometria (API opt-outs are not
 * listed), no second push. An unsubscribe made in Mailchimp costs its webhook and one push.
 */
import assert from "node:assert/strict";
import { runWebhooksCommand } from "../../lib/app/commands/webhooks.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { serveWebhooks } from "../../lib/webhooks/receiver.ts";
import { startWebhooks } from "../../lib/webhooks/setup.ts";
import { assertInSync, startWorld } from "../_helpers/world.ts";

const LIST = "loopfree01";
const SECRET = "loop-secret-0123456789";
const MINUTE = 60_000;

Deno.test("consent both ways for several ticks: each unsubscribe costs one Mailchimp write and no further Ometria push", async () => {
  const w = await startWorld();
  w.mailchimp.addList(LIST, { members: 40, seed: 9, lastChangedTo: w.clock.now() - 10 * MINUTE });
  const connection = w.connection(LIST, { optoutBack: true, webhookSecret: SECRET });
  /** Ids in each record pushed to Ometria, in order. */
  const pushed: string[] = [];
  const service = w.service([connection], {
    reconcileEveryHours: 0,
    fetch: async (input, init) => {
      const request = new Request(input, init);
      if (new URL(request.url).pathname === "/v2/push") {
        // Read as Ometria reads it: the body is bytes (lib/ometria/push_body.ts).
        const records = await request.clone().json() as { id: string }[];
        for (const r of records) pushed.push(r.id);
      }
      return fetch(request);
    },
  });
  const handler = startWebhooks({
    connections: [connection],
    store: w.store,
    clock: w.clock,
    logger: quietLogger(),
  });
  const server = serveWebhooks({ handler, port: 0 });
  try {
    const registered = await runWebhooksCommand({
      connections: [connection],
      webhooksAction: "register",
      publicUrl: server.url,
      alertWebhookUrl: undefined,
      mailchimpTimeoutSeconds: 5,
    }, { clock: w.clock, logger: quietLogger(), fetch, write: () => {} });
    assert.equal(registered, 0);
    await service.tick();
    assertInSync(w, LIST);

    const subscribed = w.mailchimp.truth(LIST).filter((m) => m.status === "subscribed");
    const inOmetria = subscribed.slice(0, 3);
    const inMailchimp = subscribed.slice(3, 5);
    pushed.length = 0;
    w.mailchimp.resetStats();
    const sentBefore = w.mailchimp.webhooks.stats.sent;
    const listedBefore = w.ometria.privacy.stats.unsubscribesRequests;
    await w.clock.tick(MINUTE);
    for (const m of inOmetria) w.ometria.privacy.unsubscribe(m.email_address);
    for (const m of inMailchimp) {
      w.mailchimp.upsertMember(LIST, {
        email: m.email_address,
        status: "unsubscribed",
        source: "user",
      });
    }
    // The daemon's next tick comes after them (a tick reads up to its own second).
    await w.clock.tick(5_000);
    const perTick: { mailchimpWrites: number; pushes: number; webhooks: number }[] = [];
    for (let tick = 0; tick < 6; tick++) {
      const writes = w.mailchimp.stats.memberWrites;
      const pushes = pushed.length;
      const sent = w.mailchimp.webhooks.stats.sent;
      await w.mailchimp.webhooks.settle();
      await service.idle();
      await service.tick();
      await w.mailchimp.webhooks.settle();
      await service.idle();
      perTick.push({
        mailchimpWrites: w.mailchimp.stats.memberWrites - writes,
        pushes: pushed.length - pushes,
        webhooks: w.mailchimp.webhooks.stats.sent - sent,
      });
      await w.clock.tick(MINUTE);
    }

    // Ometria → Mailchimp: one PATCH each, all in the first tick.
    assert.deepEqual(perTick.map((t) => t.mailchimpWrites), [3, 0, 0, 0, 0, 0]);
    for (const m of inOmetria) {
      assert.equal(w.mailchimp.truth(LIST).find((x) => x.id === m.id)?.status, "unsubscribed");
    }
    // Each member that unsubscribed, on either side, reached Ometria once; nothing else did.
    const changed = [...inOmetria, ...inMailchimp].map((m) => m.id).sort();
    assert.deepEqual([...pushed].sort(), changed);
    assert.deepEqual(perTick.slice(1).map((t) => t.pushes), [0, 0, 0, 0, 0]);
    // The poll itself: four listing requests (one per email type) a tick.
    assert.equal(w.ometria.privacy.stats.unsubscribesRequests - listedBefore, 4 * 6);
    // Only the two unsubscribes made in Mailchimp came as webhooks: the PATCHes raise none.
    assert.equal(w.mailchimp.webhooks.stats.sent - sentBefore, 2);
    // Ometria lists only the three it saw itself: the opt-outs pushed are API unsubscribes.
    const listed = await fetch(
      `${w.ometria.url}/v2/unsubscribes?since=2020-01-01T00:00:00&before=2030-01-01T00:00:00`,
      { headers: { "X-Ometria-Auth": w.ometria.apiKey } },
    ).then((r) => r.json());
    assert.equal(listed.length, 3);
    for (const m of [...inOmetria, ...inMailchimp]) {
      assert.equal(w.ometria.privacy.subscription(m.email_address), "EXPLICITLY_OPTEDOUT");
    }
    const state = await w.store.get(LIST);
    assert.equal(state?.optout_back?.applied, 3);
    assertInSync(w, LIST);
  } finally {
    await w.mailchimp.webhooks.settle();
    await server.close();
    await service.close();
    await w.close();
  }
});
