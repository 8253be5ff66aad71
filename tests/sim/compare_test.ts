import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { compareCopies, type TruthMember } from "../../lib/sim/compare.ts";
import { MailchimpSimulator, type SimMember } from "../../lib/sim/mailchimp_sim.ts";
import { OmetriaSimulator } from "../../lib/sim/ometria_sim.ts";

const LIST = "list1";
const COLLECTION = `mailchimp-${LIST}`;

/** The contact a correct sync writes for a member, written out by hand for the test. */
function contact(m: SimMember): Record<string, unknown> {
  const optin = m.status === "subscribed"
    ? "EXPLICITLY_OPTEDIN"
    : m.status === "unsubscribed" || m.status === "cleaned"
    ? "EXPLICITLY_OPTEDOUT"
    : "NOT_SPECIFIED";
  return {
    "@type": "contact",
    "@collection": COLLECTION,
    id: m.id,
    email: m.email_address,
    firstname: m.merge_fields.FNAME,
    lastname: m.merge_fields.LNAME,
    marketing_optin: optin,
    ...(m.status === "subscribed" && m.timestamp_opt
      ? { timestamp_subscribed: m.timestamp_opt }
      : {}),
  };
}

async function push(ometria: OmetriaSimulator, records: Record<string, unknown>[]) {
  for (let i = 0; i < records.length; i += 100) {
    const res = await fetch(`${ometria.url}/v2/push`, {
      method: "POST",
      headers: { "X-Ometria-Auth": ometria.apiKey, "Content-Type": "application/json" },
      body: JSON.stringify(records.slice(i, i + 100)),
    });
    assert.equal(res.status, 202);
    await res.body?.cancel();
  }
}

function optOut(id: string): Record<string, unknown> {
  return {
    "@type": "contact",
    "@collection": COLLECTION,
    "@merge": true,
    id,
    marketing_optin: "EXPLICITLY_OPTEDOUT",
  };
}

Deno.test("compareCopies sorts orphans into opted out and still live, and sets malformed members apart", async () => {
  const mailchimp = await MailchimpSimulator.start({ clock: new FakeClock() });
  const ometria = await OmetriaSimulator.start({ maxRequestsPerSecond: 0 });
  try {
    mailchimp.addList(LIST, { members: 250, seed: 3 });
    await push(ometria, mailchimp.truth(LIST).map(contact));
    const check = () => compareCopies(mailchimp.truth(LIST), ometria.contacts(COLLECTION), LIST);
    const clean = check();
    assert.deepEqual(
      [clean.expected, clean.missing, clean.stale, clean.extra, clean.malformed],
      [250, [], [], [], []],
    );

    // Subscribed members, so that their contacts start opted in.
    const [deleted, rekeyed, silent, corrupt, noisy] = mailchimp.truth(LIST)
      .filter((m) => m.status === "subscribed").slice(0, 5);
    const touched = new Set([deleted, rekeyed, silent, corrupt].map((m) => m!.id));
    const changedIds = mailchimp.changeMembers(LIST, 3, 9).map((m) => m.id)
      .filter((id) => !touched.has(id));
    mailchimp.deleteMember(LIST, deleted!.email_address);
    const moved = mailchimp.changeEmail(LIST, rekeyed!.email_address, "moved@example.com");
    mailchimp.deleteMember(LIST, silent!.email_address);
    mailchimp.corruptMember(LIST, corrupt!.email_address, { status: "weird" });
    mailchimp.corruptMember(LIST, noisy!.email_address, { surprise: 1, contact_id: null });
    const changed = mailchimp.truth(LIST).filter((m) => changedIds.includes(m.id));
    assert.equal(changed.length, changedIds.length);

    const before = check();
    assert.deepEqual(before.missing, [moved.id]);
    // A change the copy does not show (pending to transactional, say) is not stale.
    const original = new Map(ometria.contacts(COLLECTION));
    const visible = changed.filter((m) =>
      JSON.stringify(contact(m)) !== JSON.stringify(original.get(m.id))
    );
    assert.deepEqual(new Set(before.stale), new Set(visible.map((m) => m.id)));
    assert.deepEqual(new Set(before.extra), new Set([deleted!.id, rekeyed!.id, silent!.id]));
    assert.deepEqual(before.extraOptedOut, []);
    assert.deepEqual(before.malformed, [corrupt!.id], "only fields the sync reads count");

    // A sync that handles two of the three orphans and copies the rest.
    await push(ometria, [
      optOut(deleted!.id),
      optOut(rekeyed!.id),
      contact(moved),
      ...changed.map(contact),
    ]);
    const after = check();
    assert.deepEqual([after.missing, after.stale], [[], []]);
    assert.deepEqual(new Set(after.extraOptedOut), new Set([deleted!.id, rekeyed!.id]));
    assert.deepEqual(after.extraNotOptedOut, [silent!.id], "a silent divergence");
    assert.equal(ometria.contacts(COLLECTION).get(deleted!.id)?.email, deleted!.email_address);
    await push(ometria, [optOut(silent!.id)]);
    const handled = check();
    assert.deepEqual(
      [handled.missing.length, handled.stale.length, handled.extraNotOptedOut.length],
      [0, 0, 0],
    );
    assert.equal(handled.extra.length, 3);
    assert.deepEqual(handled.malformed, [corrupt!.id]);
  } finally {
    await mailchimp.close();
    await ometria.close();
  }
});

Deno.test("compareCopies on legacy records counts deleted or stopped statuses as handled", () => {
  const member: TruthMember = {
    id: "a",
    email_address: "a@example.com",
    status: "subscribed",
    merge_fields: { FNAME: "A", LNAME: "" },
    last_changed: "2026-01-01T00:00:00+00:00",
    timestamp_opt: "",
  };
  const legacy = (id: string, status: string) => ({
    id,
    firstname: "",
    lastname: "",
    email: `${id}@example.com`,
    status,
  });
  const records = new Map([
    ["a", { ...legacy("a", "subscribed"), firstname: "A" }],
    ["d", legacy("d", "deleted")],
    ["u", legacy("u", "unsubscribed")],
    ["s", legacy("s", "subscribed")],
    ["p", legacy("p", "pending")],
  ]);
  const c = compareCopies([member], records, "l", "record");
  assert.deepEqual([c.missing, c.stale, c.malformed], [[], [], []]);
  assert.deepEqual(c.extraOptedOut, ["d", "u"]);
  assert.deepEqual(c.extraNotOptedOut, ["s", "p"]);
  const broken = compareCopies(
    [{ ...member, malformed: { email_address: undefined } }],
    new Map(),
    "l",
  );
  assert.deepEqual([broken.missing, broken.malformed], [[], ["a"]]);
});
