import assert from "node:assert/strict";
import { type Config, type ConfigSources, loadConfig } from "../../lib/config/config.ts";
import { deployArgs } from "../../lib/config/deploy_args.ts";
import { scheduleFromEnv } from "../../lib/config/schedule.ts";

const KEYS = {
  MAILCHIMP_API_KEY: "0123456789abcdef0123456789abcdef-us9",
  OMETRIA_API_KEY: "om-key",
};
/** A recognisable fake key: no error message may ever contain it. */
const SECRET = "SECRETKEY0123456789abcdef012345-us7";

async function ok(sources: Partial<ConfigSources>): Promise<Config> {
  const result = await loadConfig({ env: {}, args: [], ...sources });
  assert.ok(result.ok, `expected a config, got: ${result.ok ? "" : result.errors.join(" | ")}`);
  return result.config;
}

async function errors(sources: Partial<ConfigSources>): Promise<string[]> {
  const result = await loadConfig({ env: {}, args: [], ...sources });
  assert.equal(result.ok, false, "expected configuration errors");
  return result.ok ? [] : result.errors;
}

function fileReader(files: Record<string, string>): (path: string) => Promise<string> {
  return (path) => {
    const text = files[path];
    return text === undefined
      ? Promise.reject(new Deno.errors.NotFound(`No such file: ${path}`))
      : Promise.resolve(text);
  };
}

Deno.test("loadConfig() applies the original tool's defaults", async () => {
  const config = await ok({ env: KEYS, args: ["a1b2c3d4e5"] });
  assert.equal(config.command, "sync");
  assert.equal(config.maxConcurrentRuns, 2);
  assert.equal(config.bulkMemberCount, 5000);
  assert.equal(config.minutesPerBulk, 1);
  assert.equal(config.thresholdMinutes, 120);
  assert.equal(config.pollingSeconds, 60);
  assert.equal(config.schedule, "* * * * *");
  assert.equal(config.logLevel, "debug");
  assert.equal(config.logFile, "log_file.log");
  assert.equal(config.pageSize, 1000);
  assert.deepEqual(config.listIds, ["a1b2c3d4e5"]);
  assert.deepEqual(config.connections, [{
    id: "a1b2c3d4e5",
    listId: "a1b2c3d4e5",
    mailchimp: { apiKey: KEYS.MAILCHIMP_API_KEY, baseUrl: "https://us9.api.mailchimp.com/3.0" },
    ometria: { apiKey: "om-key", baseUrl: "https://api.ometria.com", endpoint: "push" },
    thresholdSeconds: 7200,
    webhookSigningSecretName: "MAILCHIMP_WEBHOOK_SIGNING_SECRET",
  }]);
});

Deno.test("loadConfig() reads every variable of the original tool", async () => {
  const config = await ok({
    env: {
      ...KEYS,
      MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS: "4",
      BULK_MEMBER_COUNT: "800",
      MINUTES_NEEDED_TO_PERFORM_A_PARTIAL_SYNC_OF_A_SINGLE_BULK: "3",
      NUMBER_OF_MINUTES_THAT_OMETRIAS_DATA_IS_BEHIND_MAILCHIMPS_DATA: "45",
      POLLING_TIME_IN_SECONDS: "300",
      LOGGING_LEVEL: "WARNING",
      LOG_FILE: "sync.log",
    },
    args: ["list1", "list2", "list1"],
  });
  assert.equal(config.maxConcurrentRuns, 4);
  assert.equal(config.bulkMemberCount, 800);
  assert.equal(config.pageSize, 800);
  assert.equal(config.minutesPerBulk, 3);
  assert.equal(config.thresholdMinutes, 45);
  assert.equal(config.pollingSeconds, 300);
  assert.equal(config.logLevel, "warning");
  assert.equal(config.logFile, "sync.log");
  assert.deepEqual(config.warnings, []);
  assert.deepEqual(config.connections.map((c) => [c.id, c.thresholdSeconds]), [
    ["list1", 2700],
    ["list2", 2700],
  ]);
});

Deno.test("loadConfig() maps every LOGGING_LEVEL and an empty LOG_FILE disables the file", async (t) => {
  const levels = {
    DEBUG: "debug",
    INFO: "info",
    WARNING: "warning",
    ERROR: "error",
    CRITICAL: "fatal",
    info: "info",
  } as const;
  for (const [name, level] of Object.entries(levels)) {
    await t.step(`${name} → ${level}`, async () => {
      const config = await ok({ env: { ...KEYS, LOGGING_LEVEL: name }, args: ["l1"] });
      assert.equal(config.logLevel, level);
    });
  }
  assert.equal((await ok({ env: { ...KEYS, LOG_FILE: "" }, args: ["l1"] })).logFile, undefined);
  const bad = await errors({ env: { ...KEYS, LOGGING_LEVEL: "LOUD" }, args: ["l1"] });
  assert.equal(bad.length, 1);
  assert.match(
    bad[0]!,
    /LOGGING_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL; it is "LOUD"/,
  );
});

