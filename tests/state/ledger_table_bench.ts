/**
 * A micro-check of {@linkcode LedgerTable}'s speed, run by hand (timings do not belong in
 * tests): `deno bench tests/state/ledger_table_bench.ts`. Each iteration handles 50,000
 * members, a second's worth at the rate one core must sustain, so every line must stay well
 * under 1 s an iteration.
 *
 * @module
 */
import { type LedgerEntry, LedgerTable } from "../../lib/state/ledger_table.ts";
import { recordHash } from "../../lib/state/record_hash.ts";
import { seededRandom } from "./_helpers.ts";

const MEMBERS = 1_000_000;
const PER_ITERATION = 50_000;

const random = seededRandom(1);
const hex = (digits: number) => {
  let s = "";
  for (let i = 0; i < digits; i++) s += "0123456789abcdef"[Math.floor(random() * 16)];
  return s;
};
// Through JSON, as ids come from Mailchimp's pages: flat strings, not the ropes `+=` makes.
const ids: string[] = JSON.parse(JSON.stringify(Array.from({ length: MEMBERS }, () => hex(32))));
const fresh: string[] = JSON.parse(
  JSON.stringify(Array.from({ length: PER_ITERATION }, () => hex(32))),
);
const entry: LedgerEntry = { versionMs: 0, hash: "", acked: true, gone: false, final: true };
const table = LedgerTable.empty();
for (const [i, id] of ids.entries()) {
  entry.versionMs = (1_700_000_000 + i) * 1000;
  entry.hash = hex(15) + "1";
  table.set(id, entry);
}
console.log(`${table.size} entries in ${table.byteSize} bytes`);
const json = JSON.stringify({ id: ids[0], email: "someone@example.com", properties: { a: 1 } });

let at = 0;
const next = () => ids[at = (at + 7919) % MEMBERS]!;

Deno.bench(`get, ${PER_ITERATION} of ${MEMBERS} members`, () => {
  for (let i = 0; i < PER_ITERATION; i++) table.get(next());
});

Deno.bench(`set (update), ${PER_ITERATION} of ${MEMBERS} members`, () => {
  for (let i = 0; i < PER_ITERATION; i++) {
    entry.versionMs += 1000;
    table.set(next(), entry);
  }
});

Deno.bench(`get + recordHash + set, ${PER_ITERATION} members`, () => {
  for (let i = 0; i < PER_ITERATION; i++) {
    const id = next();
    const hash = recordHash(json + i);
    if (table.get(id)?.hash !== hash) table.set(id, { ...entry, hash });
  }
});

Deno.bench(`set (insert) ${PER_ITERATION} new ids, then delete them`, () => {
  for (const id of fresh) table.set(id, entry);
  for (const id of fresh) table.delete(id);
});

Deno.bench(`fromRecords of ${MEMBERS} records`, { n: 3, warmup: 1 }, () => {
  LedgerTable.fromRecords(records);
});
const records = table.toRecords();
