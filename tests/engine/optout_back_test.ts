/**
 * Ometria → Mailchimp unsubscribes (`optout_back`) through the sync service's ticks, against
 * both simulators over real HTTP on one fake clock: an unsubscribe made in Ometria reaches
 * Mailchimp within one tick, once, whatever crashes or late listings happen; a contact this
 * connection never pushed is left alone; nobody is ever resubscribed.
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import type { SyncService } from "../../lib/app/sync_service.ts";
import type { ConnectionConfig } from "../../lib/config/config.ts";
import { assertInSync, startWorld, type World } from "../_helpers/world.ts";

const LIST = "optout0001";
const MINUTE = 60_000;

async function setUp(
  overrides: Partial<ConnectionConfig> = { optoutBack: true },
): Promise<{ w: World; service: SyncService; connection: ConnectionConfig }> {
  const w = await startWorld();
  w.mailchimp.addList(LIST, { members: 30, seed: 5, lastChangedTo: w.clock.now() - 10 * MINUTE });
  const connection = w.connection(LIST, overrides);
  const service = w.service([connection], { reconcileEveryHours: 0 });
  await service.tick();
  return { w, service, connection };
}

/** Runs `body` in a world set up as {@linkcode setUp} does, and closes it after. */
async function withWorld(
  body: (s: { w: World; service: SyncService }) => Promise<void>,
  overrides?: Partial<ConnectionConfig>,
): Promise<void> {
  const s = await setUp(overrides);
  try {
    await body(s);
  } finally {
    await s.service.close();
    await s.w.close();
  }
}

/** The next tick, a minute later (what the daemon does). */
async function nextTick(w: World, service: SyncService, signal?: AbortSignal) {
  await w.clock.tick(MINUTE);
  return await service.tick(signal ? { signal } : {});
}

function statusOf(w: World, id: string) {
  return w.mailchimp.truth(LIST).find((m) => m.id === id)?.status;
}

Deno.test("optout_back: an unsubscribe made in Ometria sets the Mailchimp member to unsubscribed in the next tick, once", async () => {
  await withWorld(async ({ w, service }) => {
    const member = w.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;
    w.ometria.privacy.unsubscribe(member.email_address);
    // The same person's SMS stop word is not an email's unsubscribe.
    w.ometria.privacy.unsubscribe(member.email_address, { type: "stopword_unsubscribe_TF" });
    w.mailchimp.resetStats();
    await nextTick(w, service);
    assert.equal(statusOf(w, member.id), "unsubscribed");
    assert.equal(w.mailchimp.stats.memberWrites, 1);
    const contact = w.ometria.contacts(collectionFor(LIST)).get(member.id);
    assert.equal(contact?.marketing_optin, "EXPLICITLY_OPTEDOUT");
    assertInSync(w, LIST);
    const state = await w.store.get(LIST);
    assert.equal(state?.optout_back?.applied, 1);
    assert.deepEqual(state?.optout_back?.recent.map((d) => [d.id, d.outcome]), [
      [member.id, "applied"],
    ]);
    // Later ticks read the lookback again and do nothing more.
    const pushes = w.ometria.stats.pushRequests;
    for (let i = 0; i < 3; i++) await nextTick(w, service);
    assert.equal(w.mailchimp.stats.memberWrites, 1);
    assert.equal(w.ometria.stats.pushRequests, pushes);
    assert.equal((await w.store.get(LIST))?.optout_back?.applied, 1);
  });
});

Deno.test("optout_back: a contact this connection never pushed is counted and left alone; off by default", async (t) => {
  await t.step("not ours", async () => {
    await withWorld(async ({ w, service }) => {
      w.ometria.privacy.unsubscribe("someone.else@example.com");
      await nextTick(w, service);
      assert.equal(w.mailchimp.stats.memberWrites, 0);
      assert.equal((await w.store.get(LIST))?.optout_back?.not_ours, 1);
      await nextTick(w, service);
      assert.equal((await w.store.get(LIST))?.optout_back?.not_ours, 1, "counted once");
    });
  });
  await t.step("without optout_back", async () => {
    await withWorld(async ({ w, service }) => {
      const member = w.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;
      w.ometria.privacy.unsubscribe(member.email_address);
      await nextTick(w, service);
      assert.equal(statusOf(w, member.id), "subscribed");
      assert.equal(w.ometria.privacy.stats.unsubscribesRequests, 0, "Ometria is not asked");
      assert.equal((await w.store.get(LIST))?.optout_back, null);
    }, {});
  });
});

