/**
 * `@force_optin`, never sent unless a connection sets `force_optin_on_resubscribe`, and then
 * only for a member who opted in again in Mailchimp after this program had sent them: in
 * Ometria, opt-outs win without it (the simulator plays that rule), so such a member stays
 * opted out there unless it is sent.
 */
import assert from "node:assert/strict";
import type { ConnectionConfig } from "../../lib/config/config.ts";
import { startWorld } from "../_helpers/world.ts";

const LIST = "forceopt01";
const MINUTE = 60_000;

async function resubscribeFlow(overrides: Partial<ConnectionConfig>) {
  const w = await startWorld();
  w.mailchimp.addList(LIST, { members: 12, seed: 8, lastChangedTo: w.clock.now() - 10 * MINUTE });
  const sent: Record<string, unknown>[] = [];
  const service = w.service([w.connection(LIST, { optoutBack: true, ...overrides })], {
    reconcileEveryHours: 0,
    fetch: async (input, init) => {
      const request = new Request(input, init);
      // Read as Ometria reads it: the body is bytes (lib/ometria/push_body.ts).
      if (request.url.endsWith("/v2/push")) sent.push(...await request.clone().json());
      return fetch(request);
    },
  });
  // Forced: every tick runs the list, as one whose changes came due would.
  const tick = async () => {
    await w.clock.tick(MINUTE);
    await service.tick({ force: true });
  };
  await service.tick();
  const member = w.mailchimp.truth(LIST).find((m) => m.status === "subscribed")!;
  w.ometria.privacy.unsubscribe(member.email_address);
  await tick();
  assert.equal(w.ometria.privacy.subscription(member.email_address), "EXPLICITLY_OPTEDOUT");
  await tick();
  // The person signs up again through Mailchimp's form.
  w.mailchimp.upsertMember(LIST, {
    email: member.email_address,
    status: "subscribed",
    source: "user",
  });
  sent.length = 0;
  for (let i = 0; i < 3; i++) await tick();
  // Read again at the version sent (here by a reconciliation), it maps to the same record.
  const [reconciled] = await service.reconcile([LIST]);
  const resubscribed = [...sent];
  // A change of name later is an ordinary update; a brand-new member an ordinary opt-in.
  w.mailchimp.upsertMember(LIST, { email: member.email_address, FNAME: "Renamed" });
  w.mailchimp.upsertMember(LIST, { email: "new.member@example.com", source: "user" });
  sent.length = 0;
  await tick();
  const later = [...sent];
  await service.close();
  const subscription = w.ometria.privacy.subscription(member.email_address);
  await w.close();
  return { member, resubscribed, later, reconciled, subscription };
}

Deno.test("force_optin_on_resubscribe: a member who opted in again in Mailchimp is sent once with @force_optin, and Ometria opts them in", async () => {
  const r = await resubscribeFlow({ forceOptinOnResubscribe: true });
  assert.deepEqual(r.resubscribed.map((c) => [c.id, c.marketing_optin, c["@force_optin"]]), [
    [r.member.id, "EXPLICITLY_OPTEDIN", true],
  ]);
  assert.equal(r.subscription, "EXPLICITLY_OPTEDIN");
  assert.ok(r.later.every((c) => !("@force_optin" in c)), "not for a rename nor a new member");
  assert.equal(r.later.length, 2);
  // The same version maps to the same record whoever maps it: nothing is stale.
  assert.deepEqual([r.reconciled?.summary?.stale, r.reconciled?.summary?.missing], [0, 0]);
});

Deno.test("without force_optin_on_resubscribe, @force_optin is never sent and Ometria keeps its opt-out", async () => {
  const r = await resubscribeFlow({});
  assert.deepEqual(r.resubscribed.map((c) => [c.id, c.marketing_optin, "@force_optin" in c]), [
    [r.member.id, "EXPLICITLY_OPTEDIN", false],
  ]);
  assert.equal(r.subscription, "EXPLICITLY_OPTEDOUT");
  assert.ok(r.later.every((c) => !("@force_optin" in c)));
});