Deno.test("loadConfig() finds Mailchimp's data center from the key, else DATA_CENTER", async () => {
  const base = async (env: Record<string, string>) =>
    (await ok({ env: { OMETRIA_API_KEY: "o", ...env }, args: ["l1"] })).connections[0]!.mailchimp
      .baseUrl;
  assert.equal(await base({ MAILCHIMP_API_KEY: "abc-us9" }), "https://us9.api.mailchimp.com/3.0");
  assert.equal(
    await base({ MAILCHIMP_API_KEY: "abc", DATA_CENTER: "us12" }),
    "https://us12.api.mailchimp.com/3.0",
  );
  assert.equal(
    await base({ MAILCHIMP_API_KEY: "abc-us9", DATA_CENTER: "us12" }),
    "https://us9.api.mailchimp.com/3.0",
    "the key's own suffix names its account's data center",
  );
  assert.equal(
    await base({ MAILCHIMP_API_KEY: "abc-us9", MAILCHIMP_BASE_URL: "http://127.0.0.1:8081/3.0/" }),
    "http://127.0.0.1:8081/3.0",
  );
  const noDc = await errors({
    env: { MAILCHIMP_API_KEY: "abc", OMETRIA_API_KEY: "o" },
    args: ["l1"],
  });
  assert.equal(noDc.length, 1);
  assert.match(noDc[0]!, /DATA_CENTER is not set/);
});

Deno.test("loadConfig() reads OMETRIA_BASE_URL and OMETRIA_ENDPOINT", async () => {
  const config = await ok({
    env: { ...KEYS, OMETRIA_BASE_URL: "http://127.0.0.1:8082/", OMETRIA_ENDPOINT: "record" },
    args: ["l1"],
  });
  assert.deepEqual(config.connections[0]!.ometria, {
    apiKey: "om-key",
    baseUrl: "http://127.0.0.1:8082",
    endpoint: "record",
  });
  const push = await ok({ env: { ...KEYS, OMETRIA_ENDPOINT: "push" }, args: ["l1"] });
  assert.equal(push.connections[0]!.ometria.endpoint, "push");
  const bad = await errors({ env: { ...KEYS, OMETRIA_ENDPOINT: "bulk" }, args: ["l1"] });
  assert.equal(bad.length, 1);
  assert.match(bad[0]!, /OMETRIA_ENDPOINT must be "push" .* or "record" .*; it is "bulk"/);
});

Deno.test("loadConfig() caps the page size at 1000 with exactly one warning", async () => {
  const big = await ok({ env: { ...KEYS, BULK_MEMBER_COUNT: "2500" }, args: ["l1"] });
  assert.equal(big.bulkMemberCount, 2500, "BULK_MEMBER_COUNT still decides when a list is due");
  assert.equal(big.pageSize, 1000);
  assert.equal(big.warnings.length, 1);
  assert.match(big.warnings[0]!, /BULK_MEMBER_COUNT=2500 .* at most 1000/);

  const exact = await ok({ env: { ...KEYS, BULK_MEMBER_COUNT: "1000" }, args: ["l1"] });
  assert.equal(exact.pageSize, 1000);
  assert.deepEqual(exact.warnings, []);
  const small = await ok({ env: { ...KEYS, BULK_MEMBER_COUNT: "10" }, args: ["l1"] });
  assert.equal(small.pageSize, 10);
  assert.deepEqual(small.warnings, []);
});

Deno.test("loadConfig() reports every problem at once", async () => {
  const found = await errors({
    env: {
      BULK_MEMBER_COUNT: "lots",
      OMETRIA_ENDPOINT: "bulk",
      MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS: "0",
    },
    args: ["l1", "not a list!"],
  });
  const expected = [
    /BULK_MEMBER_COUNT must be a whole number of at least 1; it is "lots"/,
    /OMETRIA_ENDPOINT must be/,
    /MAX_NUMBER_OF_CONCURRENT_RUNNING_THREADS must be a whole number from 1 to 1000; it is "0"/,
    /MAILCHIMP_API_KEY is not set/,
    /OMETRIA_API_KEY is not set/,
    /"not a list!" is not a Mailchimp list id/,
  ];
  for (const pattern of expected) {
    assert.ok(found.some((e) => pattern.test(e)), `${pattern} in ${JSON.stringify(found)}`);
  }
  assert.equal(found.length, expected.length);
});

Deno.test("loadConfig() names the missing key variables", async () => {
  assert.deepEqual(
    (await errors({ env: { OMETRIA_API_KEY: "o" }, args: ["l1"] })).map((e) => e.split(":")[0]),
    ["MAILCHIMP_API_KEY is not set"],
  );
  assert.deepEqual(
    (await errors({ env: { MAILCHIMP_API_KEY: "a-us1", OMETRIA_API_KEY: " " }, args: ["l1"] }))
      .map((e) => e.split(":")[0]),
    ["OMETRIA_API_KEY is not set"],
  );
  const none = await errors({ env: KEYS, args: [] });
  assert.match(none[0]!, /No lists to sync/);
});

