import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { OmetriaSimulator, type OmetriaSimulatorOptions } from "../../lib/sim/ometria_sim.ts";
import type { RecordPolicy } from "../../lib/sim/ometria_records.ts";

interface _Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

async function _send(
  sim: OmetriaSimulator,
  path: string,
  body: unknown,
  headers: Record<string, string>,
  method = "POST",
): Promise<_Answer> {
  const res = await fetch(sim.url + path, {
    method,
    headers: { "Content-Type": "application/json", ...headers },
    ...(method === "GET" ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

function _push(sim: OmetriaSimulator, body: unknown, key = sim.apiKey): Promise<_Answer> {
  return _send(sim, "/v2/push", body, { "X-Ometria-Auth": key });
}

function _legacy(sim: OmetriaSimulator, body: unknown, key = sim.apiKey): Promise<_Answer> {
  return _send(sim, "/record", body, { Authorization: key });
}

function _errors(sim: OmetriaSimulator): Promise<_Answer> {
  return _send(sim, "/v2/push/_errors", undefined, { "X-Ometria-Auth": sim.apiKey }, "GET");
}

function _contact(id: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    "@type": "contact",
    "@collection": "mailchimp-list1",
    id,
    email: `${id}@example.com`,
    firstname: "Ada",
    lastname: "Lovelace",
    marketing_optin: "EXPLICITLY_OPTEDIN",
    ...fields,
  };
}

async function _withSim(
  options: OmetriaSimulatorOptions,
  fn: (sim: OmetriaSimulator) => Promise<void>,
): Promise<void> {
  const sim = await OmetriaSimulator.start({ maxRequestsPerSecond: 0, ...options });
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

Deno.test("OmetriaSimulator answers 403 (as documented), or 401, for a missing or wrong key on every endpoint", async () => {
  await _withSim({ apiKey: "right" }, async (sim) => {
    const wrong = await _push(sim, [_contact("a")], "wrong");
    assert.equal(wrong.status, 403);
    assert.deepEqual(wrong.body, {
      status: "error",
      message: "API key is not authorised to access this resource",
    });
    const missing = await _send(sim, "/v2/push", [_contact("a")], {});
    assert.equal(missing.status, 403);
    const legacy = await _legacy(sim, [], "Bearer right");
    assert.equal(legacy.status, 403);
    const errors = await _send(sim, "/v2/push/_errors", undefined, {}, "GET");
    assert.equal(errors.status, 403);
    sim.setOptions({ badKeyStatus: 401 });
    const other = await _push(sim, [_contact("a")], "wrong");
    assert.deepEqual([other.status, other.body], [401, {
      status: "error",
      message: "Unauthorised",
    }]);
    assert.equal(sim.contacts().size, 0);
    assert.equal((await _push(sim, [_contact("a")], "right")).status, 202);
    assert.equal(sim.apiKey, "right");
  });
});

Deno.test("OmetriaSimulator answers 400 when the body is not a JSON array", async () => {
  await _withSim({}, async (sim) => {
    const object = await _push(sim, _contact("a"));
    assert.equal(object.status, 400);
    assert.match((object.body as { message: string }).message, /JSON array/);
    const invalid = await _push(sim, "[{not json");
    assert.equal(invalid.status, 400);
    assert.match((invalid.body as { message: string }).message, /not valid JSON/);
    const legacy = await _legacy(sim, { id: "a" });
    assert.equal(legacy.status, 400);
    assert.equal(sim.contacts().size, 0);
  });
});

Deno.test("OmetriaSimulator answers 413 for more than 100 records and stores none", async () => {
  await _withSim({}, async (sim) => {
    const records = Array.from({ length: 101 }, (_, i) => _contact(`m${i}`));
    const push = await _push(sim, records);
    assert.equal(push.status, 413);
    assert.deepEqual(push.body, { message: "Request Entity Too Large" });
    const legacy = await _legacy(
      sim,
      Array.from({ length: 101 }, (_, i) => ({
        id: `m${i}`,
        firstname: "",
        lastname: "",
        email: "x@example.com",
        status: "subscribed",
      })),
    );
    assert.equal(legacy.status, 413);
    assert.equal(sim.contacts().size, 0);
    assert.equal(sim.legacyRecords().size, 0);
    assert.equal(sim.stats.maxBatch, 101);
    assert.equal(sim.stats.status413, 2);
    const hundred = await _push(sim, records.slice(0, 100));
    assert.deepEqual(hundred.body && (hundred.body as { accepted: number }).accepted, 100);
  });
});

Deno.test("OmetriaSimulator answers 400 for records of mixed @type", async () => {
  await _withSim({}, async (sim) => {
    const res = await _push(sim, [_contact("a"), { "@type": "order", id: "o1" }]);
    assert.equal(res.status, 400);
    assert.match((res.body as { message: string }).message, /same @type/);
    assert.equal(sim.contacts().size, 0);
  });
});

Deno.test("OmetriaSimulator rejects a record over 60 KB as too large and keeps the rest", async () => {
  await _withSim({}, async (sim) => {
    const big = _contact("big", { properties: { note: "x".repeat(61440) } });
    const res = await _push(sim, [big, _contact("small")]);
    assert.equal(res.status, 202);
    const body = res.body as { accepted: number; rejected: number };
    assert.equal(body.accepted, 1);
    assert.equal(body.rejected, 1);
    assert.deepEqual([...sim.contacts().keys()], ["small"]);
    const errors = await _errors(sim);
    assert.deepEqual(errors.body, [{ error_message: "Record is too large", error_path: "root" }]);
  });
});

Deno.test("OmetriaSimulator rejects invalid records and lists them at /v2/push/_errors", async () => {
  await _withSim({
    reject: (record) => record.email === "blocked@example.com" ? "Email is blocked" : undefined,
  }, async (sim) => {
    const res = await _push(sim, [
      _contact("ok"),
      _contact("bad-email", { email: 42 }),
      _contact("bad-optin", { marketing_optin: "YES" }),
      _contact(""),
      { "@type": "contact", id: "no-collection" },
      "not an object",
      _contact("blocked", { email: "blocked@example.com" }),
      _contact("ok2", { email: undefined }),
    ]);
    assert.equal(res.status, 202);
    const body = res.body as Record<string, unknown>;
    assert.equal(body.status, "OK");
    assert.equal(body.accepted, 2);
    assert.equal(body.rejected, 6);
    assert.equal(typeof body.request_id, "string");
    assert.equal(body.request_id, res.headers.get("X-Request-Id"));
    assert.deepEqual([...sim.contacts().keys()].sort(), ["ok", "ok2"]);
    // The documented shape: {"error_message": "not a valid value", "error_path": "root >
    // lastname"} (https://docs.ometria.com/docs/list-errors), no index into the request.
    const errors = (await _errors(sim)).body as { error_message: string; error_path: string }[];
    assert.deepEqual(errors.map((e) => e.error_path), [
      "root > email",
      "root > marketing_optin",
      "root > id",
      "root > @collection",
      "root",
      "root",
    ]);
    assert.equal(errors[0]?.error_message, "not a valid value");
    assert.equal(errors[5]?.error_message, "Email is blocked");
    assert.deepEqual(Object.keys(errors[0]!).sort(), ["error_message", "error_path"]);
    assert.deepEqual(
      sim.errors().map((e) => ({ error_message: e.error_message, error_path: e.error_path })),
      errors,
    );
    assert.deepEqual(sim.errors().map((e) => e.record_id), [
      "bad-email",
      "bad-optin",
      "",
      "no-collection",
      null,
      "blocked",
    ]);
    const stats = sim.stats;
    assert.equal(stats.recordsReceived, 8);
    assert.equal(stats.recordsAccepted, 2);
    assert.equal(stats.recordsRejected, 6);

    sim.setOptions({ reject: undefined });
    const again = await _push(sim, [_contact("blocked", { email: "blocked@example.com" })]);
    assert.equal((again.body as { accepted: number }).accepted, 1);
  });
});

Deno.test("OmetriaSimulator keeps only the last 100 errors", async () => {
  await _withSim({}, async (sim) => {
    const bad = Array.from({ length: 100 }, (_, i) => _contact(`b${i}`, { email: 1 }));
    await _push(sim, bad);
    await _push(sim, bad.slice(0, 5));
    assert.equal(((await _errors(sim)).body as unknown[]).length, 100);
    const kept = sim.errors();
    assert.equal(kept[0]?.record_id, "b5");
    assert.equal(kept[99]?.record_id, "b4");
  });
});

Deno.test("OmetriaSimulator upserts: a partial record merges, as documented, or replaces (omittedFields)", async () => {
  await _withSim({}, async (sim) => {
    // "send a partial record and only the supplied fields will be merged" (Push API page).
    await _push(sim, [_contact("a", { firstname: "First", properties: { x: 1 } })]);
    await _push(sim, [{ "@type": "contact", "@collection": "mailchimp-list1", id: "a" }]);
    assert.equal(sim.contacts().get("a")?.firstname, "First");
    assert.deepEqual(sim.contacts().get("a")?.properties, { x: 1 });
    // The Merge article's other reading: without @merge the record replaces the stored one.
    sim.setOptions({ records: { omittedFields: "replace" } });
    await _push(sim, [{ "@type": "contact", "@collection": "mailchimp-list1", id: "a" }]);
    assert.deepEqual(sim.contacts().get("a"), {
      "@type": "contact",
      "@collection": "mailchimp-list1",
      id: "a",
    });
    await _push(sim, [_contact("b", { firstname: "Old", lastname: "Name" })]);
    await _push(sim, [{
      "@type": "contact",
      "@collection": "mailchimp-list1",
      id: "b",
      "@merge": true,
      firstname: "New",
    }]);
    const b = sim.contacts().get("b");
    assert.equal(b?.firstname, "New");
    assert.equal(b?.lastname, "Name");
    assert.equal(b?.email, "b@example.com");
    // The same batch twice (a retried request) still stores one record per id.
    const batch = [_contact("c"), _contact("d")];
    await _push(sim, batch);
    await _push(sim, batch);
    assert.equal(sim.contacts().size, 4);
  });
});

Deno.test("OmetriaSimulator keeps collections apart", async () => {
  await _withSim({}, async (sim) => {
    await _push(sim, [_contact("same", { "@collection": "mailchimp-A", firstname: "A" })]);
    await _push(sim, [_contact("same", { "@collection": "mailchimp-B", firstname: "B" })]);
    assert.equal(sim.contacts("mailchimp-A").get("same")?.firstname, "A");
    assert.equal(sim.contacts("mailchimp-B").get("same")?.firstname, "B");
    assert.equal(sim.contacts("mailchimp-C").size, 0);
    assert.equal(sim.contacts().size, 1);
  });
});

Deno.test("OmetriaSimulator /record answers 201 and stores the latest record per id", async () => {
  await _withSim({}, async (sim) => {
    const record = {
      id: "m1",
      firstname: "Ada",
      lastname: "",
      email: "ada@example.com",
      status: "subscribed",
    };
    const first = await _legacy(sim, [record]);
    assert.equal(first.status, 201);
    assert.deepEqual(first.body, { status: "Ok", response: 1 });
    assert.ok(first.headers.get("X-Request-Id"));
    await _legacy(sim, [{ ...record, status: "unsubscribed" }]);
    assert.deepEqual(sim.legacyRecords().get("m1"), { ...record, status: "unsubscribed" });
    const bad = await _legacy(sim, [{ ...record, id: "m2" }, { id: "m3", email: "x" }]);
    assert.equal(bad.status, 400);
    assert.equal(sim.legacyRecords().size, 1);
    const stats = sim.stats;
    assert.equal(stats.recordRequests, 3);
    assert.equal(stats.recordsReceived, 2);
  });
});

Deno.test("OmetriaSimulator answers 429 beyond the requests allowed in one clock second", async () => {
  const clock = new FakeClock();
  await _withSim({ clock, maxRequestsPerSecond: 2 }, async (sim) => {
    assert.equal((await _push(sim, [_contact("a")])).status, 202);
    assert.equal((await _legacy(sim, [])).status, 201);
    const limited = await _push(sim, [_contact("b")]);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get("Retry-After"), "1");
    assert.deepEqual(limited.body, { status: "error", message: "Rate limit exceeded" });
    assert.equal(sim.contacts().has("b"), false);
    await clock.tick(999);
    assert.equal((await _push(sim, [_contact("b")])).status, 429);
    await clock.tick(1);
    assert.equal((await _push(sim, [_contact("b")])).status, 202);
    assert.equal(sim.contacts().has("b"), true);
    assert.equal(sim.stats.maxRequestsInOneSecond, 2);
    assert.equal(sim.stats.status429, 2);

    sim.setOptions({ maxRequestsPerSecond: 0 });
    for (let i = 0; i < 5; i++) assert.equal((await _legacy(sim, [])).status, 201);
    assert.equal(sim.stats.maxRequestsInOneSecond, 6);
    sim.resetStats();
    assert.equal(sim.stats.requests, 0);
    assert.equal(sim.stats.maxRequestsInOneSecond, 0);
  });
});

Deno.test("OmetriaSimulator reports its queue and answers 429 when it is full", async () => {
  const clock = new FakeClock();
  await _withSim({ clock, queueLimit: 150, ingestPerSecond: 100 }, async (sim) => {
    const batch = (prefix: string) => Array.from({ length: 100 }, (_, i) => _contact(prefix + i));
    const first = await _push(sim, batch("a"));
    assert.equal(first.status, 202);
    assert.equal(first.headers.get("X-QueueSize-Limit"), "150");
    assert.equal(first.headers.get("X-QueueSize-Remaining"), "50");
    const full = await _push(sim, batch("b"));
    assert.equal(full.status, 429);
    assert.equal(full.headers.get("X-QueueSize-Limit"), "150");
    assert.equal(full.headers.get("X-QueueSize-Remaining"), "50");
    assert.equal(full.headers.get("Retry-After"), "1");
    assert.equal(sim.contacts().size, 100);
    await clock.tick(500);
    const half = await _push(sim, batch("c").slice(0, 10));
    assert.equal(half.status, 202);
    assert.equal(half.headers.get("X-QueueSize-Remaining"), "90");
    await clock.tick(10_000);
    const drained = await _push(sim, batch("b"));
    assert.equal(drained.status, 202);
    assert.equal(drained.headers.get("X-QueueSize-Remaining"), "50");
    assert.equal(sim.contacts().size, 210);
    assert.equal(sim.stats.status429, 1);
  });
});

Deno.test("OmetriaSimulator answers injected 500 and 503 faults without doing the work", async () => {
  await _withSim({ faults: { retryAfterSeconds: 7 } }, async (sim) => {
    sim.faults.queue(500, 503, 429);
    const error = await _push(sim, [_contact("a")]);
    assert.equal(error.status, 500);
    assert.equal(error.headers.get("Retry-After"), null);
    assert.equal((error.body as { status: string }).status, "error");
    assert.ok(error.headers.get("X-Request-Id"));
    const unavailable = await _push(sim, [_contact("a")]);
    assert.equal(unavailable.status, 503);
    assert.equal(unavailable.headers.get("Retry-After"), "7");
    const throttled = await _push(sim, [_contact("a")]);
    assert.equal(throttled.status, 429);
    assert.equal(throttled.headers.get("Retry-After"), "7");
    assert.equal(sim.contacts().size, 0);
    assert.equal((await _push(sim, [_contact("a")])).status, 202);
    assert.equal(sim.faults.injected.get(503), 1);
    assert.equal(sim.stats.status429, 1);
  });
});

Deno.test("OmetriaSimulator stores a dropped push although the client's body read fails", async () => {
  await _withSim({}, async (sim) => {
    sim.faults.queue("drop");
    const res = await fetch(sim.url + "/v2/push", {
      method: "POST",
      headers: { "X-Ometria-Auth": sim.apiKey },
      body: JSON.stringify([_contact("landed")]),
    });
    assert.ok(res.headers.get("X-Request-Id"));
    await assert.rejects(() => res.json());
    assert.equal(sim.contacts().get("landed")?.email, "landed@example.com");
  });
});

Deno.test("OmetriaSimulator delays a slow fault on its clock and close() never waits", async () => {
  const clock = new FakeClock();
  await _withSim({ clock, faults: { slowMs: 3000 } }, async (sim) => {
    sim.faults.queue("slow");
    const pending = _push(sim, [_contact("slow")]);
    while (clock.pendingTimers === 0) await new Promise((r) => setTimeout(r, 1));
    assert.equal(sim.contacts().size, 0);
    await clock.tick(3000);
    assert.equal((await pending).status, 202);
    assert.equal(sim.contacts().has("slow"), true);

    sim.setOptions({ latencyMs: 1000 });
    const stuck = _push(sim, [_contact("stuck")]);
    while (clock.pendingTimers === 0) await new Promise((r) => setTimeout(r, 1));
    await sim.close();
    assert.equal((await stuck).status, 503);
    assert.equal(sim.contacts().has("stuck"), false);
  });
});

Deno.test("OmetriaSimulator answers 404 for unknown paths, with a request id", async () => {
  await _withSim({}, async (sim) => {
    const res = await _send(sim, "/v1/other", [], {});
    assert.equal(res.status, 404);
    assert.ok(res.headers.get("X-Request-Id"));
    const wrongMethod = await _send(sim, "/v2/push", undefined, {}, "GET");
    assert.equal(wrongMethod.status, 405);
  });
});

Deno.test("OmetriaSimulator start() refuses a negative limit", async () => {
  await assert.rejects(() => OmetriaSimulator.start({ queueLimit: -1 }), RangeError);
});

Deno.test("OmetriaSimulator maxBatchRecords lowers the batch limit while serving", async () => {
  await _withSim({ maxBatchRecords: 10 }, async (sim) => {
    const records = Array.from({ length: 11 }, (_, i) => _contact(`m${i}`));
    const tooLarge = await _push(sim, records);
    assert.equal(tooLarge.status, 413);
    assert.deepEqual(tooLarge.body, { message: "Request Entity Too Large" });
    assert.ok(tooLarge.headers.get("X-Request-Id"));
    assert.equal(sim.contacts().size, 0);
    assert.equal(sim.errors().length, 0, "a refused request is not a validation error");
    assert.equal((await _push(sim, records.slice(0, 10))).status, 202);
    sim.setOptions({ maxBatchRecords: 3 });
    assert.equal((await _push(sim, records.slice(0, 4))).status, 413);
    const legacy = await _legacy(
      sim,
      records.slice(0, 4).map((r) => ({
        id: r.id,
        firstname: "",
        lastname: "",
        email: "x@example.com",
        status: "subscribed",
      })),
    );
    assert.equal(legacy.status, 413);
    assert.equal(sim.legacyRecords().size, 0);
    sim.setOptions({ maxBatchRecords: 100 });
    assert.equal((await _push(sim, records)).status, 202);
    assert.equal(sim.contacts().size, 11);
    assert.equal(sim.stats.status413, 3);
    assert.throws(() => sim.setOptions({ maxBatchRecords: -1 }), RangeError);
  });
});

Deno.test("OmetriaSimulator rejects chosen records behind a 2xx, set while serving", async () => {
  await _withSim({}, async (sim) => {
    sim.setOptions({
      reject: (r) => r.id === "refused" ? "Contact refused by account rules" : undefined,
    });
    const big = _contact("big", { properties: { note: "é".repeat(40_000) } });
    const res = await _push(sim, [_contact("kept"), _contact("refused"), big]);
    assert.equal(res.status, 202);
    assert.deepEqual(
      [(res.body as { accepted: number }).accepted, (res.body as { rejected: number }).rejected],
      [1, 2],
    );
    assert.deepEqual([...sim.contacts().keys()], ["kept"]);
    assert.deepEqual((await _errors(sim)).body, [
      { error_message: "Contact refused by account rules", error_path: "root" },
      { error_message: "Record is too large", error_path: "root" },
    ]);
  });
});

Deno.test("OmetriaSimulator merges a partial opted-out orphan into the stored contact", async () => {
  await _withSim({}, async (sim) => {
    await _push(sim, [_contact("gone", { properties: { source: "mailchimp" } })]);
    const orphan = {
      "@type": "contact",
      "@collection": "mailchimp-list1",
      "@merge": true,
      id: "gone",
      marketing_optin: "EXPLICITLY_OPTEDOUT",
      properties: { mailchimp_deleted: true },
    };
    const res = await _push(sim, [orphan]);
    assert.equal(res.status, 202);
    assert.deepEqual(sim.contacts("mailchimp-list1").get("gone"), {
      "@type": "contact",
      "@collection": "mailchimp-list1",
      id: "gone",
      email: "gone@example.com",
      firstname: "Ada",
      lastname: "Lovelace",
      marketing_optin: "EXPLICITLY_OPTEDOUT",
      properties: { mailchimp_deleted: true },
    });
    // Without @merge the record replaces the stored one, where Ometria is played so.
    sim.setOptions({ records: { omittedFields: "replace" } });
    const { "@merge": _merge, ...whole } = orphan;
    await _push(sim, [whole]);
    assert.equal(sim.contacts().get("gone")?.email, undefined);
    assert.equal(sim.contacts().get("gone")?.marketing_optin, "EXPLICITLY_OPTEDOUT");
    // An orphan never stored before is stored as sent.
    await _push(sim, [{ ...orphan, id: "never" }]);
    assert.equal(sim.contacts().get("never")?.marketing_optin, "EXPLICITLY_OPTEDOUT");
  });
});

Deno.test("OmetriaSimulator /record stores a deleted status for an orphan", async () => {
  await _withSim({}, async (sim) => {
    const record = { id: "m1", firstname: "A", lastname: "B", email: "a@example.com" };
    await _legacy(sim, [{ ...record, status: "subscribed" }]);
    const res = await _legacy(sim, [{ ...record, status: "deleted" }]);
    assert.equal(res.status, 201);
    assert.deepEqual(sim.legacyRecords().get("m1"), { ...record, status: "deleted" });
  });
});

Deno.test("OmetriaSimulator plays each answer for blanks: cleared, kept or refused", async (t) => {
  const stored = { phone_number: "+447700900123", lastname: "Lovelace", properties: { x: 1 } };
  const blanked = { phone_number: null, lastname: "", properties: { x: null } };
  const cases: [string, Partial<RecordPolicy>, Record<string, unknown> | "refused"][] = [
    ['null clears, "" is stored', {}, { lastname: "", properties: {} }],
    [
      'null and "" are ignored',
      { nullFields: "keep", emptyStringFields: "keep", properties: "merge" },
      { phone_number: "+447700900123", lastname: "Lovelace", properties: { x: 1 } },
    ],
    ["null is refused", { nullFields: "reject" }, "refused"],
  ];
  for (const [name, records, want] of cases) {
    await t.step(name, async () => {
      await _withSim({ records }, async (sim) => {
        await _push(sim, [_contact("a", stored)]);
        await _push(sim, [_contact("a", blanked)]);
        const got = sim.contacts().get("a")!;
        if (want === "refused") {
          assert.equal(got.phone_number, "+447700900123");
          assert.deepEqual(
            ((await _errors(sim)).body as { error_path: string }[])[0]?.error_path,
            "root > phone_number",
          );
          return;
        }
        for (const [field, value] of Object.entries(want)) assert.deepEqual(got[field], value);
        if (!("phone_number" in want)) assert.equal("phone_number" in got, false);
      });
    });
  }
  await t.step('"" is refused in a typed field only', async () => {
    await _withSim({ records: { emptyStringFields: "reject" } }, async (sim) => {
      const res = await _push(sim, [
        _contact("a", { lastname: "" }),
        _contact("b", { date_of_birth: "" }),
      ]);
      assert.equal((res.body as { rejected: number }).rejected, 1);
      assert.deepEqual(sim.errors().map((e) => [e.record_id, e.error_path]), [
        ["b", "root > date_of_birth"],
      ]);
    });
  });
  await t.step("properties merge key by key, or are replaced whole", async () => {
    for (const properties of ["merge", "replace"] as const) {
      await _withSim({ records: { properties } }, async (sim) => {
        await _push(sim, [_contact("a", { properties: { x: 1, y: 2 } })]);
        await _push(sim, [_contact("a", { properties: { y: 3 } })]);
        assert.deepEqual(
          sim.contacts().get("a")?.properties,
          properties === "merge" ? { x: 1, y: 3 } : { y: 3 },
        );
      });
    }
  });
});

Deno.test("OmetriaSimulator validates after the OK when asynchronous, and serves _errors in each shape", async (t) => {
  for (const shape of ["documented", "rich", "rich-text"] as const) {
    await t.step(shape, async () => {
      await _withSim({ validation: "async", errorsShape: shape }, async (sim) => {
        const res = await _push(sim, [_contact("ok"), _contact("bad", { phone_number: "07700" })]);
        const body = res.body as { accepted: number; rejected: number; request_id: string };
        assert.deepEqual([body.accepted, body.rejected], [2, 0], "OK is not stored");
        assert.deepEqual([...sim.contacts().keys()], ["ok"]);
        const [entry] = (await _errors(sim)).body as Record<string, unknown>[];
        if (shape === "documented") {
          assert.deepEqual(entry, {
            error_message: "not a valid value",
            error_path: "root > phone_number",
          });
        } else {
          assert.equal(entry?.record_id, "bad");
          assert.equal(entry?.request_id, body.request_id);
          assert.deepEqual(
            entry?.message,
            shape === "rich"
              ? { error: "not a valid value", error_path: "root > phone_number" }
              : "not a valid value",
          );
        }
      });
    });
  }
  await t.step("newest first", async () => {
    await _withSim({ errorsOrder: "newest-first", errorsShape: "rich" }, async (sim) => {
      await _push(sim, [_contact("one", { email: 1 }), _contact("two", { email: 1 })]);
      const entries = (await _errors(sim)).body as { record_id: string }[];
      assert.deepEqual(entries.map((e) => e.record_id), ["two", "one"]);
    });
  });
});

Deno.test("OmetriaSimulator can count unchanged records as skipped", async () => {
  await _withSim({ skipped: "unchanged" }, async (sim) => {
    await _push(sim, [_contact("a"), _contact("b")]);
    const res = await _push(sim, [_contact("a"), _contact("b", { firstname: "New" })]);
    assert.deepEqual(res.body, {
      status: "OK",
      request_id: (res.body as { request_id: string }).request_id,
      accepted: 1,
      rejected: 0,
      skipped: 1,
    });
    assert.equal(sim.stats.recordsSkipped, 1);
  });
});

Deno.test("OmetriaSimulator limits pushes and the rest of the Data API apart", async () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  await _withSim(
    { clock, maxRequestsPerSecond: 8, maxDataApiRequestsPerSecond: 4 },
    async (sim) => {
      const pushes = await Promise.all(
        Array.from({ length: 8 }, () => _push(sim, [_contact("a")])),
      );
      assert.deepEqual(new Set(pushes.map((r) => r.status)), new Set([202]));
      const reads = await Promise.all(Array.from({ length: 5 }, () => _errors(sim)));
      assert.deepEqual(reads.map((r) => r.status).sort(), [200, 200, 200, 200, 429]);
      assert.equal(sim.stats.maxRequestsInOneSecond, 8);
      assert.equal(sim.stats.maxDataApiRequestsInOneSecond, 4);
    },
  );
});