Deno.test("optout_back: a poll stopped after its first PATCH resumes in another process without PATCHing it again", async () => {
  const { w, service } = await setUp();
  try {
    const [a, b] = w.mailchimp.truth(LIST).filter((m) => m.status === "subscribed");
    w.ometria.privacy.unsubscribe(a!.email_address, { atMs: w.clock.now() - 2_000 });
    w.ometria.privacy.unsubscribe(b!.email_address, { atMs: w.clock.now() - 1_000 });
    // The stop comes as soon as the first PATCH is answered (a crash could come there).
    const stop = new AbortController();
    const watching = w.service([w.connection(LIST, { optoutBack: true })], {
      reconcileEveryHours: 0,
      fetch: async (input, init) => {
        const answer = await fetch(input, init);
        if (init?.method !== "PATCH") return answer;
        const body = await answer.text();
        stop.abort();
        return new Response(body, answer);
      },
    });
    await service.close();
    await nextTick(w, watching, stop.signal);
    await watching.close();
    assert.equal(w.mailchimp.stats.memberWrites, 1);
    const state = await w.store.get(LIST);
    assert.deepEqual(state?.optout_back?.recent.map((d) => d.id), [a!.id]);
    const again = w.service([w.connection(LIST, { optoutBack: true })], { reconcileEveryHours: 0 });
    await nextTick(w, again);
    await again.close();
    assert.equal(w.mailchimp.stats.memberWrites, 2, "b once, a not again");
    assert.equal(statusOf(w, a!.id), "unsubscribed");
    assert.equal(statusOf(w, b!.id), "unsubscribed");
  } finally {
    await w.close();
  }
});

Deno.test("optout_back: an unsubscribe Ometria lists late is still acted on, within the lookback", async () => {
  await withWorld(async ({ w, service }) => {
    w.ometria.privacy.setOptions({ unsubscribesDelayMs: 3 * MINUTE });
    const member = w.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;
    w.ometria.privacy.unsubscribe(member.email_address);
    await nextTick(w, service);
    assert.equal(statusOf(w, member.id), "subscribed", "not listed yet");
    const watermark = (await w.store.get(LIST))?.optout_back?.watermark;
    assert.ok(Date.parse(watermark!) > w.clock.now() - 2 * MINUTE, "the watermark moved past it");
    for (let i = 0; i < 3; i++) await nextTick(w, service);
    assert.equal(statusOf(w, member.id), "unsubscribed");
    assert.equal(w.mailchimp.stats.memberWrites, 1);
  });
});

Deno.test("optout_back: a listing that names this connection's contact is read by its id", async () => {
  await withWorld(async ({ w, service }) => {
    w.ometria.privacy.setOptions({ unsubscribesNameListing: true });
    const member = w.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;
    w.ometria.privacy.unsubscribe(member.email_address);
    await nextTick(w, service);
    assert.equal(statusOf(w, member.id), "unsubscribed");
  });
});

Deno.test("optout_back never resubscribes: a member who subscribes again in Mailchimp stays subscribed", async () => {
  await withWorld(async ({ w, service }) => {
    const member = w.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;
    w.ometria.privacy.unsubscribe(member.email_address);
    await nextTick(w, service);
    assert.equal(statusOf(w, member.id), "unsubscribed");
    await w.clock.tick(MINUTE);
    w.mailchimp.upsertMember(LIST, {
      email: member.email_address,
      status: "subscribed",
      source: "user",
    });
    for (let i = 0; i < 15; i++) await nextTick(w, service);
    assert.equal(statusOf(w, member.id), "subscribed");
    assert.equal(w.mailchimp.stats.memberWrites, 1);
    // Ometria still holds its own opt-out: opt-outs win there without @force_optin.
    assert.equal(w.ometria.privacy.subscription(member.email_address), "EXPLICITLY_OPTEDOUT");
  });
});