Deno.test("loadConfig() rejects an unknown flag and a value on a switch", async () => {
  const unknown = await errors({ env: KEYS, args: ["--nope", "l1"] });
  assert.deepEqual(unknown, ["Unknown option --nope. See --help."]);
  const valued = await errors({ env: KEYS, args: ["--once=yes", "l1"] });
  assert.match(valued[0]!, /--once/);
});

Deno.test("loadConfig() never puts a key into an error message", async (t) => {
  const places: [string, Partial<ConfigSources>][] = [
    ["OMETRIA_ENDPOINT", { env: { ...KEYS, OMETRIA_ENDPOINT: SECRET }, args: ["l1"] }],
    ["LOGGING_LEVEL", { env: { ...KEYS, LOGGING_LEVEL: SECRET }, args: ["l1"] }],
    ["LOG_FORMAT", { env: { ...KEYS, LOG_FORMAT: SECRET }, args: ["l1"] }],
    ["BULK_MEMBER_COUNT", { env: { ...KEYS, BULK_MEMBER_COUNT: SECRET }, args: ["l1"] }],
    ["METRICS_PORT", { env: { ...KEYS, METRICS_PORT: SECRET }, args: ["l1"] }],
    ["MAILCHIMP_BASE_URL", { env: { ...KEYS, MAILCHIMP_BASE_URL: SECRET }, args: ["l1"] }],
    ["ALERT_WEBHOOK_URL", {
      env: { ...KEYS, ALERT_WEBHOOK_URL: `ftp://x/?token=${SECRET}` },
      args: ["l1"],
    }],
    ["a key without data center", {
      env: { MAILCHIMP_API_KEY: "SECRETKEY0123456789abcdef", OMETRIA_API_KEY: "o" },
      args: ["l1"],
    }],
    ["an env assignment as an argument", {
      env: KEYS,
      args: [`MAILCHIMP_API_KEY=${SECRET}`],
    }],
    ["an unknown flag's value", { env: KEYS, args: [`--mailchimp-api-key=${SECRET}`, "l1"] }],
    ["the connections file, unquoted", {
      env: KEYS,
      args: ["--connections", "c.json"],
      readTextFile: fileReader({
        "c.json":
          `{"connections": [{"id": "a", "list_id": "l1", "mailchimp_api_key_env": ${SECRET}}]}`,
      }),
    }],
    ["the connections file, as a variable name", {
      env: KEYS,
      args: ["--connections", "c.json"],
      readTextFile: fileReader({
        "c.json": JSON.stringify({
          connections: [{
            id: "a",
            list_id: "l1",
            mailchimp_api_key_env: SECRET,
            ometria_api_key_env: "OMETRIA_API_KEY",
          }],
        }),
      }),
    }],
    ["the connections file, as an extra field", {
      env: KEYS,
      args: ["--connections", "c.json"],
      readTextFile: fileReader({
        "c.json": JSON.stringify({
          connections: [{
            id: "a",
            list_id: "l1",
            mailchimp_api_key_env: "MAILCHIMP_API_KEY",
            ometria_api_key_env: "OMETRIA_API_KEY",
            mailchimp_api_key: SECRET,
          }],
        }),
      }),
    }],
  ];
  for (const [place, sources] of places) {
    await t.step(place, async () => {
      const found = await errors(sources);
      assert.ok(found.length > 0);
      for (const message of found) {
        assert.ok(!message.includes("SECRETKEY"), `key shown in: ${message}`);
      }
    });
  }
});

Deno.test("loadConfig() answers --help and -h", async () => {
  for (const flag of ["--help", "-h"]) {
    const result = await loadConfig({ env: {}, args: [flag] });
    assert.deepEqual(result, { ok: false, errors: [], help: true });
  }
});

Deno.test("loadConfig() reads the status and reset subcommands without keys", async () => {
  const status = await ok({ args: ["status", "--json", "--check", "l1"] });
  assert.equal(status.command, "status");
  assert.equal(status.json, true);
  assert.equal(status.check, true);
  assert.deepEqual(status.listIds, ["l1"]);

  const all = await ok({ args: ["status"] });
  assert.deepEqual(all.listIds, []);

  const reset = await ok({ args: ["reset", "l1", "l2"] });
  assert.equal(reset.command, "reset");
  assert.deepEqual(reset.listIds, ["l1", "l2"]);

  assert.match((await errors({ args: ["reset"] }))[0]!, /reset needs the list ids/);
  assert.match((await errors({ env: KEYS, args: ["--json", "l1"] }))[0]!, /--json only applies/);
  const sync = await ok({ env: KEYS, args: ["--once", "--force", "--state", "memory:", "l1"] });
  assert.deepEqual([sync.once, sync.force, sync.state], [true, true, "memory:"]);
});

