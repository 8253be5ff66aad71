/**
 * The content hash the content ledger keeps for each member: what a record sent to Ometria
 * looked like, in 8 bytes.
 *
 * @module
 */

/**
 * A 64-bit non-cryptographic hash of a serialised record, as 16 lowercase hex digits: two
 * records with the same hash are taken to be the same record, so a member whose record hashes
 * as the acknowledged one is not sent again.
 *
 * Hand-written because it runs once per member on the hot path (50,000 members a second on
 * one core), over the JSON string the record was serialised to anyway. The hashes on npm
 * (xxhash, murmur, FNV, node:crypto) take bytes, so every record would first be encoded to
 * UTF-8 into a fresh buffer, an allocation and a pass as large as the hash itself; this one
 * reads the string's UTF-16 code units directly and allocates nothing but its result. It is
 * two independent 32-bit lanes multiplied with `Math.imul` per code unit (cyrb53's loop),
 * mixed into each other by cyrb53's MurmurHash3-style finalisers and output whole (64 bits,
 * not cyrb53's 53). Each step of the loop and of the finaliser is a bijection of the 64-bit
 * state, so two strings of one length that differ in a single code unit do not collide (but
 * for the one value moved off zero). It never returns `0000000000000000`, which the ledger's
 * packed records keep for "unknown". Not for anything an adversary chooses: it is not
 * collision-resistant.
 */
export function recordHash(json: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x9e3779b1);
    h2 = Math.imul(h2 ^ c, 0x5f356495);
  }
  // The length is mixed in so that strings of different lengths start their finalisers from
  // unrelated states (a cheap guard against prefixes colliding).
  h1 ^= json.length;
  h2 ^= Math.imul(json.length, 0x85ebca6b);
  h1 = Math.imul(h1 ^ (h1 >>> 16), 0x85ebca6b);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 0xc2b2ae35);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 0x85ebca6b);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 0xc2b2ae35);
  if (h1 === 0 && h2 === 0) h1 = 1;
  return _hex64(h2 >>> 0, h1 >>> 0);
}

// One String.fromCharCode call with 16 digit codes: one string made, no pieces to join.
function _hex64(hi: number, lo: number): string {
  return String.fromCharCode(
    _digit(hi >>> 28),
    _digit((hi >>> 24) & 15),
    _digit((hi >>> 20) & 15),
    _digit((hi >>> 16) & 15),
    _digit((hi >>> 12) & 15),
    _digit((hi >>> 8) & 15),
    _digit((hi >>> 4) & 15),
    _digit(hi & 15),
    _digit(lo >>> 28),
    _digit((lo >>> 24) & 15),
    _digit((lo >>> 20) & 15),
    _digit((lo >>> 16) & 15),
    _digit((lo >>> 12) & 15),
    _digit((lo >>> 8) & 15),
    _digit((lo >>> 4) & 15),
    _digit(lo & 15),
  );
}

// '0'–'9' are 48–57, 'a'–'f' 97–102.
function _digit(n: number): number {
  return n < 10 ? 48 + n : 87 + n;
}
