import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { AlertManager } from "../../lib/freshness/alerts.ts";
import type { ConnectionState } from "../../lib/state/schema.ts";
import { captureLogs, startReceiver, stateFreshAt } from "./_helpers.ts";

const START = Date.UTC(2026, 0, 1, 0);
const MIN = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();
const conn = { id: "shop-eu", list_id: "list-shop-eu", threshold_seconds: 3600 };

Deno.test("AlertManager alerts once on crossing the threshold, reminds after repeatMinutes, reports recovery", async () => {
  using logs = captureLogs();
  await using receiver = startReceiver("ok");
  const clock = new FakeClock(START);
  const alerts = new AlertManager({
    clock,
    logger: logs.logger,
    webhookUrl: receiver.url,
    repeatMinutes: 240,
  });
  let state: ConnectionState = stateFreshAt(conn.id, START, { last_error: "Mailchimp 503" });
  const step = (ms: number) => {
    clock.set(clock.now() + ms);
    state = { ...state, alert: alerts.evaluate(conn, state) };
  };

  // Up to and including lag == threshold: silence.
  for (let i = 0; i < 6; i++) step(10 * MIN);
  assert.equal(logs.events("connection.behind").length, 0);
  assert.equal(state.alert.behind_since, null);

  step(1000); // lag 3601 s
  assert.equal(logs.events("connection.behind").length, 1);
  assert.equal(state.alert.behind_since, iso(START + 60 * MIN + 1000));
  assert.equal(state.alert.last_alert_at, state.alert.behind_since);

  // Still behind for nearly four hours: no repeat.
  for (let i = 0; i < 23; i++) step(10 * MIN);
  assert.equal(logs.events("connection.behind").length, 1);

  step(10 * MIN); // 240 minutes after the first alert
  const behind = logs.events("connection.behind");
  assert.equal(behind.length, 2);
  assert.equal(behind[1]!.properties["reminder"], true);
  assert.equal(behind[1]!.level, "error");
  assert.equal(state.alert.behind_since, iso(START + 60 * MIN + 1000));
  assert.equal(state.alert.last_alert_at, iso(clock.now()));

  // A completed run makes it fresh again.
  state = { ...state, fresh_as_of: iso(clock.now() - 5 * MIN) };
  step(MIN);
  assert.equal(logs.events("connection.recovered").length, 1);
  assert.equal(logs.events("connection.recovered")[0]!.level, "warning");
  assert.deepEqual(state.alert, { behind_since: null, last_alert_at: null });
  step(MIN);
  assert.equal(logs.events("connection.recovered").length, 1);

  assert.equal(await alerts.drain(), true);
  await alerts.close();
  assert.deepEqual(receiver.bodies.map((b) => [b["event"], b["reminder"]]), [
    ["connection.behind", undefined],
    ["connection.behind", true],
    ["connection.recovered", undefined],
  ]);
  assert.deepEqual(receiver.bodies[0], {
    event: "connection.behind",
    connection: "shop-eu",
    list_id: "list-shop-eu",
    lag_seconds: 3601,
    threshold_seconds: 3600,
    fresh_as_of: iso(START),
    last_error: "Mailchimp 503",
  });
  assert.match(
    logs.events("connection.behind")[0]!.message.map(String).join(""),
    /^connection\.behind shop-eu/,
  );
  assert.doesNotMatch(logs.text(), /SECRET-TOKEN|SECRET-KEY/);
});

