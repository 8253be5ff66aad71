/** The advice a user gets when the machine, not the program, stopped a write. */
import assert from "node:assert/strict";
import { storageFailureAdvice } from "../../lib/app/commands/shared.ts";
import { fullDiskUnavailable, withFullDisk } from "../_helpers/tiny_fs.ts";

const noTmpfs = await fullDiskUnavailable();

Deno.test({
  name: `storageFailureAdvice() words a full disk as the machine's problem, naming where${
    noTmpfs === undefined ? "" : ` (skipped: cannot mount a tmpfs here: ${noTmpfs})`
  }`,
  ignore: noTmpfs !== undefined,
  async fn() {
    await withFullDisk(async (dir) => {
      // The kernel's own ENOSPC, as Deno reports it.
      const error = await Deno.writeTextFile(`${dir}/x`, "x").then(
        () => assert.fail("a full disk took a write"),
        (e: unknown) => e,
      );
      assert.match(
        storageFailureAdvice(error, "./sync_jobs.json") ?? "",
        new RegExp(
          "^Cannot write under ./sync_jobs.json: No space left on device \\(os error 28\\).*: " +
            "the disk is full. The last saved state is kept and the next run resumes from it. " +
            "Free space on that disk or fix it \\(or pass another --state\\).$",
        ),
      );
    });
  },
});

Deno.test("storageFailureAdvice() leaves every other error to be reported as it is", () => {
  assert.equal(storageFailureAdvice(new Error("boom"), "x"), undefined);
  assert.equal(storageFailureAdvice(new TypeError("x is not a function"), "x"), undefined);
  assert.equal(storageFailureAdvice("a string", "x"), undefined);
});