const CONNECTIONS = JSON.stringify({
  connections: [
    {
      id: "uk-shop",
      list_id: "a1b2c3d4e5",
      mailchimp_api_key_env: "MAILCHIMP_KEY_UK",
      ometria_api_key_env: "OMETRIA_KEY_UK",
    },
    {
      id: "de-shop",
      list_id: "f6g7h8i9j0",
      mailchimp_api_key_env: "MAILCHIMP_KEY_DE",
      ometria_api_key_env: "OMETRIA_KEY_DE",
      threshold_minutes: 60,
      ometria_endpoint: "record",
      ometria_base_url: "http://127.0.0.1:9000/",
    },
  ],
});
const CONNECTION_KEYS = {
  MAILCHIMP_KEY_UK: "uk0123-us4",
  OMETRIA_KEY_UK: "om-uk",
  MAILCHIMP_KEY_DE: "de0123-us20",
  OMETRIA_KEY_DE: "om-de",
};

Deno.test("loadConfig() reads a connections file with keys from the named variables", async () => {
  const config = await ok({
    env: { ...CONNECTION_KEYS, OMETRIA_ENDPOINT: "push" },
    args: ["--connections", "c.json"],
    readTextFile: fileReader({ "c.json": CONNECTIONS }),
  });
  assert.deepEqual(config.connections, [
    {
      id: "uk-shop",
      listId: "a1b2c3d4e5",
      mailchimp: {
        apiKey: "uk0123-us4",
        baseUrl: "https://us4.api.mailchimp.com/3.0",
        keyName: "MAILCHIMP_KEY_UK",
      },
      ometria: {
        apiKey: "om-uk",
        baseUrl: "https://api.ometria.com",
        endpoint: "push",
        keyName: "OMETRIA_KEY_UK",
      },
      thresholdSeconds: 7200,
    },
    {
      id: "de-shop",
      listId: "f6g7h8i9j0",
      mailchimp: {
        apiKey: "de0123-us20",
        baseUrl: "https://us20.api.mailchimp.com/3.0",
        keyName: "MAILCHIMP_KEY_DE",
      },
      ometria: {
        apiKey: "om-de",
        baseUrl: "http://127.0.0.1:9000",
        endpoint: "record",
        keyName: "OMETRIA_KEY_DE",
      },
      thresholdSeconds: 3600,
    },
  ]);

  const one = await ok({
    env: CONNECTION_KEYS,
    args: ["--connections", "c.json", "de-shop"],
    readTextFile: fileReader({ "c.json": CONNECTIONS }),
  });
  assert.deepEqual(one.connections.map((c) => c.id), ["de-shop"]);
});

Deno.test("loadConfig() names the variable a connection's key is missing from", async () => {
  const found = await errors({
    env: { ...CONNECTION_KEYS, OMETRIA_KEY_DE: "" },
    args: ["--connections", "c.json"],
    readTextFile: fileReader({ "c.json": CONNECTIONS }),
  });
  assert.equal(found.length, 1);
  assert.match(found[0]!, /connections\.1 \(de-shop\).*OMETRIA_KEY_DE .* is not set/);
});

Deno.test("loadConfig() rejects a connections file with duplicate ids", async () => {
  const entry = {
    id: "shop",
    list_id: "a1b2c3d4e5",
    mailchimp_api_key_env: "MAILCHIMP_KEY_UK",
    ometria_api_key_env: "OMETRIA_KEY_UK",
  };
  const found = await errors({
    env: CONNECTION_KEYS,
    args: ["--connections", "c.json"],
    readTextFile: fileReader({
      "c.json": JSON.stringify({ connections: [entry, { ...entry, list_id: "other" }] }),
    }),
  });
  assert.deepEqual(found, [
    `Connections file c.json, connections.1 (shop): the id "shop" is used twice.`,
  ]);
});

Deno.test("loadConfig() rejects a connections file that is not JSON, unreadable or has unknown fields", async () => {
  const bad = await errors({
    env: CONNECTION_KEYS,
    args: ["--connections", "c.json"],
    readTextFile: fileReader({ "c.json": `{"connections": [` }),
  });
  assert.equal(bad.length, 1);
  assert.match(bad[0]!, /^The connections file c\.json is not valid JSON: /);

  const missing = await errors({
    env: CONNECTION_KEYS,
    args: ["--connections", "gone.json"],
    readTextFile: fileReader({}),
  });
  assert.match(missing[0]!, /^Cannot read the connections file gone\.json: /);

  const unknown = await errors({
    env: CONNECTION_KEYS,
    args: ["--connections", "c.json"],
    readTextFile: fileReader({
      "c.json": JSON.stringify({
        connections: [{
          id: "uk",
          list_id: "a1b2c3d4e5",
          mailchimp_api_key_env: "MAILCHIMP_KEY_UK",
          ometria_api_key_env: "OMETRIA_KEY_UK",
          thresold_minutes: 60,
        }],
        version: 2,
      }),
    }),
  });
  assert.ok(
    unknown.some((e) => /"thresold_minutes"\n\s*→ at connections\[0\]/.test(e)),
    unknown.join(),
  );
  assert.ok(unknown.some((e) => /Unrecognized key: "version"/.test(e)), unknown.join());
});

