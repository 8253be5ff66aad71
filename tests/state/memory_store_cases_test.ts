import { MemoryStore } from "../../lib/state/memory_store.ts";
import { storeCases } from "./store_cases.ts";

storeCases({
  name: "MemoryStore",
  kind: "memory",
  // Nothing survives: every store opened is a new, empty one.
  place: () =>
    Promise.resolve({
      open: (clock) => Promise.resolve(new MemoryStore({ clock })),
      remove: () => Promise.resolve(),
    }),
});