Deno.test("AlertManager does not re-alert after a restart during an incident, but reminds on schedule", async () => {
  using logs = captureLogs();
  const clock = new FakeClock(START + 10 * 60 * MIN);
  const alerts = new AlertManager({ clock, logger: logs.logger, repeatMinutes: 240 });
  const alertedAt = iso(clock.now() - 30 * MIN);
  let state = stateFreshAt(conn.id, START, {
    alert: { behind_since: alertedAt, last_alert_at: alertedAt },
  });
  state = { ...state, alert: alerts.evaluate(conn, state) };
  assert.equal(logs.records.length, 0);
  assert.deepEqual(state.alert, { behind_since: alertedAt, last_alert_at: alertedAt });

  clock.set(clock.now() + 210 * MIN); // 240 minutes after the recorded alert
  state = { ...state, alert: alerts.evaluate(conn, state) };
  assert.equal(logs.events("connection.behind").length, 1);
  assert.equal(logs.events("connection.behind")[0]!.properties["reminder"], true);
  assert.equal(state.alert.behind_since, alertedAt);
  await alerts.close();
});

Deno.test("AlertManager alerts at once when it finds a connection behind with no record of alerting", async () => {
  using logs = captureLogs();
  await using receiver = startReceiver("ok");
  const clock = new FakeClock(START + 5 * 60 * MIN);
  const alerts = new AlertManager({ clock, logger: logs.logger, webhookUrl: receiver.url });
  const memory = alerts.evaluate(conn, stateFreshAt(conn.id, START));
  assert.deepEqual(memory, { behind_since: iso(clock.now()), last_alert_at: iso(clock.now()) });
  assert.equal(logs.events("connection.behind").length, 1);
  assert.equal(logs.events("connection.behind")[0]!.properties["reminder"], false);
  assert.equal(await alerts.drain(), true);
  assert.equal(receiver.bodies.length, 1);
  assert.equal(receiver.bodies[0]!["lag_seconds"], 5 * 3600);
  assert.equal("reminder" in receiver.bodies[0]!, false);
  await alerts.close();
});

Deno.test("AlertManager counts a never-completed connection from when it first evaluated it", async () => {
  using logs = captureLogs();
  const clock = new FakeClock(START);
  const alerts = new AlertManager({ clock, logger: logs.logger });
  let state = stateFreshAt(conn.id, null);
  state = { ...state, alert: alerts.evaluate(conn, state) };
  clock.set(START + 3600_000);
  state = { ...state, alert: alerts.evaluate(conn, state) };
  assert.equal(logs.records.length, 0);
  clock.set(START + 3601_000);
  state = { ...state, alert: alerts.evaluate(conn, state) };
  assert.equal(logs.events("connection.behind").length, 1);
  assert.equal(logs.events("connection.behind")[0]!.properties["fresh_as_of"], null);
  await alerts.close();
});

Deno.test("AlertManager keeps evaluate instant and drain bounded when the webhook answers 500", async () => {
  using logs = captureLogs();
  await using receiver = startReceiver("error500");
  const clock = new FakeClock(START + 2 * 60 * MIN, { autoAdvance: true });
  const alerts = new AlertManager({
    clock,
    logger: logs.logger,
    webhookUrl: receiver.url,
    retry: { maxAttempts: 4, minDelayMs: 1000, maxDelayMs: 8000 },
  });
  const before = performance.now();
  const memory = alerts.evaluate(conn, stateFreshAt(conn.id, START));
  assert.ok(performance.now() - before < 50, "evaluate must not wait for the webhook");
  assert.notEqual(memory.behind_since, null);
  assert.equal(receiver.bodies.length, 0);
  assert.equal(alerts.pending, 1);

  assert.equal(await alerts.drain(), true);
  assert.equal(receiver.bodies.length, 4);
  assert.equal(logs.events("alert.webhook.retry").length, 3);
  const failed = logs.events("alert.webhook.failed");
  assert.equal(failed.length, 1);
  assert.equal(failed[0]!.properties["attempts"], 4);
  assert.equal(failed[0]!.properties["webhook"], `http://127.0.0.1:${receiver.port}`);
  assert.doesNotMatch(logs.text(), /SECRET-TOKEN|SECRET-KEY/);
  await alerts.close();
});

