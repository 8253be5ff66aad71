/**
 * The line format of the state file's journal (`<path>.journal`, see `file_store.ts`): one
 * JSON value per line, each prefixed with the CRC-32 of its UTF-8 bytes, so that a line cut
 * short by a crash, or changed on disk afterwards, is told apart from one we wrote whole.
 *
 * ```text
 * 5f1c02aa {"journal":1,"base":"9b0e…"}
 * 0c4e8d11 {"id":"shop-de","list_id":"1a2d7ebf82","watermark":…}
 * ```
 *
 * The first line is the header: the journal's format version and `base`, the SHA-256 of the
 * exact document bytes the journal applies to. Every later line is one connection's state after
 * an update; replaying them in order over that document gives the current state. From version
 * 2 a line may leave out a quarantine that did not change since that connection's state was
 * last on disk, saying so with `"keep_quarantine": true` (a checkpoint of a connection holding
 * thousands of members stays a small append); version 1 lines are always complete.
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";

/** Current version of the journal format (the header's `journal` field). */
export const JOURNAL_VERSION = 2;

/** Marks a journal line whose connection keeps the quarantine it had (version 2). */
export const KEEP_QUARANTINE = "keep_quarantine";

/** The first line of a journal: which format it is in and which document it extends. */
export interface JournalHeader {
  /** The format version that wrote the journal. */
  journal: number;
  /** SHA-256 (lowercase hex) of the document bytes the entries apply to. */
  base: string;
}

/** What {@linkcode parseJournal} found in a journal's bytes. */
export interface ParsedJournal {
  /** The header, or undefined when the journal holds no whole line (empty or torn). */
  header: JournalHeader | undefined;
  /** The values of the whole lines after the header, in the order they were written. */
  entries: unknown[];
  /** Bytes from the start to the end of the last whole line. */
  validLength: number;
  /**
   * Bytes after the last whole line: the remains of a write a crash cut short, which were
   * never acknowledged and are ignored. 0 for a journal that ends cleanly.
   */
  tornLength: number;
  /**
   * A damaged line that whole lines follow (so not a torn final write): the journal cannot be
   * trusted. `line` counts from 1; `reason` says what is wrong with it.
   */
  damage: { line: number; reason: string } | undefined;
}

const _NEWLINE = 0x0a;
// "xxxxxxxx " before the JSON text.
const _PREFIX = 9;

/**
 * One journal line for `value`: the CRC-32 of its JSON text as 8 hex digits, a space, the JSON
 * text (which `JSON.stringify` keeps on one line) and a newline.
 */
export function encodeJournalLine(value: unknown): string {
  const json = JSON.stringify(value);
  const crc = crc32(_encoder.encode(json)).toString(16).padStart(8, "0");
  return `${crc} ${json}\n`;
}

/** The header line of a new journal over the document whose SHA-256 is `base`. */
export function encodeJournalHeader(base: string): string {
  const header: JournalHeader = { journal: JOURNAL_VERSION, base };
  return encodeJournalLine(header);
}

/**
 * Splits a journal into its header and entries. A bad stretch at the end (a last line
 * without its newline, or lines that fail their checksum with no good line after them) is
 * a torn final write and only reported in `tornLength`; a bad line with good lines after it
 * is `damage`, because appends only ever add at the end, and so are whole lines none of
 * which can be read. Never throws.
 */
export function parseJournal(bytes: Uint8Array): ParsedJournal {
  const values: unknown[] = [];
  let validLength = 0;
  let firstBad: { line: number; reason: string } | undefined;
  let damage: { line: number; reason: string } | undefined;
  let line = 0;
  for (let start = 0; start < bytes.length;) {
    line++;
    const end = bytes.indexOf(_NEWLINE, start);
    if (end === -1) break; // no newline: the torn end of the last write
    const value = _decodeLine(bytes.subarray(start, end));
    start = end + 1;
    if (typeof value === "string") {
      firstBad ??= { line, reason: value };
      continue;
    }
    if (firstBad) {
      damage = firstBad;
      break;
    }
    values.push(value.value);
    validLength = start;
  }
  // The header is always written whole (renamed into place after a sync), so a journal with
  // whole lines and not one readable line is damaged, not torn: dropped, it would lose them.
  if (damage === undefined && values.length === 0 && firstBad !== undefined) damage = firstBad;
  if (damage === undefined && values.length > 0 && !_isHeader(values[0])) {
    damage = { line: 1, reason: "it is not a journal header" };
  }
  const header = damage === undefined && values.length > 0 ? values[0] as JournalHeader : undefined;
  return {
    header,
    entries: header === undefined ? [] : values.slice(1),
    validLength: damage === undefined ? validLength : 0,
    tornLength: damage === undefined ? bytes.length - validLength : 0,
    damage,
  };
}

/** The CRC-32 (IEEE 802.3, as zlib and gzip compute it) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = _CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const _encoder = new TextEncoder();
const _decoder = new TextDecoder("utf-8", { fatal: true });

const _CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

// The line's value, or why it is not a line we wrote.
function _decodeLine(line: Uint8Array): { value: unknown } | string {
  if (line.length <= _PREFIX || line[_PREFIX - 1] !== 0x20) return "it is not a checksummed line";
  let prefix: string;
  try {
    prefix = _decoder.decode(line.subarray(0, _PREFIX - 1));
  } catch {
    return "it is not a checksummed line";
  }
  if (!/^[0-9a-f]{8}$/.test(prefix)) return "it is not a checksummed line";
  const json = line.subarray(_PREFIX);
  if (crc32(json) !== parseInt(prefix, 16)) return "its checksum does not match its content";
  try {
    return { value: JSON.parse(_decoder.decode(json)) };
  } catch (error) {
    // A matching checksum over invalid JSON means we never wrote it.
    return `it is not valid JSON (${errorText(error)})`;
  }
}

function _isHeader(value: unknown): value is JournalHeader {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    typeof (value as Record<string, unknown>).journal === "number" &&
    typeof (value as Record<string, unknown>).base === "string";
}
