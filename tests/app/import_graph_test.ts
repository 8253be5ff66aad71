/**
 * The production import graph — what main.ts (and deploy.ts, through it) imports statically, leaving out the modules
 * it loads with `import()` when chosen (demo, simulate, bench, healthcheck) — holds
 * production code only: no test helper (FakeClock among them), no simulator.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).href;

interface _Dependency {
  code?: { specifier: string };
  type?: { specifier: string };
  isDynamic?: boolean;
}

/** The repository paths `entry` reaches through static imports (type imports included). */
async function productionGraph(entry: string): Promise<Set<string>> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: new URL(ROOT).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const info: { modules: { specifier: string; dependencies?: _Dependency[] }[] } = JSON.parse(
    new TextDecoder().decode(output.stdout),
  );
  const byUrl = new Map(info.modules.map((m) => [m.specifier, m]));
  const reached = new Set<string>();
  const visit = (url: string) => {
    if (!url.startsWith(ROOT) || reached.has(url)) return;
    reached.add(url);
    for (const d of byUrl.get(url)?.dependencies ?? []) {
      if (d.isDynamic) continue;
      for (const target of [d.code?.specifier, d.type?.specifier]) if (target) visit(target);
    }
  };
  visit(`${ROOT}${entry}`);
  return new Set([...reached].map((url) => url.slice(ROOT.length)));
}

Deno.test("the static imports of main.ts and of the Deploy entry reach no test, simulator or optional-command module", async (t) => {
  for (const entry of ["main.ts", "deploy.ts"]) {
    await t.step(entry, async () => {
      const graph = await productionGraph(entry);
      assert.ok(graph.has("lib/app/cli.ts") && graph.has("lib/engine/run_connection.ts"), "walked");
      const offending = [...graph].filter((path) =>
        path.startsWith("tests/") || path.startsWith("lib/sim/") ||
        ["lib/app/demo.ts", "lib/app/simulate.ts", "lib/app/bench.ts"].includes(path)
      );
      assert.deepEqual(offending, []);
    });
  }
});
