/**
 * Signed webhook deliveries: the check against Mailchimp's documented recipe (HMAC-SHA256 of
 * `"{t}.{raw body}"`, header `X-Mailchimp-Signature: t=…,v1=…`, 5 minutes), computed here with
 * WebCrypto rather than with the code under test; then the receiver and `webhooks register`
 * against the simulated Mailchimp, which signs as the guide says.
 */
import assert from "node:assert/strict";
import { runWebhooksCommand } from "../../lib/app/commands/webhooks.ts";
import type { ConnectionConfig } from "../../lib/config/config.ts";
import { quietLogger } from "../../lib/log/logging.ts";
import { MailchimpSimulator } from "../../lib/sim/mailchimp_sim.ts";
import { MemoryStore } from "../../lib/state/memory_store.ts";
import {
  type ReceiverOutcome,
  serveWebhooks,
  webhookReceiver,
  webhookRoutes,
} from "../../lib/webhooks/receiver.ts";
import { verifyWebhookSignature } from "../../lib/webhooks/signature.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { recordingReceiver } from "../_helpers/recording_receiver.ts";
import { SUBSCRIBE } from "../fixtures/mailchimp_webhooks.ts";

const NOW = Date.UTC(2026, 4, 1, 12, 0, 0);
const SECRET = "whsec-0123456789abcdef";
const BODY = new TextEncoder().encode(SUBSCRIBE);

/** The header Mailchimp's guide describes, computed with WebCrypto. */
async function signed(secret: string, tSeconds: number, body: Uint8Array): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const message = new Uint8Array([...new TextEncoder().encode(`${tSeconds}.`), ...body]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, message));
  const hex = [...mac].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `t=${tSeconds},v1=${hex}`;
}

Deno.test("verifyWebhookSignature() follows Mailchimp's recipe and its 5-minute window", async (t) => {
  const t0 = NOW / 1000;
  const cases: [string, string | null, Uint8Array, string][] = [
    ["signed now", await signed(SECRET, t0, BODY), BODY, "valid"],
    ["signed 4 minutes ago", await signed(SECRET, t0 - 240, BODY), BODY, "valid"],
    ["signed 6 minutes ago", await signed(SECRET, t0 - 360, BODY), BODY, "stale"],
    ["signed 6 minutes ahead", await signed(SECRET, t0 + 360, BODY), BODY, "stale"],
    ["no header", null, BODY, "missing"],
    ["no v1", `t=${t0}`, BODY, "malformed"],
    ["another secret", await signed("another-secret-000", t0, BODY), BODY, "mismatch"],
    [
      "a body changed after signing",
      await signed(SECRET, t0, BODY),
      new TextEncoder().encode(SUBSCRIBE.replace("api%40", "evil%40")),
      "mismatch",
    ],
    [
      "a second v1 that matches (a secret being rotated)",
      `${await signed("old-secret-0000000", t0, BODY)},${
        (await signed(SECRET, t0, BODY)).split(",")[1]
      }`,
      BODY,
      "valid",
    ],
  ];
  for (const [name, header, body, verdict] of cases) {
    await t.step(name, () => {
      assert.equal(verifyWebhookSignature(header, body, SECRET, NOW), verdict);
    });
  }
});

/** A receiver for one connection on list `a6b5da1054`, and a POST to its route. */
function receiver(connection: Partial<ConnectionConfig>) {
  const r = recordingReceiver(
    webhookRoutes([{
      id: "c1",
      listId: "a6b5da1054",
      webhookSecret: "url-secret-0123456789",
      ...connection,
    }]),
    new FakeClock(NOW),
  );
  const post = async (body: string, headers: Record<string, string> = {}) =>
    (await r.post("/webhooks/mailchimp/c1/url-secret-0123456789", body, headers))[0];
  return { ...r, post };
}

Deno.test("with a signing secret the receiver refuses unsigned and forged deliveries, and does not act on stale ones", async () => {
  const r = receiver({ webhookSigningSecret: SECRET });
  try {
    const t0 = NOW / 1000;
    assert.equal(await r.post(SUBSCRIBE), 401);
    assert.equal(
      await r.post(SUBSCRIBE, {
        "x-mailchimp-signature": await signed("forged-secret-000", t0, BODY),
      }),
      401,
    );
    assert.equal(
      await r.post(SUBSCRIBE, { "x-mailchimp-signature": await signed(SECRET, t0 - 600, BODY) }),
      200,
    );
    assert.equal(
      await r.post(SUBSCRIBE, { "x-mailchimp-signature": await signed(SECRET, t0, BODY) }),
      200,
    );
    await r.settle();
    assert.deepEqual(r.outcomes, ["bad_signature", "bad_signature", "ignored_stale", "queued"]);
    assert.equal(r.jobs.length, 1);
  } finally {
    await r.close();
  }
});

Deno.test("without a signing secret the secret in the URL stays the proof", async () => {
  const r = receiver({});
  try {
    assert.equal(await r.post(SUBSCRIBE), 200);
    assert.deepEqual(r.outcomes, ["queued"]);
  } finally {
    await r.close();
  }
});