Deno.test("loadConfig() derives the cron schedule from POLLING_TIME_IN_SECONDS or SYNC_SCHEDULE", async (t) => {
  const cases: [string, string, number][] = [
    ["60", "* * * * *", 0],
    ["300", "*/5 * * * *", 0],
    ["90", "*/2 * * * *", 1],
    ["20", "* * * * *", 1],
    ["3600", "0 * * * *", 0],
    ["7200", "0 */2 * * *", 0],
    ["5400", "0 */2 * * *", 1],
    ["86400", "0 0 * * *", 0],
  ];
  for (const [seconds, schedule, warnings] of cases) {
    await t.step(`${seconds} s → ${schedule}`, async () => {
      const config = await ok({
        env: { ...KEYS, BULK_MEMBER_COUNT: "100", POLLING_TIME_IN_SECONDS: seconds },
        args: ["l1"],
      });
      assert.equal(config.schedule, schedule);
      assert.equal(config.pollingSeconds, Number(seconds));
      assert.equal(config.warnings.length, warnings, config.warnings.join());
      // The daemon hands the schedule to Deno.cron, which throws for one it cannot run.
      const stop = new AbortController();
      const registered = Deno.cron(`schedule_${seconds}`, config.schedule, {
        signal: stop.signal,
      }, () => {});
      stop.abort();
      await registered;
    });
  }
  const cron = await ok({
    env: {
      ...KEYS,
      BULK_MEMBER_COUNT: "100",
      POLLING_TIME_IN_SECONDS: "90",
      SYNC_SCHEDULE: "0 3 * * *",
    },
    args: ["l1"],
  });
  assert.equal(cron.schedule, "0 3 * * *");
  assert.deepEqual(cron.warnings, []);
});

Deno.test("scheduleFromEnv() and deployArgs() configure a Deno Deploy tick from the environment", async () => {
  assert.equal(scheduleFromEnv({}), "* * * * *");
  assert.equal(scheduleFromEnv({ POLLING_TIME_IN_SECONDS: "600" }), "*/10 * * * *");
  assert.equal(scheduleFromEnv({ SYNC_SCHEDULE: "15 * * * *" }), "15 * * * *");
  const args = deployArgs({ SYNC_LIST_IDS: "abc123, def456 ghi789" });
  assert.deepEqual(args, ["--once", "--state", "kv:", "abc123", "def456", "ghi789"]);
  const loaded = await loadConfig({
    env: { MAILCHIMP_API_KEY: "k-us1", OMETRIA_API_KEY: "o" },
    args,
  });
  assert.ok(loaded.ok);
  assert.equal(loaded.config.state, "kv:");
  assert.deepEqual(loaded.config.connections.map((c) => c.listId), ["abc123", "def456", "ghi789"]);
});

Deno.test("loadConfig() refuses a SYNC_SCHEDULE cron cannot run and spaces ticks evenly", async () => {
  const bad = await loadConfig({ env: { ...KEYS, SYNC_SCHEDULE: "every minute" }, args: ["abc"] });
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.errors.join() : "", /SYNC_SCHEDULE must be a five-field cron/);
  const seven = await ok({ env: { ...KEYS, POLLING_TIME_IN_SECONDS: "420" }, args: ["abc"] });
  assert.equal(seven.schedule, "*/6 * * * *", "7 minutes would tick unevenly across the hour");
  assert.equal(seven.warnings.length, 1);
});

Deno.test("loadConfig() refuses keys with control characters or inner spaces, naming only the variable", async (t) => {
  const bad = [
    ["a line feed", "0123456789abcdef\nSECRETKEY-us9"],
    ["a carriage return", "0123456789abcdef\rSECRETKEY-us9"],
    ["a tab", "0123456789abcdef\tSECRETKEY-us9"],
    ["a space", "0123456789abcdef SECRETKEY-us9"],
  ];
  for (const [what, key] of bad) {
    await t.step(`MAILCHIMP_API_KEY with ${what}`, async () => {
      const found = await errors({ env: { ...KEYS, MAILCHIMP_API_KEY: key! }, args: ["l1"] });
      assert.equal(found.length, 1, found.join(" | "));
      assert.match(found[0]!, /^MAILCHIMP_API_KEY contains/);
      assert.ok(!found[0]!.includes("SECRETKEY"));
    });
    await t.step(`OMETRIA_API_KEY with ${what}`, async () => {
      const found = await errors({ env: { ...KEYS, OMETRIA_API_KEY: key! }, args: ["l1"] });
      assert.match(found.join(), /OMETRIA_API_KEY contains/);
      assert.ok(!found.join().includes("SECRETKEY"));
    });
  }
  await t.step("a key in a variable the connections file names", async () => {
    const found = await errors({
      env: { ...KEYS, MC_UK: "abc\r\nSECRETKEY-us9" },
      args: ["--connections", "c.json"],
      readTextFile: fileReader({
        "c.json": JSON.stringify({
          connections: [{
            id: "uk",
            list_id: "l1",
            mailchimp_api_key_env: "MC_UK",
            ometria_api_key_env: "OMETRIA_API_KEY",
          }],
        }),
      }),
    });
    assert.equal(found.length, 1, found.join(" | "));
    assert.match(found[0]!, /connections\.0 \(uk\): MC_UK contains a line break/);
    assert.ok(!found[0]!.includes("SECRETKEY"));
  });
  await t.step("surrounding whitespace (a file's newline) is trimmed, not refused", async () => {
    const config = await ok({ env: { ...KEYS, OMETRIA_API_KEY: "om-key\n" }, args: ["l1"] });
    assert.equal(config.connections[0]!.ometria.apiKey, "om-key");
  });
});

