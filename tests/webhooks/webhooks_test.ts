/**
 * The webhook path end to end: the simulated Mailchimp delivers its events over real HTTP to
 * the receiver, which appends them to the connection's inbox in the state store; the sync
 * service's writer for the connection acts on each with the connection's own clients.
 */
import assert from "node:assert/strict";
import { compareCopies } from "../../lib/sim/compare.ts";
import { assertInSync, startWorld, type World } from "../_helpers/world.ts";
import { SyncService } from "../../lib/app/sync_service.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { Metrics } from "../../lib/metrics/metrics.ts";
import { renderStateMetrics } from "../../lib/metrics/state_metrics.ts";
import { KvStore } from "../../lib/state/kv_store.ts";
import type { StateStore } from "../../lib/state/store.ts";
import { serveWebhooks, type WebhookServer } from "../../lib/webhooks/receiver.ts";
import { startWebhooks } from "../../lib/webhooks/setup.ts";
import { subscriberHash } from "../../lib/mailchimp/member.ts";
import { runWebhooksCommand } from "../../lib/app/commands/webhooks.ts";

const LIST = "list000001";
const SECRET = "s3cret-0123456789abcdef";

interface Receiver {
  world: World;
  service: SyncService;
  server: WebhookServer;
  metrics: Metrics;
  url: string;
  close(): Promise<void>;
}

async function startReceiver(
  options: {
    store?: StateStore;
    members?: number;
    profile?: "names" | "retail";
    serviceOptions?: Record<string, unknown>;
  } = {},
): Promise<Receiver> {
  const world = await startWorld(options.store ? { store: options.store } : {});
  world.mailchimp.addList(LIST, {
    members: options.members ?? 20,
    seed: 3,
    ...(options.profile ? { profile: options.profile } : {}),
  });
  const metrics = new Metrics();
  const connection = world.connection(LIST, { webhookSecret: SECRET });
  const svc = world.service([connection], { metrics, ...options.serviceOptions });
  const handler = startWebhooks({
    connections: [connection],
    store: world.store,
    clock: world.clock,
    logger: quietLogger(),
    metrics,
  });
  const server = serveWebhooks({ handler, port: 0 });
  const url = `${server.url}/webhooks/mailchimp/${LIST}/${SECRET}`;
  return {
    world,
    service: svc,
    server,
    metrics,
    url,
    close: async () => {
      await world.mailchimp.webhooks.settle();
      await server.close();
      await svc.close();
      await world.close();
    },
  };
}

/** Waits for deliveries to be answered and the inboxes to be worked off (no sleeps). */
async function settled(r: Receiver): Promise<void> {
  await r.world.mailchimp.webhooks.settle();
  await r.service.idle();
}

Deno.test("receiver answers GET checks, 404s wrong secrets and unknown connections, 400s bodies that are no event, 200s events it does not act on", async () => {
  const r = await startReceiver();
  try {
    const get = await fetch(r.url);
    assert.equal(get.status, 200);
    await get.body?.cancel();
    for (
      const path of [
        `/webhooks/mailchimp/${LIST}/wrong-secret-0123456789`,
        `/webhooks/mailchimp/nope/${SECRET}`,
        `/webhooks/mailchimp/${LIST}`,
        `/metrics`,
      ]
    ) {
      const res = await fetch(`${r.server.url}${path}`, { method: "POST", body: "type=profile" });
      assert.equal(res.status, 404, path);
      assert.doesNotMatch(await res.text(), /s3cret/);
    }
    const bad = await fetch(r.url, { method: "POST", body: "type=nonsense&data[id]=x" });
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
    // A profile without an address (an SMS-only contact) and another list's event are
    // Mailchimp's: a 4xx would only make it retry for 75 minutes and disable the webhook.
    const noMember = await fetch(r.url, { method: "POST", body: "type=profile" });
    assert.equal(noMember.status, 200);
    await noMember.body?.cancel();
    const otherList = await fetch(r.url, {
      method: "POST",
      body: `type=profile&data[list_id]=other&data[email]=a@example.com`,
    });
    assert.equal(otherList.status, 200);
    await otherList.body?.cancel();
    const big = await fetch(r.url, {
      method: "POST",
      body: `type=profile&data[email]=a@example.com&x=${"a".repeat(70_000)}`,
    });
    assert.equal(big.status, 400);
    await big.body?.cancel();
    const text = r.metrics.render();
    assert.match(text, /sync_webhook_events_total\{outcome="not_found"\} 4/);
    assert.match(text, /sync_webhook_events_total\{outcome="bad_request"\} 2/);
    assert.match(text, /sync_webhook_events_total\{outcome="ignored_no_email"\} 1/);
    assert.match(text, /sync_webhook_events_total\{outcome="ignored_other_list"\} 1/);
    assert.match(text, /sync_webhook_events_total\{outcome="check"\} 1/);
  } finally {
    await r.close();
  }
});

