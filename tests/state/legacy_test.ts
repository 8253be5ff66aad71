import assert from "node:assert/strict";
import { FakeClock } from "../_helpers/fake_clock.ts";
import { FileStore } from "../../lib/state/file_store.ts";
import { LEGACY_FAILED_MESSAGE, parseLegacyTime } from "../../lib/state/legacy.ts";
import { put, renderRecord, withLogger, withTempDir } from "./_helpers.ts";

// The exact shape the original tool's SyncJobEncoder writes (json.dump(..., indent=4)).
const LEGACY_FILE = `{
    "1a2d7ebf82": {
        "job_details": {
            "list_id": "1a2d7ebf82",
            "last_sync_date_time": "2023-09-21T04:12:19.577413"
        },
        "status": 2,
        "user readable status": "PARTIALLY_SYNCED"
    },
    "bbbbbbbbbb": {
        "job_details": {
            "list_id": "bbbbbbbbbb",
            "last_sync_date_time": "2023-09-20 10:00:00"
        },
        "status": 3,
        "user readable status": "ERROR"
    },
    "cccccccccc": {
        "job_details": {
            "list_id": "cccccccccc",
            "last_sync_date_time": "2023-09-21T04:00:00"
        },
        "status": 1,
        "user readable status": "RUNNING"
    },
    "dddddddddd": {
        "job_details": {
            "list_id": "dddddddddd",
            "last_sync_date_time": null
        },
        "status": 4,
        "user readable status": "UNDEFINED"
    }
}`;

// The original tool ran in Central European Summer Time.
const CEST = () => 120;

Deno.test("parseLegacyTime reads the original tool's naive local times", () => {
  assert.equal(
    parseLegacyTime("2023-09-21T04:12:19.577413", CEST),
    Date.UTC(2023, 8, 21, 2, 12, 19, 577),
  );
  assert.equal(parseLegacyTime("2023-09-21 04:12:19", CEST), Date.UTC(2023, 8, 21, 2, 12, 19));
  assert.equal(parseLegacyTime("2023-09-21T04:12", () => 0), Date.UTC(2023, 8, 21, 4, 12));
  assert.equal(parseLegacyTime("2023-09-21T04:12:19Z", CEST), Date.UTC(2023, 8, 21, 4, 12, 19));
  assert.equal(
    parseLegacyTime("2023-09-21T04:12:19.5-05:00", CEST),
    Date.UTC(2023, 8, 21, 9, 12, 19, 500),
  );
  assert.equal(parseLegacyTime("2023-02-30T01:00:00", CEST), undefined);
  assert.equal(parseLegacyTime("21/09/2023 04:12", CEST), undefined);
});

Deno.test("parseLegacyTime uses this process's time zone by default", () => {
  assert.equal(
    parseLegacyTime("2023-09-21T04:12:19.577413"),
    new Date(2023, 8, 21, 4, 12, 19, 577).getTime(),
  );
  assert.equal(parseLegacyTime("2024-01-15 23:59:59"), new Date(2024, 0, 15, 23, 59, 59).getTime());
});