Deno.test("loadConfig() validates SYNC_SCHEDULE ranges, not only its shape", async (t) => {
  for (const schedule of ["99 * * * *", "* 24 * * *", "*/0 * * * *", "0 0 32 * *", "0 0 * 13 *"]) {
    await t.step(schedule, async () => {
      const found = await errors({ env: { ...KEYS, SYNC_SCHEDULE: schedule }, args: ["l1"] });
      assert.equal(found.length, 1, found.join(" | "));
      assert.match(found[0]!, /^SYNC_SCHEDULE "[^"]+" is not a valid cron expression/);
    });
  }
  const fine = await ok({ env: { ...KEYS, SYNC_SCHEDULE: " 5,35 */2 1-15 * 1-5 " }, args: ["l1"] });
  assert.equal(fine.schedule, "5,35 */2 1-15 * 1-5");
});

Deno.test("loadConfig() reports a flag error together with the configuration errors", async () => {
  const found = await errors({
    env: { ...KEYS, BULK_MEMBER_COUNT: "lots", SYNC_SCHEDULE: "99 * * * *" },
    args: ["--onse", "l1"],
  });
  assert.equal(found.length, 3, found.join(" | "));
  assert.match(found[0]!, /Unknown option --onse: did you mean --once\?/);
  assert.ok(found.some((e) => /BULK_MEMBER_COUNT/.test(e)));
  assert.ok(found.some((e) => /SYNC_SCHEDULE/.test(e)));
});

Deno.test("loadConfig() suggests the nearest flag for a misspelling", async (t) => {
  const cases: [string, RegExp][] = [
    ["--onse", /did you mean --once\?/],
    ["--forse", /did you mean --force\?/],
    ["--conections=c.json", /did you mean --connections\?/],
    ["--stat", /did you mean --state\?/],
    ["--xyzzy", /^Unknown option --xyzzy\. See --help\.$/],
  ];
  for (const [flag, pattern] of cases) {
    await t.step(flag, async () => {
      const found = await errors({ env: KEYS, args: [flag, "l1"] });
      assert.match(found[0]!, pattern);
    });
  }
  const missing = await errors({ env: KEYS, args: ["l1", "--state"] });
  assert.match(missing.join(), /--state needs a value/);
});

Deno.test("loadConfig() reads OMETRIA_BATCH_SIZE and RECONCILE_EVERY_HOURS", async () => {
  const defaults = await ok({ env: KEYS, args: ["l1"] });
  assert.equal(defaults.ometriaBatchSize, 100);
  assert.equal(defaults.reconcileEveryHours, 24);
  const set = await ok({
    env: { ...KEYS, OMETRIA_BATCH_SIZE: "25", RECONCILE_EVERY_HOURS: "0.5" },
    args: ["l1"],
  });
  assert.equal(set.ometriaBatchSize, 25);
  assert.equal(set.reconcileEveryHours, 0.5);
  const found = await errors({
    env: { ...KEYS, OMETRIA_BATCH_SIZE: "101", RECONCILE_EVERY_HOURS: "0" },
    args: ["l1"],
  });
  assert.deepEqual(found.map((e) => e.split(" must")[0]), [
    "OMETRIA_BATCH_SIZE",
    "RECONCILE_EVERY_HOURS",
  ]);
  assert.match(found[0]!, /from 1 to 100; it is "101"/);
  assert.match(found[1]!, /above 0/);
});

Deno.test("loadConfig() reads reconcile like sync: keys, lists and options", async () => {
  const config = await ok({
    env: KEYS,
    args: ["reconcile", "--once", "--state", "s.json", "l1", "l2"],
  });
  assert.equal(config.command, "reconcile");
  assert.equal(config.state, "s.json");
  assert.deepEqual(config.connections.map((c) => c.listId), ["l1", "l2"]);
  const found = await errors({ env: {}, args: ["reconcile"] });
  assert.match(found.join(), /No lists to reconcile/);
  const noKeys = await errors({ env: {}, args: ["reconcile", "l1"] });
  assert.match(noKeys.join(), /MAILCHIMP_API_KEY is not set/);
});

Deno.test("loadConfig() reads simulate's ports", async () => {
  const config = await ok({
    args: ["simulate", "--mailchimp-port", "9001", "--ometria-port=9002"],
  });
  assert.equal(config.mailchimpPort, 9001);
  assert.equal(config.ometriaPort, 9002);
  const defaults = await ok({ args: ["simulate"] });
  assert.deepEqual([defaults.mailchimpPort, defaults.ometriaPort], [8081, 8082]);
  const found = await errors({ args: ["simulate", "--mailchimp-port", "http"] });
  assert.match(found[0]!, /--mailchimp-port must be a port number/);
  const elsewhere = await errors({ env: KEYS, args: ["--ometria-port", "1", "l1"] });
  assert.match(elsewhere[0]!, /only apply to simulate/);
});

