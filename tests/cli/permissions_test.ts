/**
 * `deno task sync` as users type it, with files outside the repository's folder (issue 18):
 * it never waits at a permission prompt, names the missing permission with the flag that
 * grants it, and SYNC_DIR widens what it may use. These run real subprocesses (one of them
 * on a terminal of its own, where Deno would prompt), so they wait in real time.
 */
import assert from "node:assert/strict";
import { collectionFor } from "../../lib/mapping/contact.ts";
import { compareCopies } from "../../lib/sim/compare.ts";
import { runTask } from "../_helpers/cli.ts";
import { startCliWorld } from "../_helpers/cli_world.ts";

const LIST = "perms00001";

async function world() {
  const w = await startCliWorld({ prefix: "permissions_test_" });
  w.mailchimp.addList(LIST, { members: 40, seed: 5, lastChangedTo: Date.now() - 600_000 });
  return w;
}

Deno.test("deno task sync with --state elsewhere exits 2 at once on a terminal, naming the flags and SYNC_DIR", async () => {
  const w = await world();
  try {
    const r = await runTask(["sync", "--once", "--state", w.state, LIST], w.env, {
      wrapper: "pty",
      timeoutMs: 20_000,
    });
    // On the terminal, stdout is everything the process wrote.
    assert.doesNotMatch(r.stdout, /Deno requests/, "no permission prompt");
    assert.ok(!r.timedOut, `it did not wait at a prompt:\n${r.stdout}`);
    assert.equal(r.code, 2, r.stdout);
    const text = r.stdout.replaceAll("\r\n", "\n").replaceAll(/\s+/g, " ");
    assert.match(text, new RegExp(`may not read or write ${w.dir} `));
    assert.match(text, /--allow-read and --allow-write do not include it/);
    assert.match(text, new RegExp(`SYNC_DIR=${w.dir} deno task sync`));
    assert.match(
      text,
      new RegExp(`--allow-read=\\.,${w.dir} --allow-write=\\.,${w.dir} main\\.ts`),
    );
    assert.doesNotMatch(text, /make the folder writable/, "not blamed on the folder's owner");
    assert.equal(w.mailchimp.stats.requests, 0, "nothing ran");
  } finally {
    await w.close();
  }
});

Deno.test("SYNC_DIR lets deno task sync keep its state and read its connections file there", async () => {
  const w = await world();
  try {
    const connections = `${w.dir}/connections.json`;
    await Deno.writeTextFile(
      connections,
      JSON.stringify({
        connections: [{
          id: "shop",
          list_id: LIST,
          mailchimp_api_key_env: "MAILCHIMP_API_KEY",
          ometria_api_key_env: "OMETRIA_API_KEY",
        }],
      }),
    );
    const args = ["sync", "--once", "--state", w.state, "--connections", connections];
    const refused = await runTask(args, w.env);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(
      refused.stderr,
      new RegExp(`connections file ${connections}: this process may not read ${w.dir} `),
    );

    const r = await runTask(args, { ...w.env, SYNC_DIR: w.dir });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await Deno.stat(w.state)).isFile, "the state is kept in SYNC_DIR");
    const c = compareCopies(w.mailchimp.truth(LIST), w.ometria.contacts(collectionFor(LIST)), LIST);
    assert.deepEqual([c.missing.length, c.stale.length], [0, 0]);
  } finally {
    await w.close();
  }
});