Deno.test("FileStore migrates the original tool's sync_jobs.json with a backup", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    await Deno.writeTextFile(path, LEGACY_FILE);
    const clock = new FakeClock();
    const store = await FileStore.open(path, { clock, legacyTimeZoneOffsetMinutes: CEST });

    const ok = await store.get("1a2d7ebf82");
    assert.ok(ok);
    assert.equal(ok.list_id, "1a2d7ebf82");
    assert.equal(ok.status, "ok");
    // 04:12:19 CEST is 02:12:19 UTC; the watermark goes back 60 minutes, freshness does not.
    assert.equal(ok.watermark, "2023-09-21T01:12:19+00:00");
    assert.equal(ok.fresh_as_of, "2023-09-21T02:12:19+00:00");
    assert.equal(ok.imported_from, path);
    assert.equal(ok.last_error, null);
    assert.equal(ok.run, null);

    const failed = await store.get("bbbbbbbbbb");
    assert.equal(failed?.status, "failed");
    assert.equal(failed?.last_error, LEGACY_FAILED_MESSAGE);
    assert.equal(failed?.watermark, "2023-09-20T07:00:00+00:00");
    assert.equal(failed?.fresh_as_of, "2023-09-20T08:00:00+00:00");

    const running = await store.get("cccccccccc");
    assert.equal(running?.status, "ok");
    assert.equal(running?.watermark, "2023-09-21T01:00:00+00:00");

    const never = await store.get("dddddddddd");
    assert.equal(never?.status, "never");
    assert.equal(never?.watermark, null);
    assert.equal(never?.fresh_as_of, null);

    // Nothing is written, not even the backup, before the first write.
    await assert.rejects(Deno.stat(`${path}.bak`), Deno.errors.NotFound);
    assert.equal(await Deno.readTextFile(path), LEGACY_FILE);

    await store.close();
    assert.equal(await Deno.readTextFile(`${path}.bak`), LEGACY_FILE);
    const document = JSON.parse(await Deno.readTextFile(path));
    assert.equal(document.version, 1);
    assert.equal(document.connections["1a2d7ebf82"].watermark, "2023-09-21T01:12:19+00:00");

    // Opened again it is an ordinary document: no second migration, no second backup.
    const again = await FileStore.open(path, { clock });
    assert.deepEqual(await again.get("1a2d7ebf82"), ok);
    await put(again, { ...ok, status: "failed" });
    await again.close();
    await assert.rejects(Deno.stat(`${path}.bak.1`), Deno.errors.NotFound);
  });
});

Deno.test("FileStore migration never overwrites an existing backup", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    await Deno.writeTextFile(path, LEGACY_FILE);
    await Deno.writeTextFile(`${path}.bak`, "older backup");
    await Deno.writeTextFile(`${path}.bak.1`, "even older backup");
    const store = await FileStore.open(path, {
      clock: new FakeClock(),
      legacyMarginMinutes: 10,
      legacyTimeZoneOffsetMinutes: () => 0,
    });
    assert.equal((await store.get("1a2d7ebf82"))?.watermark, "2023-09-21T04:02:19+00:00");
    await store.flush();
    assert.equal(await Deno.readTextFile(`${path}.bak`), "older backup");
    assert.equal(await Deno.readTextFile(`${path}.bak.1`), "even older backup");
    assert.equal(await Deno.readTextFile(`${path}.bak.2`), LEGACY_FILE);
    await store.close();
  });
});

Deno.test("FileStore says which field of a damaged original-tool file is wrong", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sync_jobs.json`;
    const text = JSON.stringify({
      "1a2d7ebf82": { job_details: { last_sync_date_time: "yesterday" }, status: 9 },
    });
    await Deno.writeTextFile(path, text);
    const error = await FileStore.open(path, { clock: new FakeClock() }).then(
      () => assert.fail("a damaged file was opened"),
      (e: unknown) => e as Error,
    );
    assert.equal(error.name, "StateError");
    assert.match(error.message, /original tool's file/);
    assert.match(error.message, /1a2d7ebf82\.job_details\.last_sync_date_time/);
    assert.match(error.message, /1a2d7ebf82\.status/);
    assert.equal(await Deno.readTextFile(path), text);
    await assert.rejects(Deno.stat(`${path}.bak`), Deno.errors.NotFound);
  });
});

Deno.test("FileStore logs a warning when it imports the original tool's file", async () => {
  await withLogger(async (logger, records) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/sync_jobs.json`;
      await Deno.writeTextFile(path, LEGACY_FILE);
      const store = await FileStore.open(path, { clock: new FakeClock(), logger });
      await store.close();
      const warning = records.find((r) => r.level === "warning");
      assert.ok(warning);
      assert.match(renderRecord(warning), /Importing 4 connection\(s\) from the original tool/);
      assert.ok(records.some((r) => /Saved the original tool's state file/.test(renderRecord(r))));
    });
  });
});
