import assert from "node:assert/strict";
import { stateVolumeProblem } from "../../lib/app/state_volume.ts";

Deno.test("stateVolumeProblem() accepts a folder on another device than /, and refuses the root's", () => {
  // Docker's overlay root is an anonymous device (0:52); a volume is the host's disk (8:1).
  const root = 52;
  assert.equal(
    stateVolumeProblem({ folder: "/app", folderDevice: 2049, rootDevice: root }),
    undefined,
  );
  const problem = stateVolumeProblem({ folder: "/app", folderDevice: root, rootDevice: root });
  assert.match(problem ?? "", /The state folder \/app is not on a mounted volume/);
  assert.match(problem ?? "", /docker run -v sync-data:\/app /);
  assert.match(problem ?? "", /-e SYNC_REQUIRE_STATE_VOLUME=0/);
});
