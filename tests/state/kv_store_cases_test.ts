import { KvStore } from "../../lib/state/kv_store.ts";
import { storeCases, tempPlace } from "./store_cases.ts";

const LEASE_MS = 60_000;

storeCases({
  name: "KvStore",
  kind: "kv",
  place: () =>
    tempPlace("state.kv", (path, clock) => KvStore.open(path, { clock, leaseMs: LEASE_MS })),
  persists: true,
  shared: { leaseMs: LEASE_MS },
});