Deno.test("AlertManager gives up after bounded retries when nothing listens on the webhook port", async () => {
  using logs = captureLogs();
  const receiver = startReceiver("ok");
  const deadUrl = receiver.url;
  await receiver.close(); // the port is now closed: connections are refused
  const clock = new FakeClock(START + 2 * 60 * MIN, { autoAdvance: true });
  const alerts = new AlertManager({ clock, logger: logs.logger, webhookUrl: deadUrl });
  alerts.evaluate(conn, stateFreshAt(conn.id, START));
  assert.equal(await alerts.drain(), true);
  assert.equal(logs.events("alert.webhook.retry").length, 4);
  assert.equal(logs.events("alert.webhook.failed")[0]!.properties["attempts"], 5);
  assert.doesNotMatch(logs.text(), /SECRET-TOKEN|SECRET-KEY/);
  await alerts.close();
});

Deno.test("AlertManager bounds its queue, drops the oldest with a warning, and close() aborts a hung POST", async () => {
  using logs = captureLogs();
  await using receiver = startReceiver("hang");
  const clock = new FakeClock(START + 2 * 60 * MIN);
  const alerts = new AlertManager({
    clock,
    logger: logs.logger,
    webhookUrl: receiver.url,
    maxPending: 3,
  });
  for (let i = 0; i < 10; i++) {
    alerts.evaluate({ ...conn, id: `c${i}` }, stateFreshAt(`c${i}`, START));
  }
  assert.equal(logs.events("connection.behind").length, 10);
  assert.equal(alerts.pending, 3);
  assert.equal(logs.events("alert.webhook.dropped").length, 7);

  await receiver.received(1);
  const timeout = new AbortController();
  const drained = alerts.drain(timeout.signal);
  timeout.abort();
  assert.equal(await drained, false);

  await alerts.close();
  assert.equal(alerts.pending, 0);
  assert.equal(await alerts.drain(), true);
  // Only the first delivery reached the hung receiver; the newest alerts were the ones kept.
  assert.equal(receiver.bodies.length, 1);
  assert.equal(receiver.bodies[0]!["connection"], "c0");
});

Deno.test("AlertManager raises no alert for 1,000 connections whose lag stays under the threshold", async () => {
  using logs = captureLogs();
  await using receiver = startReceiver("ok");
  const clock = new FakeClock(START);
  const alerts = new AlertManager({ clock, logger: logs.logger, webhookUrl: receiver.url });
  const conns = Array.from({ length: 1000 }, (_, i) => ({
    id: `conn-${i}`,
    list_id: `list-${i}`,
    threshold_seconds: 900 + (i % 7) * 300,
  }));
  // A third never completed a run yet; the others were fresh at various points in the past.
  const states = new Map<string, ConnectionState>(
    conns.map((c, i) => [
      c.id,
      stateFreshAt(c.id, i % 3 === 0 ? null : START - ((i * 37) % c.threshold_seconds) * 1000),
    ]),
  );
  // 24 hours, one tick every 5 minutes; each connection completes a run (fresh_as_of = now) as soon
  // as its lag passes half its threshold, the way a healthy scheduler keeps it fresh.
  let highestLagRatio = 0;
  for (let minute = 0; minute < 24 * 60; minute += 5) {
    clock.set(START + minute * MIN);
    for (const c of conns) {
      let state = states.get(c.id)!;
      state = { ...state, alert: alerts.evaluate(c, state) };
      const fresh = state.fresh_as_of === null ? START : Date.parse(state.fresh_as_of);
      const ratio = (clock.now() - fresh) / (c.threshold_seconds * 1000);
      highestLagRatio = Math.max(highestLagRatio, ratio);
      if (clock.now() - fresh > (c.threshold_seconds * 1000) / 2) {
        state = { ...state, fresh_as_of: iso(clock.now()), status: "ok" };
      }
      states.set(c.id, state);
    }
  }
  assert.ok(highestLagRatio > 0.95 && highestLagRatio <= 1, `lags came close: ${highestLagRatio}`);
  assert.equal(await alerts.drain(), true);
  assert.equal(logs.records.filter((r) => r.level === "error" || r.level === "warning").length, 0);
  assert.equal(receiver.bodies.length, 0);
  assert.ok([...states.values()].every((s) => s.alert.behind_since === null));
  await alerts.close();
});