Deno.test("a profile change reaches Ometria through the webhook, without a polling run", async () => {
  const r = await startReceiver();
  try {
    await r.service.runOnce(LIST);
    r.world.mailchimp.webhooks.sendTo(LIST, r.url);
    const member = r.world.mailchimp.truth(LIST)[0]!;
    const listRequests = r.world.mailchimp.stats.membersRequests;
    r.world.mailchimp.upsertMember(LIST, { email: member.email_address, FNAME: "Webhooked" });
    await settled(r);
    const contact = r.world.ometria.contacts(collectionFor(LIST)).get(member.id);
    assert.equal(contact?.firstname, "Webhooked");
    // Acted on by fetching the one member, not by reading the list.
    assert.equal(r.world.mailchimp.stats.membersRequests, listRequests);
    assertInSync(r.world, LIST);
    const state = await r.world.store.get(LIST);
    assert.equal(state?.last_webhook?.type, "profile");
    assert.notEqual(state?.last_webhook?.fired_at, null);
    // The last event's time and lag are facts of the state: /metrics renders them from it.
    const gauges = renderStateMetrics(
      [{ id: LIST, list_id: LIST, threshold_seconds: 7200, state }],
      r.world.clock.now(),
    );
    assert.match(gauges, /sync_webhook_last_received_timestamp_seconds\{connection="list000001"\}/);
    assert.match(gauges, /sync_webhook_delivery_lag_seconds\{connection="list000001"\}/);
    assert.match(r.metrics.render(), /sync_webhook_events_total\{outcome="pushed"\} 1/);
  } finally {
    await r.close();
  }
});

Deno.test("a member pushed from a webhook carries the mapped fields a run would send", async () => {
  const r = await startReceiver({ profile: "retail" });
  try {
    await r.service.runOnce(LIST);
    r.world.mailchimp.webhooks.sendTo(LIST, r.url);
    const member = r.world.mailchimp.truth(LIST)[0]!;
    r.world.mailchimp.upsertMember(LIST, { email: member.email_address, FNAME: "Webhooked" });
    await settled(r);
    // The copy check of the default mapping: a webhook push without the mapping would drop
    // phone, address, tags… until the member changed again.
    const c = compareCopies(
      r.world.mailchimp.truth(LIST),
      r.world.ometria.contacts(collectionFor(LIST)),
      LIST,
      "push",
      { defaultFields: r.world.mailchimp.fieldDefinitions(LIST) },
    );
    assert.deepEqual([c.missing.length, c.stale], [0, []]);
    assert.equal(
      r.world.ometria.contacts(collectionFor(LIST)).get(member.id)?.firstname,
      "Webhooked",
    );
  } finally {
    await r.close();
  }
});

Deno.test("SMS, campaign and SMS-only deliveries are answered 200 and counted by type, never acted on", async () => {
  const r = await startReceiver();
  try {
    await r.service.runOnce(LIST);
    r.world.mailchimp.webhooks.sendTo(LIST, r.url);
    const before = r.world.mailchimp.stats.memberRequests;
    r.world.mailchimp.sendSmsEvent(LIST, "sms_subscribe", "+15555550100");
    r.world.mailchimp.sendSmsEvent(LIST, "upsms", "+15555550101");
    r.world.mailchimp.sendSmsEvent(LIST, "profile", "+15555550100");
    r.world.mailchimp.sendCampaign(LIST, "Spring sale");
    await settled(r);
    assert.equal(r.world.mailchimp.webhooks.stats.failed, 0, "no delivery refused");
    assert.equal(r.world.mailchimp.stats.memberRequests, before, "nothing fetched");
    const text = r.metrics.render();
    for (const kind of ["sms_subscribe", "upsms", "no_email", "campaign"]) {
      assert.match(text, new RegExp(`sync_webhook_events_total\\{outcome="ignored_${kind}"\\} 1`));
    }
  } finally {
    await r.close();
  }
});

