/**
 * The body of a push: its records' JSON as one JSON array, in UTF-8.
 *
 * @module
 */

const _utf8 = new TextEncoder();
const _OPEN = 0x5b;
const _COMMA = 0x2c;
const _CLOSE = 0x5d;

/**
 * `[json,json,…]` as UTF-8, each record written straight into one buffer. Joining the
 * records into one string, which fetch then encodes, made a second copy of every record on
 * the heap; without that copy a bulk run of 2 lists of 100,000 takes a third fewer
 * scavenges (39 against 57, README "Issue 19"). The bytes are those of
 * `new TextEncoder().encode("[" + jsons.join(",") + "]")` (tests/ometria/push_body_test.ts).
 */
export function jsonArrayBody(items: readonly { json: string }[]): Uint8Array<ArrayBuffer> {
  let units = items.length + 1;
  for (const item of items) units += item.json.length;
  // Exact when every record is ASCII; grows when one is not (a unit is at most 3 bytes).
  let out = new Uint8Array(units);
  let at = 0;
  const room = (more: number) => {
    if (at + more <= out.length) return;
    const grown = new Uint8Array(Math.max(out.length * 2, at + more));
    grown.set(out.subarray(0, at));
    out = grown;
  };
  for (let i = 0; i < items.length; i++) {
    room(1);
    out[at++] = i === 0 ? _OPEN : _COMMA;
    let text = items[i]!.json;
    for (;;) {
      const { read, written } = _utf8.encodeInto(text, out.subarray(at));
      at += written;
      if (read === text.length) break;
      text = text.slice(read);
      room(text.length * 3);
    }
  }
  room(2);
  if (items.length === 0) out[at++] = _OPEN;
  out[at++] = _CLOSE;
  return out.subarray(0, at);
}