Deno.test("webhooks register prints the signing secret once, and the receiver checks the simulator's signed deliveries with it", async (t) => {
  for (const retrySignatures of ["fresh", "original"] as const) {
    await t.step(`retries signed ${retrySignatures}`, async () => {
      const clock = new FakeClock(NOW, { autoAdvance: true });
      const sim = await MailchimpSimulator.start({
        clock,
        webhookRetrySignatures: retrySignatures,
      });
      sim.addList("a6b5da1054", { members: 3 });
      const base: ConnectionConfig = {
        id: "c1",
        listId: "a6b5da1054",
        mailchimp: { apiKey: sim.apiKey, baseUrl: sim.url },
        ometria: { apiKey: "k", baseUrl: "http://127.0.0.1:9", endpoint: "push" },
        thresholdSeconds: 3600,
        webhookSecret: "url-secret-0123456789",
        webhookSigningSecretName: "MAILCHIMP_WEBHOOK_SIGNING_SECRET",
      };
      // The receiver must answer Mailchimp's GET check before the secret is known.
      let route = webhookRoutes([base]);
      const outcomes: ReceiverOutcome[] = [];
      const store = new MemoryStore({ clock });
      let down = false;
      const server = serveWebhooks({
        port: 0,
        handler: (request) =>
          down ? Promise.resolve(new Response("down", { status: 503 })) : webhookReceiver({
            routes: route,
            inboxFor: (id) => store.inbox(id),
            clock,
            logger: quietLogger(),
            onOutcome: (o) => outcomes.push(o),
          })(request),
      });
      try {
        let out = "";
        const code = await runWebhooksCommand({
          connections: [base],
          webhooksAction: "register",
          publicUrl: server.url,
          alertWebhookUrl: undefined,
          mailchimpTimeoutSeconds: 30,
          force: false,
        }, { clock, logger: quietLogger(), fetch, write: (s) => out += s });
        assert.equal(code, 0, out);
        const secret = /signing secret \(shown once[^:]*: (\S+)/.exec(out)?.[1];
        assert.ok(secret, out);
        assert.match(out, /set MAILCHIMP_WEBHOOK_SIGNING_SECRET to it/);
        assert.equal(sim.webhooks.list("a6b5da1054")[0]?.signing_enabled, true);
        assert.doesNotMatch(JSON.stringify(sim.webhooks.list("a6b5da1054")), /signing_secret/);
        route = webhookRoutes([{ ...base, webhookSigningSecret: secret }]);

        sim.upsertMember("a6b5da1054", { email: "new@example.com", FNAME: "New" });
        await sim.webhooks.settle();
        assert.deepEqual(outcomes.filter((o) => o !== "check"), ["queued"]);

        // A delivery that fails, retried 10 minutes later.
        down = true;
        sim.upsertMember("a6b5da1054", { email: "new@example.com", FNAME: "Renamed" });
        await sim.webhooks.settle();
        down = false;
        await clock.tick(10 * 60_000);
        sim.retryWebhooks();
        await sim.webhooks.settle();
        assert.equal(sim.webhooks.pendingRetries, 0, "a 2xx ends Mailchimp's retries");
        assert.deepEqual(
          outcomes.filter((o) => o !== "check"),
          ["queued", retrySignatures === "fresh" ? "queued" : "ignored_stale"],
        );
      } finally {
        await server.close();
        await store.close();
        await sim.close();
      }
    });
  }
});

Deno.test("webhooks register --force re-creates an unsigned webhook, signed, with a new secret", async () => {
  const clock = new FakeClock(NOW, { autoAdvance: true });
  const sim = await MailchimpSimulator.start({ clock, webhookSigning: "off" });
  sim.addList("a6b5da1054");
  const store = new MemoryStore({ clock });
  const connection: ConnectionConfig = {
    id: "uk-shop",
    listId: "a6b5da1054",
    mailchimp: { apiKey: sim.apiKey, baseUrl: sim.url, keyName: "MAILCHIMP_KEY_UK" },
    ometria: { apiKey: "k", baseUrl: "http://127.0.0.1:9", endpoint: "push" },
    thresholdSeconds: 3600,
    webhookSecret: "url-secret-0123456789",
  };
  const server = serveWebhooks({
    port: 0,
    handler: webhookReceiver({
      routes: webhookRoutes([connection]),
      inboxFor: (id) => store.inbox(id),
      clock,
      logger: quietLogger(),
    }),
  });
  try {
    let out = "";
    const register = (force: boolean) =>
      runWebhooksCommand({
        connections: [connection],
        webhooksAction: "register",
        publicUrl: server.url,
        alertWebhookUrl: undefined,
        mailchimpTimeoutSeconds: 30,
        force,
      }, { clock, logger: quietLogger(), fetch, write: (s) => out += s });
    assert.equal(await register(false), 0);
    assert.match(out, /not signed/);
    assert.doesNotMatch(out, /signing secret \(shown once/);
    const first = sim.webhooks.list("a6b5da1054")[0]!;
    sim.webhooks.setOptions({ signing: "on" });
    out = "";
    assert.equal(await register(true), 0);
    const [now] = sim.webhooks.list("a6b5da1054");
    assert.notEqual(now?.id, first.id);
    assert.equal(now?.signing_enabled, true);
    // A file connection without the key is told which variable to create and to name it.
    assert.match(out, /deleted, to be created again/);
    assert.match(
      out,
      /set MAILCHIMP_WEBHOOK_SIGNING_SECRET_UK_SHOP to it and add "webhook_signing_secret_env": "MAILCHIMP_WEBHOOK_SIGNING_SECRET_UK_SHOP"/,
    );
    out = "";
    assert.equal(await register(false), 0);
    assert.match(out, /already registered/);
    assert.match(out, /signed, but this connection names no variable for its signing secret/);
  } finally {
    await server.close();
    await store.close();
    await sim.close();
  }
});