Deno.test("a delivery retried by Mailchimp is acted on once", async () => {
  const r = await startReceiver();
  try {
    await r.service.runOnce(LIST);
    const member = r.world.mailchimp.truth(LIST)[1]!;
    const body = new URLSearchParams({
      type: "profile",
      fired_at: "2026-11-01 12:00:00",
      "data[id]": member.id.slice(3, 13),
      "data[email]": member.email_address,
      "data[list_id]": LIST,
    }).toString();
    const before = r.world.mailchimp.stats.memberRequests;
    for (let i = 0; i < 3; i++) {
      const res = await fetch(r.url, { method: "POST", body });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    }
    await r.service.idle();
    assert.equal(r.world.mailchimp.stats.memberRequests - before, 1);
    assert.match(r.metrics.render(), /sync_webhook_events_total\{outcome="duplicate"\} 2/);
  } finally {
    await r.close();
  }
});

Deno.test("upemail opts out the old id at once and pushes the new one", async () => {
  const r = await startReceiver();
  try {
    await r.service.runOnce(LIST);
    r.world.mailchimp.webhooks.sendTo(LIST, r.url);
    const member = r.world.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;
    const moved = r.world.mailchimp.changeEmail(LIST, member.email_address, "moved@example.com");
    await settled(r);
    const contacts = r.world.ometria.contacts(collectionFor(LIST));
    assert.equal(contacts.get(member.id)?.marketing_optin, "EXPLICITLY_OPTEDOUT");
    assert.equal(contacts.get(moved.id)?.email, "moved@example.com");
    const ledger = (await r.world.store.ledger(LIST).load()).liveIds();
    assert.equal(ledger.has(member.id), false);
    assert.equal(ledger.has(moved.id), true);
  } finally {
    await r.close();
  }
});

Deno.test("unsubscribe with action=delete opts the deleted member out", async () => {
  const r = await startReceiver();
  try {
    await r.service.runOnce(LIST);
    r.world.mailchimp.webhooks.sendTo(LIST, r.url);
    const member = r.world.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;
    r.world.mailchimp.deleteMember(LIST, member.email_address);
    await settled(r);
    const contact = r.world.ometria.contacts(collectionFor(LIST)).get(member.id);
    assert.equal(contact?.marketing_optin, "EXPLICITLY_OPTEDOUT");
    assert.equal((await r.world.store.get(LIST))?.last_webhook?.type, "unsubscribe");
  } finally {
    await r.close();
  }
});

Deno.test("a member Mailchimp serves malformed is quarantined from a webhook", async () => {
  const r = await startReceiver();
  try {
    await r.service.runOnce(LIST);
    const member = r.world.mailchimp.truth(LIST)[2]!;
    r.world.mailchimp.corruptMember(LIST, member.email_address, { status: "weird" });
    const res = await fetch(r.url, {
      method: "POST",
      body: `type=profile&fired_at=2026-11-01+12:00:00&data[email]=${member.email_address}`,
    });
    await res.body?.cancel();
    await r.service.idle();
    const state = await r.world.store.get(LIST);
    assert.deepEqual(state?.quarantine.map((q) => q.id), [subscriberHash(member.email_address)]);
  } finally {
    await r.close();
  }
});

Deno.test("webhook events share the Mailchimp connection cap and Ometria rate with polling", async () => {
  const r = await startReceiver({
    members: 300,
    serviceOptions: { mailchimpMaxConnections: 1, ometriaMaxRequestsPerSecond: 2, pageSize: 50 },
  });
  try {
    r.world.mailchimp.setOptions({ maxConnections: 1 });
    r.world.mailchimp.webhooks.sendTo(LIST, r.url);
    const members = r.world.mailchimp.truth(LIST).slice(0, 20);
    const running = r.service.runOnce(LIST);
    for (const m of members) {
      r.world.mailchimp.upsertMember(LIST, { email: m.email_address, LNAME: "Shared" });
    }
    await settled(r);
    await running;
    // One Mailchimp slot and one Ometria limiter for both: neither API ever said 429.
    assert.equal(r.world.mailchimp.stats.status429, 0);
    assert.equal(r.world.ometria.stats.status429, 0);
    const contacts = r.world.ometria.contacts(collectionFor(LIST));
    for (const m of members) assert.equal(contacts.get(m.id)?.lastname, "Shared");
  } finally {
    await r.close();
  }
});

