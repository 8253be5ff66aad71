import assert from "node:assert/strict";
import { folderOf, permissionAdvice } from "../../lib/config/permission_advice.ts";

Deno.test("folderOf() gives the folder Deno's flags must grant for a file", async (t) => {
  for (
    const [path, folder] of [
      ["sync_jobs.json", "."],
      ["./sync_jobs.json", "."],
      ["/srv/sync/sync_jobs.json", "/srv/sync"],
      ["/sync_jobs.json", "/"],
      ["data/state.kv", "data"],
      ["C:\\sync\\sync_jobs.json", "C:\\sync"],
    ]
  ) {
    await t.step(path!, () => assert.equal(folderOf(path!), folder));
  }
});

Deno.test("permissionAdvice() names the flags, SYNC_DIR and the deno run line, quoting odd paths", () => {
  const text = permissionAdvice({
    what: "the state file /srv/my sync/s.json",
    file: "/srv/my sync/s.json",
    missing: ["write"],
    syncDir: "/srv/other",
  });
  assert.match(text, /may not write \/srv\/my sync \(Deno's --allow-write does not include it\)/);
  assert.match(text, /SYNC_DIR=\/srv\/other is set, and does not include it/);
  assert.match(text, /`SYNC_DIR='\/srv\/my sync' deno task sync …`/);
  assert.match(text, /--allow-read=\.,'\/srv\/my sync' --allow-write=\.,'\/srv\/my sync' main\.ts/);
});
