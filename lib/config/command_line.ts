/**
 * The command line: subcommand, flags and list ids. Problems are collected rather than
 * thrown, so that `main.ts` can report them together with the environment's, and a
 * misspelt flag gets the nearest known one as a suggestion.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** The subcommands `main.ts` understands. */
const COMMANDS = [
  "sync",
  "reconcile",
  "status",
  "reset",
  "demo",
  "simulate",
  "bench",
  "healthcheck",
  "webhooks",
  "erase",
  "explain",
  "verify",
] as const;
/** One subcommand. */
export type Command = typeof COMMANDS[number];

const _OPTIONS = {
  once: { type: "boolean" },
  force: { type: "boolean" },
  json: { type: "boolean" },
  check: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  state: { type: "string" },
  connections: { type: "string" },
  "mailchimp-port": { type: "string" },
  "ometria-port": { type: "string" },
  url: { type: "string" },
  connection: { type: "string" },
  mailchimp: { type: "boolean" },
  status: { type: "boolean" },
  repush: { type: "boolean" },
  "dry-run": { type: "boolean" },
  ometria: { type: "boolean" },
  sample: { type: "string" },
  repair: { type: "boolean" },
} as const;

/** The flags and arguments of one command line, as given. */
export interface CommandLine {
  command: Command;
  once: boolean;
  force: boolean;
  json: boolean;
  check: boolean;
  help: boolean;
  state: string | undefined;
  connections: string | undefined;
  mailchimpPort: string | undefined;
  ometriaPort: string | undefined;
  /** `webhooks register --url <public base>`. */
  url: string | undefined;
  /** `erase --connection <id>`: the one connection to erase from. */
  connection: string | undefined;
  /** `erase --mailchimp`: delete the Mailchimp member permanently too. */
  mailchimp: boolean;
  /** `erase --status`: list the open erasures. */
  status: boolean;
  /** `sync --repush`, `reset --repush`: send every member, unchanged ones too. */
  repush: boolean;
  /** `sync --dry-run`: say what a run would push, write nothing. */
  dryRun: boolean;
  /** `explain --ometria`: what Ometria holds for the member too. */
  ometria: boolean;
  /** `verify --sample N`: members to check at random, as given. */
  sample: string | undefined;
  /** `verify --repair`: push what differs. */
  repair: boolean;
  /** Arguments after the subcommand (list or connection ids). */
  positionals: string[];
}

/**
 * Reads `args` into a {@linkcode CommandLine}, appending every problem to `errors`
 * (unknown flags with a suggestion, values on switches, missing values). Values of
 * unknown flags are never repeated: they may be keys.
 */
export function parseCommandLine(args: string[], errors: string[]): CommandLine {
  const { values, positionals, tokens } = parseArgs({
    args,
    allowPositionals: true,
    strict: false,
    tokens: true,
    options: _OPTIONS,
  });
  const known = Object.keys(_OPTIONS);
  for (const token of tokens) {
    if (token.kind !== "option") continue;
    const option = (_OPTIONS as Record<string, { type: string }>)[token.name];
    if (option === undefined) {
      const shown = token.rawName.length <= 30 ? token.rawName : "an option";
      const near = _nearestWord(token.name, known);
      errors.push(
        `Unknown option ${shown}${near ? `: did you mean --${near}?` : "."} See --help.`,
      );
    } else if (option.type === "boolean" && token.inlineValue) {
      errors.push(`${token.rawName} takes no value: write ${token.rawName} alone.`);
    } else if (option.type === "string" && token.value === undefined) {
      errors.push(`${token.rawName} needs a value: ${token.rawName} <value>.`);
    }
  }
  const flag = (name: string) => values[name] === true;
  const text = (name: string) => typeof values[name] === "string" ? values[name] : undefined;

  let rest = positionals;
  let command: Command = "sync";
  const first = rest[0];
  if (first !== undefined && (COMMANDS as readonly string[]).includes(first)) {
    command = first as Command;
    rest = rest.slice(1);
  }
  return {
    command,
    once: flag("once"),
    force: flag("force"),
    json: flag("json"),
    check: flag("check"),
    help: flag("help"),
    state: text("state"),
    connections: text("connections"),
    mailchimpPort: text("mailchimp-port"),
    ometriaPort: text("ometria-port"),
    url: text("url"),
    connection: text("connection"),
    mailchimp: flag("mailchimp"),
    status: flag("status"),
    repush: flag("repush"),
    dryRun: flag("dry-run"),
    ometria: flag("ometria"),
    sample: text("sample"),
    repair: flag("repair"),
    positionals: rest,
  };
}

/** The known word closest to `word` when it is close enough to be a typo. */
function _nearestWord(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = _distance(word.toLowerCase(), candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  // One edit per three letters: "onse" → "once", but "nope" suggests nothing.
  return bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

function _distance(a: string, b: string): number {
  // Levenshtein distance, one row at a time.
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}
