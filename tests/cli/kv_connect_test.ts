/**
 * `--state kv:https://…` (remote Deno KV over KV Connect). No KV Connect server can be had
 * here (denokv is a Rust program and no npm package serves the protocol), so these check the
 * part that is ours: the spec reaches `Deno.openKv` with the token as Deno sends it, and every
 * way of failing is a clear exit 2 that never shows the token.
 */
import assert from "node:assert/strict";
import { runCli } from "../_helpers/cli.ts";

const TOKEN = "kv-token-that-must-never-be-printed";
const KEYS = { MAILCHIMP_API_KEY: "abc123-us9", OMETRIA_API_KEY: "ometria-key" };

Deno.test("main.ts --state kv:<url> fails clearly, exit 2, and never prints the token", async (t) => {
  const seen: { path: string; authorization: string | null }[] = [];
  // Answers the metadata exchange with 401 and, like a careless proxy, echoes the header.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push({ path: new URL(req.url).pathname, authorization: req.headers.get("authorization") });
    await req.body?.cancel();
    return new Response(`bad token: ${req.headers.get("authorization")}`, { status: 401 });
  });
  const url = `http://127.0.0.1:${server.addr.port}/databases/one/connect`;
  // A port nobody listens on: open one, note it, close it.
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (closed.addr as Deno.NetAddr).port;
  closed.close();
  try {
    await t.step("a refused token", async () => {
      const r = await runCli(["--once", "--state", `kv:${url}`, "list1"], {
        ...KEYS,
        DENO_KV_ACCESS_TOKEN: TOKEN,
      });
      assert.equal(r.code, 2, r.stderr);
      assert.deepEqual(seen, [{
        path: "/databases/one/connect",
        authorization: `Bearer ${TOKEN}`,
      }]);
      assert.match(
        r.stderr,
        /Cannot open the remote Deno KV http:\/\/127\.0\.0\.1:\d+\/databases\/one\/connect: the server answered 401.*check DENO_KV_ACCESS_TOKEN/,
      );
      assert.ok(!(r.stdout + r.stderr).includes(TOKEN));
      assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
    });
    await t.step("an unreachable server", async () => {
      const r = await runCli(
        ["--once", "--state", `kv:http://127.0.0.1:${closedPort}/`, "list1"],
        { ...KEYS, DENO_KV_ACCESS_TOKEN: TOKEN },
      );
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        /Cannot open the remote Deno KV http:\/\/127\.0\.0\.1:\d+\/: .*refused/i,
      );
      assert.match(r.stderr, /reachable/);
      assert.ok(!(r.stdout + r.stderr).includes(TOKEN));
    });
    await t.step(
      "Deno Deploy Classic's URL, refused before anything is sent, with today's",
      async () => {
        const r = await runCli(
          ["--once", "--state", "kv:https://api.deno.com/databases/0a1b2c/connect", "list1"],
          { ...KEYS, DENO_KV_ACCESS_TOKEN: TOKEN },
          // No network beyond the loopback: the refusal must not need to connect.
          { permissions: ["--allow-net=127.0.0.1", "--allow-env", "--allow-read"] },
        );
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /Deno Deploy Classic's KV Connect URL/);
        assert.match(r.stderr, /shut down on 2026-07-20/);
        assert.match(r.stderr, /https:\/\/api\.deno\.com\/v2\/databases\/<database id>\/connect/);
        assert.doesNotMatch(r.stderr, /requires net access|Cannot open the remote/i);
        assert.ok(!(r.stdout + r.stderr).includes(TOKEN));
      },
    );
    await t.step("no token", async () => {
      const r = await runCli(["--once", "--state", `kv:${url}`, "list1"], KEYS);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /DENO_KV_ACCESS_TOKEN is not set/);
    });
  } finally {
    await server.shutdown();
  }
});