Deno.test("loadConfig() accepts numbers only in plain decimal digits, and in range", async (t) => {
  for (
    const [name, value, pattern] of [
      ["METRICS_PORT", "0x10", /METRICS_PORT must be a port number .*not written in plain decimal/],
      ["WEBHOOK_PORT", "1e3", /WEBHOOK_PORT must be a port number .*not written in plain decimal/],
      ["BULK_MEMBER_COUNT", "0b11", /BULK_MEMBER_COUNT must be a whole number .*plain decimal/],
      ["POLLING_TIME_IN_SECONDS", "6e1", /POLLING_TIME_IN_SECONDS must be a whole number/],
      ["RECONCILE_EVERY_HOURS", "1e308", /RECONCILE_EVERY_HOURS must be a number above 0 and at/],
      ["RECONCILE_EVERY_HOURS", "Infinity", /RECONCILE_EVERY_HOURS must be a number above 0/],
      ["RECONCILE_EVERY_HOURS", "9000", /RECONCILE_EVERY_HOURS must be a number above 0 and at/],
    ] as const
  ) {
    await t.step(`${name}=${value}`, async () => {
      const found = await errors({ env: { ...KEYS, [name]: value }, args: ["l1"] });
      assert.ok(found.some((e) => pattern.test(e)), JSON.stringify(found));
    });
  }
  const good = await ok({
    env: {
      ...KEYS,
      METRICS_PORT: " 9464 ",
      RECONCILE_EVERY_HOURS: "0.5",
      BULK_MEMBER_COUNT: "010",
    },
    args: ["l1"],
  });
  assert.deepEqual([good.metricsPort, good.reconcileEveryHours, good.bulkMemberCount], [
    9464,
    0.5,
    10,
  ]);
  const sim = await errors({ args: ["simulate", "--mailchimp-port", "0x1f90"] });
  assert.ok(sim.some((e) => /--mailchimp-port must be a port number/.test(e)), JSON.stringify(sim));
});

Deno.test("loadConfig() refuses a key with a character past ASCII, naming the variable", async () => {
  for (const key of ["om-kéy", "om-key\u2019", "om-ключ"]) {
    const found = await errors({ env: { ...KEYS, OMETRIA_API_KEY: key }, args: ["l1"] });
    assert.deepEqual(found.length, 1, JSON.stringify(found));
    assert.match(found[0]!, /^OMETRIA_API_KEY contains a character that is not plain ASCII/);
    assert.ok(!found[0]!.includes(key));
  }
  const file = await errors({
    env: { ...CONNECTION_KEYS, OMETRIA_KEY_DE: "om-dé" },
    args: ["--connections", "c.json"],
    readTextFile: fileReader({ "c.json": CONNECTIONS }),
  });
  assert.ok(file.some((e) => /OMETRIA_KEY_DE contains a character that is not plain/.test(e)));
});

/** The sources of a config whose connections file holds one entry, `fields` changed. */
function oneConnection(fields: Record<string, unknown>): Partial<ConfigSources> {
  const entry = {
    id: "uk-shop",
    list_id: "a1b2c3d4e5",
    mailchimp_api_key_env: "MAILCHIMP_KEY_UK",
    ometria_api_key_env: "OMETRIA_KEY_UK",
    ...fields,
  };
  return {
    env: CONNECTION_KEYS,
    args: ["--connections", "c.json"],
    readTextFile: fileReader({ "c.json": JSON.stringify({ connections: [entry] }) }),
  };
}

Deno.test("loadConfig() refuses '.' and '..' as connection ids: their webhook URL resolves away", async () => {
  for (const id of [".", ".."]) {
    const found = await errors(oneConnection({ id }));
    assert.ok(found.some((e) => /must not be '\.' or '\.\.'/.test(e)), JSON.stringify(found));
  }
  // Dots inside an id stay fine.
  const dotted = await ok(oneConnection({ id: "shop.uk..." }));
  assert.equal(dotted.connections[0]!.id, "shop.uk...");
});

Deno.test("loadConfig() refuses a key given where a list or connection id belongs, never showing it", async (t) => {
  await t.step("a Mailchimp key as a list id, for sync, status and reset", async () => {
    // Another account's key: not a configured secret, so known by its shape alone.
    const other = "fedcba9876543210fedcba9876543210-us7";
    for (const command of [[], ["status"], ["reset"]]) {
      const found = await errors({ env: KEYS, args: [...command, "l1", other] });
      assert.equal(found.length, 1, JSON.stringify(found));
      assert.match(found[0]!, /^Argument 2 of the ids is a Mailchimp API key, not a list id/);
      assert.ok(!found[0]!.includes(other.slice(0, 12)));
    }
  });
  await t.step("the value of a configured secret, whatever its shape", async () => {
    const found = await errors({
      env: { ...KEYS, OMETRIA_API_KEY: "plainalnumkey" },
      args: ["plainalnumkey"],
    });
    assert.match(found[0]!, /^Argument 1 of the ids is the value of OMETRIA_API_KEY/);
  });
  await t.step("in a connections file, as a list id or an id", async () => {
    for (const field of ["list_id", "id"]) {
      const found = await errors(oneConnection({ [field]: CONNECTION_KEYS.OMETRIA_KEY_UK }));
      assert.equal(found.length, 1, JSON.stringify(found));
      assert.match(
        found[0]!,
        new RegExp(`its ${field} is the value of OMETRIA_KEY_UK \\(not shown\\)`),
      );
      assert.ok(!found[0]!.includes("om-uk"), found[0]);
    }
  });
});

