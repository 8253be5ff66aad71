import assert from "node:assert/strict";
import { DUPLICATE_SIGNAL_MS, signalKind } from "../../lib/app/signal_kind.ts";

Deno.test("signalKind() takes a signal within a second of the first as its copy, a later one as meant", async (t) => {
  const first = 5_000;
  for (
    const [what, firstAt, now, kind] of [
      ["the first signal", undefined, first, "first"],
      ["the copy deno task forwards, 1 ms later", first, first + 1, "duplicate"],
      ["a copy delayed by a loaded machine", first, first + DUPLICATE_SIGNAL_MS - 1, "duplicate"],
      ["a second Ctrl-C a second later", first, first + DUPLICATE_SIGNAL_MS, "again"],
      ["a second Ctrl-C much later", first, first + 60_000, "again"],
    ] as const
  ) {
    await t.step(what, () => assert.equal(signalKind(firstAt, now), kind));
  }
});
