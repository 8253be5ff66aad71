import { MemoryLedger } from "../../lib/state/ledgers.ts";
import { ledgerCases } from "./ledger_cases.ts";

ledgerCases("MemoryLedger", () => {
  const ledger = new MemoryLedger();
  return Promise.resolve({
    ledger,
    // A memory ledger has no next process: reopening is using it again.
    reopen: () => Promise.resolve(ledger),
    stored: async () => (await ledger.load()).toRecords(),
    close: () => Promise.resolve(),
  });
});
