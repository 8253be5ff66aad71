/**
 * The consent and erasure settings: `optout_back`, `erase_on_permanent_delete` and
 * `force_optin_on_resubscribe` in the connections file, OPTOUT_BACK for lists given as
 * arguments, and `erase`'s arguments, each with an error a user can act on (never quoting an
 * address).
 */
import assert from "node:assert/strict";
import { type Config, type ConfigSources, loadConfig } from "../../lib/config/config.ts";
import { deployArgs } from "../../lib/config/deploy_args.ts";

const KEYS = {
  MAILCHIMP_API_KEY: "0123456789abcdef0123456789abcdef-us9",
  OMETRIA_API_KEY: "om-key",
};

async function load(sources: Partial<ConfigSources>) {
  return await loadConfig({ env: {}, args: [], ...sources });
}

async function ok(sources: Partial<ConfigSources>): Promise<Config> {
  const result = await load(sources);
  assert.ok(result.ok, `expected a config, got: ${result.ok ? "" : result.errors.join(" | ")}`);
  return result.config;
}

async function errors(sources: Partial<ConfigSources>): Promise<string> {
  const result = await load(sources);
  assert.equal(result.ok, false, "expected configuration errors");
  return result.ok ? "" : result.errors.join("\n");
}

function file(entries: Record<string, unknown>[]) {
  const text = JSON.stringify({ connections: entries });
  return {
    env: { MC: KEYS.MAILCHIMP_API_KEY, OM: KEYS.OMETRIA_API_KEY },
    readTextFile: (path: string) =>
      path === "c.json" ? Promise.resolve(text) : Promise.reject(new Deno.errors.NotFound(path)),
  };
}

const ENTRY = {
  id: "uk",
  list_id: "a1b2c3d4e5",
  mailchimp_api_key_env: "MC",
  ometria_api_key_env: "OM",
};

Deno.test("connections file: optout_back, erase_on_permanent_delete and force_optin_on_resubscribe switch each on", async () => {
  const config = await ok({
    ...file([{
      ...ENTRY,
      optout_back: true,
      erase_on_permanent_delete: true,
      force_optin_on_resubscribe: true,
    }, { ...ENTRY, id: "de", list_id: "f6g7h8i9j0" }]),
    args: ["--connections", "c.json"],
  });
  const [uk, de] = config.connections;
  assert.deepEqual(
    [uk?.optoutBack, uk?.eraseOnPermanentDelete, uk?.forceOptinOnResubscribe],
    [true, true, true],
  );
  assert.deepEqual(
    [de?.optoutBack, de?.eraseOnPermanentDelete, de?.forceOptinOnResubscribe],
    [undefined, undefined, undefined],
    "off by default",
  );
});

Deno.test("connections file: a switch that is not a boolean, a misspelt one, and @force_optin on /record are refused", async () => {
  const said = await errors({
    ...file([
      { ...ENTRY, optout_back: "yes" },
      { ...ENTRY, id: "b", optout_bakc: true },
      { ...ENTRY, id: "c", ometria_endpoint: "record", force_optin_on_resubscribe: true },
    ]),
    args: ["--connections", "c.json"],
  });
  assert.match(said, /optout_back must be true or false/);
  assert.match(said, /optout_bakc/);
  const record = await errors({
    ...file([{ ...ENTRY, ometria_endpoint: "record", force_optin_on_resubscribe: true }]),
    args: ["--connections", "c.json"],
  });
  assert.match(record, /"force_optin_on_resubscribe" only applies to the push endpoint/);
});

Deno.test("OPTOUT_BACK turns optout_back on for lists given as arguments (and on Deno Deploy), and says it does not reach a file", async () => {
  const config = await ok({ env: { ...KEYS, OPTOUT_BACK: "1" }, args: ["--once", "a1b2c3d4e5"] });
  assert.equal(config.connections[0]?.optoutBack, true);
  assert.equal(
    (await ok({ env: KEYS, args: ["a1b2c3d4e5"] })).connections[0]?.optoutBack,
    undefined,
  );
  assert.match(
    await errors({ env: { ...KEYS, OPTOUT_BACK: "maybe" }, args: ["x1"] }),
    /OPTOUT_BACK must be 1/,
  );
  const deploy = { ...KEYS, OPTOUT_BACK: "true", SYNC_LIST_IDS: "a1b2c3d4e5" };
  const onDeploy = await ok({ env: deploy, args: deployArgs(deploy) });
  assert.equal(onDeploy.connections[0]?.optoutBack, true);
  const withFile = await ok({
    ...file([ENTRY]),
    env: { ...file([ENTRY]).env, OPTOUT_BACK: "1" },
    args: ["--connections", "c.json"],
  });
  assert.match(withFile.warnings.join("\n"), /a connections file says it per connection/);
});

Deno.test("erase: addresses and the connection, --mailchimp and --status, and errors that never show an address", async () => {
  const config = await ok({
    env: KEYS,
    args: [
      "erase",
      "Ada@Example.com",
      "bob@example.com",
      "--connection",
      "a1b2c3d4e5",
      "--mailchimp",
    ],
  });
  assert.equal(config.command, "erase");
  assert.deepEqual(config.erase, {
    emails: ["Ada@Example.com", "bob@example.com"],
    mailchimp: true,
    status: false,
  });
  assert.deepEqual(config.connections.map((c) => c.id), ["a1b2c3d4e5"]);
  const fromFile = await ok({
    ...file([ENTRY, { ...ENTRY, id: "de", list_id: "f6g7h8i9j0" }]),
    args: ["erase", "x@example.com", "--connections", "c.json", "--connection", "de"],
  });
  assert.deepEqual(fromFile.connections.map((c) => c.id), ["de"]);
  const status = await ok({ args: ["erase", "--status"] });
  assert.deepEqual(status.erase, { emails: [], mailchimp: false, status: true });

  const bad = await errors({
    env: KEYS,
    args: ["erase", "not-an-address", "--connection", "a1b2c3d4e5"],
  });
  assert.match(bad, /Argument 1 of erase is not an email address/);
  assert.doesNotMatch(bad, /not-an-address/);
  assert.match(
    await errors({ env: KEYS, args: ["erase", "x@example.com"] }),
    /--connection <list_id>/,
  );
  assert.match(
    await errors({ env: KEYS, args: ["erase", "--connection", "a1b2c3d4e5"] }),
    /erase needs the addresses/,
  );
  assert.match(
    await errors({ args: ["erase", "--status", "x@example.com"] }),
    /give it no addresses/,
  );
  assert.match(
    await errors({ env: KEYS, args: ["--mailchimp", "a1b2c3d4e5"] }),
    /only apply to erase/,
  );
  assert.match(
    await errors({ args: ["erase", "x@example.com", "--connection", "a1b2c3d4e5"] }),
    /MAILCHIMP_API_KEY is not set/,
  );
});