Deno.test("AlertManager rejects an invalid webhook URL without echoing it", () => {
  using logs = captureLogs();
  const clock = new FakeClock(START);
  assert.throws(
    () => new AlertManager({ clock, logger: logs.logger, webhookUrl: "not a url SECRET-TOKEN" }),
    (e: unknown) => e instanceof TypeError && !e.message.includes("SECRET"),
  );
  assert.throws(
    () => new AlertManager({ clock, logger: logs.logger, webhookUrl: "ftp://example.test/x" }),
    TypeError,
  );
});

Deno.test("AlertManager redacts configured keys from every field it sends and logs, ids included", async () => {
  using logs = captureLogs();
  await using receiver = startReceiver("ok");
  const key = "leaky-KEY-0123456789-us9";
  // A state from before ids were checked: another key passed as the list id.
  const listKey = "0123456789abcdef0123456789abcdef-us9";
  const clock = new FakeClock(START + 2 * 60 * MIN, { autoAdvance: true });
  const alerts = new AlertManager({
    clock,
    logger: logs.logger,
    webhookUrl: receiver.url,
    secrets: [key, listKey],
  });
  alerts.evaluate(conn, {
    ...stateFreshAt(conn.id, START),
    last_error: `TypeError: Invalid header value: ${key}`,
  });
  alerts.evaluate(
    { id: listKey, list_id: listKey, threshold_seconds: 3600 },
    stateFreshAt(listKey, START),
  );
  assert.equal(await alerts.drain(), true);
  assert.equal(receiver.bodies[0]!["last_error"], "TypeError: Invalid header value: [redacted]");
  assert.doesNotMatch(logs.text(), /leaky-KEY/);
  assert.equal(receiver.bodies[1]!["event"], "connection.behind");
  assert.equal(receiver.bodies[1]!["list_id"], "[redacted]");
  assert.doesNotMatch(JSON.stringify(receiver.bodies), /leaky-KEY|0123456789abcdef/);
  await alerts.close();
});

Deno.test("AlertManager backs off with the jitter source it is given", async () => {
  using logs = captureLogs();
  await using receiver = startReceiver("error500");
  const clock = new FakeClock(START + 2 * 60 * MIN, { autoAdvance: true });
  const alerts = new AlertManager({
    clock,
    logger: logs.logger,
    webhookUrl: receiver.url,
    retry: { maxAttempts: 4, minDelayMs: 1000, maxDelayMs: 8000, random: () => 0.5 },
  });
  alerts.evaluate(conn, stateFreshAt(conn.id, START));
  assert.equal(await alerts.drain(), true);
  assert.deepEqual(
    logs.events("alert.webhook.retry").map((r) => r.properties["delay_ms"]),
    [500, 1000, 2000],
  );
  await alerts.close();
});

Deno.test("AlertManager sends connection.rejected_async with the errors tied to no record", async () => {
  using logs = captureLogs();
  await using receiver = startReceiver("ok");
  const clock = new FakeClock(START, { autoAdvance: true });
  const alerts = new AlertManager({ clock, logger: logs.logger, webhookUrl: receiver.url });
  alerts.rejectedAsync(conn, stateFreshAt(conn.id, START), {
    rejected: 2,
    errors: ["lastname: not a valid value", "phone_number: not a valid value"],
  });
  assert.equal(await alerts.drain(), true);
  const [event] = logs.events("connection.rejected_async");
  assert.equal(event?.level, "error");
  assert.match(event!.message.map(String).join(""), /2 validation error\(s\).*lastname/);
  assert.equal(receiver.bodies[0]!["event"], "connection.rejected_async");
  assert.equal(receiver.bodies[0]!["rejected"], 2);
  assert.deepEqual(receiver.bodies[0]!["errors"], [
    "lastname: not a valid value",
    "phone_number: not a valid value",
  ]);
  await alerts.close();
});
