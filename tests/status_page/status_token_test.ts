import assert from "node:assert/strict";
import { deployHandler } from "../../lib/app/deploy_http.ts";
import { envSecrets, loadConfig } from "../../lib/config/config.ts";
import { STATUS_COOKIE } from "../../lib/status_page/status_token.ts";
import { sampleConnectionConfigs, statusPageSample } from "./_sample.ts";

const TOKEN = "s3cret-status-token_0123456789";

async function handlerWith(statusToken: string | undefined) {
  const sample = await statusPageSample();
  return deployHandler({
    store: sample.store,
    clock: sample.clock,
    config: {
      connections: sampleConnectionConfigs(),
      thresholdMinutes: 60,
      statusToken,
    },
  });
}

async function call(
  handler: (r: Request) => Promise<Response>,
  path: string,
  headers: Record<string, string> = {},
) {
  const response = await handler(new Request(`https://sync.example.deno.net${path}`, { headers }));
  return { status: response.status, headers: response.headers, body: await response.text() };
}

Deno.test("deployHandler() without STATUS_TOKEN serves only /healthz", async () => {
  const handler = await handlerWith(undefined);
  assert.equal((await call(handler, "/healthz")).status, 200);
  for (const path of ["/", "/status.json", "/metrics", "/?token=anything"]) {
    const res = await call(handler, path, { authorization: "Bearer anything" });
    assert.equal(res.status, 403, path);
    assert.match(res.body, /Set STATUS_TOKEN/);
  }
});

Deno.test("deployHandler() with STATUS_TOKEN wants it as a Bearer header or ?token=", async () => {
  const handler = await handlerWith(TOKEN);
  assert.equal((await call(handler, "/healthz")).status, 200, "health stays open");
  for (const path of ["/", "/status.json", "/metrics"]) {
    const none = await call(handler, path);
    assert.equal(none.status, 401, path);
    assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="status"');
    const wrong = await call(handler, path, { authorization: `Bearer ${TOKEN}x` });
    assert.equal(wrong.status, 401, path);
    assert.equal((await call(handler, `${path}?token=${TOKEN.slice(1)}`)).status, 401);
    const right = await call(handler, path, { authorization: `Bearer ${TOKEN}` });
    assert.equal(right.status, 200, path);
    assert.ok(!right.body.includes(TOKEN), `${path} never shows the token`);
  }
  const metrics = await call(handler, `/metrics?token=${TOKEN}`);
  assert.equal(metrics.status, 200, "a scraper may use ?token= too");
  assert.match(metrics.body, /sync_connections_behind 1/);
  const page = await call(handler, "/", { authorization: `bearer ${TOKEN}` });
  assert.match(page.headers.get("content-type")!, /^text\/html/);
  assert.match(page.body, /data-id="shop-eu" data-behind="1"/);
});

Deno.test("deployHandler() trades ?token= on the page for a cookie and an address without it", async () => {
  const handler = await handlerWith(TOKEN);
  const res = await call(handler, `/?q=shop&token=${encodeURIComponent(TOKEN)}&page=1`);
  assert.equal(res.status, 303);
  assert.equal(res.headers.get("location"), "/?q=shop&page=1");
  const cookie = res.headers.get("set-cookie")!;
  assert.match(cookie, new RegExp(`^${STATUS_COOKIE}=[0-9a-f]{64}; Path=/; Max-Age=43200; `));
  assert.match(cookie, /HttpOnly; SameSite=Strict; Secure$/);
  assert.ok(!cookie.includes(TOKEN), "the cookie holds a hash, not the token");

  const pair = cookie.split(";")[0]!;
  const page = await call(handler, "/?q=shop&page=1", { cookie: `other=1; ${pair}` });
  assert.equal(page.status, 200);
  assert.match(page.body, /data-id="shop-eu"/);
  assert.ok(!page.body.includes(TOKEN));
  assert.match(page.body, /<input type="search" name="q" value="shop"/);
  assert.equal((await call(handler, "/status.json", { cookie: pair })).status, 200);
  const forged = `${STATUS_COOKIE}=${"0".repeat(64)}`;
  assert.equal((await call(handler, "/", { cookie: forged })).status, 401);
  assert.equal((await call(handler, "/", { cookie: `${STATUS_COOKIE}=zz` })).status, 401);
});

Deno.test("loadConfig() reads STATUS_TOKEN as a secret: trimmed, redacted, refused with a space", async () => {
  const read = (token: string) => loadConfig({ env: { STATUS_TOKEN: token }, args: ["status"] });
  const ok = await read(` ${TOKEN}\n`);
  assert.ok(ok.ok);
  assert.equal(ok.config.statusToken, TOKEN);
  assert.ok(envSecrets({ STATUS_TOKEN: TOKEN }).includes(TOKEN), "redacted from logs");
  const unset = await loadConfig({ env: {}, args: ["status"] });
  assert.ok(unset.ok);
  assert.equal(unset.config.statusToken, undefined);
  const bad = await read("two words");
  assert.ok(!bad.ok);
  assert.match(bad.errors.join("\n"), /STATUS_TOKEN contains a space/);
  assert.ok(!bad.errors.join("\n").includes("two words"), "the value is not shown");
});
