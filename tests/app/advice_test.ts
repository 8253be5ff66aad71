/** The advice a user gets when the machine, not the program, stopped a write. */
import assert from "node:assert/strict";
import { storageFailureAdvice } from "../../lib/app/commands/shared.ts";

Deno.test("storageFailureAdvice() words a full disk as the machine's problem, naming where", async () => {
  // /dev/full answers a write with the same ENOSPC a full disk gives.
  const error = await Deno.open("/dev/full", { write: true }).then(async (file) => {
    try {
      await file.write(new Uint8Array(8));
    } finally {
      file.close();
    }
  }).then(() => assert.fail("/dev/full took a write"), (e: unknown) => e);
  assert.equal(
    storageFailureAdvice(error, "./sync_jobs.json"),
    "Cannot write under ./sync_jobs.json: No space left on device (os error 28): the disk is " +
      "full. The last saved state is kept and the next run resumes from it. Free space on " +
      "that disk or fix it (or pass another --state).",
  );
  assert.equal(storageFailureAdvice(new Error("boom"), "x"), undefined);
  assert.equal(storageFailureAdvice(new TypeError("x is not a function"), "x"), undefined);
});
