/**
 * `promtool check metrics` (Prometheus's own linter, from Debian's `prometheus` package) over
 * both `/metrics` answers. Skipped where promtool is missing, unless `REQUIRE_PROMTOOL=1`
 * (set by `.ci/run`, which installs it), so CI cannot pass without it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { bothExpositions } from "./_exposition.ts";

const required = Deno.env.get("REQUIRE_PROMTOOL") === "1";
const available = await new Deno.Command("promtool", {
  args: ["--version"],
  stdout: "null",
  stderr: "null",
})
  .output().then((o) => o.success, () => false);

Deno.test({
  name: `promtool check metrics finds nothing in the daemon's or Deploy's /metrics${
    available ? "" : " (skipped: promtool missing; apt-get install prometheus)"
  }`,
  ignore: !available && !required,
  async fn() {
    assert.ok(available, "promtool is missing: apt-get install prometheus");
    for (const [who, text] of Object.entries(await bothExpositions())) {
      const child = new Deno.Command("promtool", {
        args: ["check", "metrics"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(text));
      await writer.close();
      const out = await child.output();
      const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `${who}: ${said}`);
      assert.equal(said.trim(), "", `${who}: ${said}`);
    }
  },
});