Deno.test("with Deno KV state, events wait in a durable, de-duplicated inbox in KV", async () => {
  const dir = await Deno.makeTempDir();
  const store = await KvStore.open(`${dir}/state.kv`, {
    clock: { now: () => Date.now(), sleep: () => Promise.resolve() },
  });
  const r = await startReceiver({ store });
  try {
    await r.service.runOnce(LIST);
    r.world.mailchimp.webhooks.sendTo(LIST, r.url);
    const member = r.world.mailchimp.truth(LIST)[4]!;
    r.world.mailchimp.upsertMember(LIST, { email: member.email_address, FNAME: "ViaKv" });
    await settled(r);
    assert.equal(r.world.ometria.contacts(collectionFor(LIST)).get(member.id)?.firstname, "ViaKv");
    assert.equal((await store.get(LIST))?.last_webhook?.type, "profile");
  } finally {
    await r.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the receiver answers 200 only once the event is in the inbox, 503 when it is full", async () => {
  const r = await startReceiver();
  try {
    const member = r.world.mailchimp.truth(LIST)[5]!;
    // Held back: the writer cannot act on it while Ometria holds its push.
    const held = r.world.ometria.holdPush();
    const body = (n: number) =>
      `type=profile&fired_at=2026-11-01+12:00:0${n}&data[email]=${
        encodeURIComponent(member.email_address)
      }`;
    const res = await fetch(r.url, { method: "POST", body: body(0) });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const waiting = await r.world.store.inbox(LIST).peek(10);
    assert.equal(waiting.length, 1, "in the inbox when the 200 was sent");
    assert.deepEqual(waiting[0]?.entry.memberIds, [member.id]);
    await held.arrived;
    held.release();
    await r.service.idle();
    assert.equal((await r.world.store.inbox(LIST).peek(10)).length, 0, "removed once done");
  } finally {
    await r.close();
  }
});

Deno.test("webhooks register creates, then updates, each list's webhook; list masks secrets", async () => {
  const r = await startReceiver();
  try {
    const out: string[] = [];
    const connection = r.world.connection(LIST, { webhookSecret: SECRET });
    const config = {
      connections: [connection],
      webhooksAction: "register" as const,
      publicUrl: r.server.url,
      alertWebhookUrl: undefined,
      mailchimpTimeoutSeconds: 5,
    };
    const deps = {
      clock: r.world.clock,
      logger: quietLogger(),
      fetch: globalThis.fetch,
      write: (t: string) => out.push(t),
    };
    assert.equal(await runWebhooksCommand(config, deps), 0);
    assert.match(out.join(""), /webhook created/);
    const [hook] = r.world.mailchimp.webhooks.list(LIST);
    assert.equal(hook?.url, r.url);
    assert.deepEqual(hook?.sources, { user: true, admin: true, api: false });
    assert.equal(hook?.events.upemail, true);
    assert.equal(await runWebhooksCommand(config, deps), 0);
    assert.match(out.join(""), /already registered/);
    // Someone switched an event off in Mailchimp: registering again repairs it in place.
    await r.world.mailchimp.webhooks.save(LIST, { events: { upemail: false } }, hook!.id);
    assert.equal(await runWebhooksCommand(config, deps), 0);
    assert.match(out.join(""), /webhook updated/);
    assert.equal(r.world.mailchimp.webhooks.list(LIST).length, 1);
    assert.equal(r.world.mailchimp.webhooks.list(LIST)[0]?.events.upemail, true);
    // A URL the receiver does not answer (a secret it does not know) fails Mailchimp's check.
    const rotated = {
      ...config,
      connections: [{ ...connection, webhookSecret: "n3w-secret-0123456789" }],
    };
    assert.equal(await runWebhooksCommand(rotated, deps), 1);
    assert.match(out.join(""), /could not be validated/);
    assert.doesNotMatch(out.join(""), /n3w-secret/);
    out.length = 0;
    assert.equal(await runWebhooksCommand({ ...config, webhooksAction: "list" }, deps), 0);
    assert.match(out.join(""), /webhooks\/mailchimp\/list000001\/\*\*\*\*/);
    assert.doesNotMatch(out.join(""), /secret-0123/);
  } finally {
    await r.close();
  }
});

Deno.test("the Deploy handler routes /webhooks/mailchimp/… to the receiver", async () => {
  const r = await startReceiver();
  try {
    const { deployHandler } = await import("../../lib/app/deploy_http.ts");
    const handler = deployHandler({
      store: r.world.store,
      clock: r.world.clock,
      config: { connections: [], thresholdMinutes: 60, statusToken: undefined },
      webhooks: (request) =>
        fetch(`${r.server.url}${new URL(request.url).pathname}`, { method: request.method }),
    });
    const check = await handler(new Request(`http://deploy${new URL(r.url).pathname}`));
    assert.equal(check.status, 200);
    await check.body?.cancel();
    const health = await handler(new Request("http://deploy/healthz"));
    assert.equal(health.status, 200);
    await health.body?.cancel();
  } finally {
    await r.close();
  }
});