Deno.test("loadConfig() reads SYNC_ON_BRANCHES as on or off, and refuses anything else", async (t) => {
  for (const [value, on] of [["1", true], ["true", true], ["0", false], ["", false]] as const) {
    await t.step(JSON.stringify(value), async () => {
      const config = await ok({ env: { ...KEYS, SYNC_ON_BRANCHES: value }, args: ["list1"] });
      assert.equal(config.syncOnBranches, on);
    });
  }
  assert.equal((await ok({ env: KEYS, args: ["list1"] })).syncOnBranches, false);
  const problems = await errors({ env: { ...KEYS, SYNC_ON_BRANCHES: "staging" }, args: ["l1"] });
  assert.deepEqual(problems, [
    'SYNC_ON_BRANCHES must be 1 (Deno Deploy: tick on branch and preview deployments too, not only in production) or 0; it is "staging".',
  ]);
});

Deno.test("loadConfig() warns of a public http:// webhooks --url, not of https or a private address", async (t) => {
  const env = { ...KEYS, MAILCHIMP_WEBHOOK_SECRET: "a-webhook-secret-0123456789" };
  for (
    const [url, warned] of [
      ["http://sync.example.com", true],
      ["http://203.0.113.7:8090", true],
      ["https://sync.example.com", false],
      ["http://127.0.0.1:8090", false],
      ["http://localhost:8090", false],
      ["http://192.168.1.20", false],
      ["http://10.0.0.5", false],
      ["http://[::1]:8090", false],
    ] as const
  ) {
    await t.step(url, async () => {
      const config = await ok({ env, args: ["webhooks", "register", "list1", "--url", url] });
      const warnings = config.warnings.filter((w) => w.includes("in clear"));
      assert.equal(warnings.length, warned ? 1 : 0, warnings.join("\n"));
    });
  }
});

Deno.test("loadConfig() reads each list's webhook signing secret, and needs it only once registered", async (t) => {
  const file = JSON.stringify({
    connections: [{
      id: "uk-shop",
      list_id: "a1b2c3d4e5",
      mailchimp_api_key_env: "MAILCHIMP_KEY_UK",
      ometria_api_key_env: "OMETRIA_KEY_UK",
      webhook_signing_secret_env: "SIGNING_UK",
    }],
  });
  const env = { ...CONNECTION_KEYS, MAILCHIMP_WEBHOOK_SECRET: "url-secret-0123456789" };
  const args = ["--connections", "c.json"];
  const readTextFile = fileReader({ "c.json": file });
  await t.step("read from the variable the entry names, and redacted like a key", async () => {
    const config = await ok({
      env: { ...env, SIGNING_UK: "whsec-abc/123+XYZ=" },
      args,
      readTextFile,
    });
    assert.equal(config.connections[0]?.webhookSigningSecret, "whsec-abc/123+XYZ=");
    assert.equal(config.connections[0]?.webhookSigningSecretName, "SIGNING_UK");
    const { configSecrets } = await import("../../lib/config/config.ts");
    assert.ok(configSecrets(config).includes("whsec-abc/123+XYZ="));
  });
  await t.step(
    "unset: an error for the daemon, not for webhooks register, which prints it",
    async () => {
      const found = await errors({ env, args, readTextFile });
      assert.match(found.join("\n"), /SIGNING_UK \(its webhook signing secret\) is not set/);
      const register = await ok({
        env,
        args: ["webhooks", "register", "--url", "https://sync.example.com", ...args],
        readTextFile,
      });
      assert.equal(register.connections[0]?.webhookSigningSecret, undefined);
      assert.equal(register.connections[0]?.webhookSigningSecretName, "SIGNING_UK");
    },
  );
  await t.step(
    "MAILCHIMP_WEBHOOK_SIGNING_SECRET fits one list on the command line, not two",
    async () => {
      const one = await ok({
        env: { ...KEYS, MAILCHIMP_WEBHOOK_SIGNING_SECRET: "whsec-0123456789" },
        args: ["a1b2c3d4e5"],
      });
      assert.equal(one.connections[0]?.webhookSigningSecret, "whsec-0123456789");
      const two = await errors({
        env: { ...KEYS, MAILCHIMP_WEBHOOK_SIGNING_SECRET: "whsec-0123456789" },
        args: ["a1b2c3d4e5", "f6g7h8i9j0"],
      });
      assert.match(two.join("\n"), /each list's webhook has its own/);
      assert.doesNotMatch(two.join("\n"), /whsec-0123456789/);
    },
  );
});
