/**
 * What to tell a user whose process may not read or write a file it needs. `deno task sync`
 * grants the current folder, plus `SYNC_DIR` when set (README, "Permissions and why"), and
 * runs with `--no-prompt`, so a path elsewhere would otherwise end in Deno's bare
 * `NotCapable` or, without `--no-prompt` on a terminal, in a prompt that waits for ever.
 *
 * @module
 */

/** Options of {@linkcode permissionAdvice}. */
export interface PermissionAdviceOptions {
  /** What needs the access, as the message names it: "the state file /srv/sync/x.json". */
  what: string;
  /** The file that needs it; its folder is what to grant (a state keeps files beside it). */
  file: string;
  /** The accesses this process was not granted there. */
  missing: readonly ("read" | "write")[];
  /** `SYNC_DIR` as the environment has it, when set: it is named when it misses `path`. */
  syncDir?: string | undefined;
}

/**
 * The message for a file access this process was not granted: what needs it, the Deno flag
 * that grants it, and the two ways to start the program with it (`SYNC_DIR` for
 * `deno task sync`, or the whole `deno run` line).
 */
export function permissionAdvice(options: PermissionAdviceOptions): string {
  const { what, missing } = options;
  const path = folderOf(options.file);
  const folder = _shellWord(path);
  const flags = missing.map((access) => `--allow-${access}`).join(" and ");
  const syncDir = options.syncDir?.trim();
  const taskNote = syncDir
    ? ` (SYNC_DIR=${_shellWord(syncDir)} is set, and does not include it)`
    : "";
  return `Cannot use ${what}: this process may not ${missing.join(" or ")} ${path} ` +
    `(Deno's ${flags} do${missing.length === 1 ? "es" : ""} not include it). ` +
    `\`deno task sync\` may use the current folder and SYNC_DIR only${taskNote}: run ` +
    `\`SYNC_DIR=${folder} deno task sync …\`, or grant the folder yourself: ` +
    `\`deno run --no-prompt --allow-net --allow-env --allow-read=.,${folder} ` +
    `--allow-write=.,${folder} main.ts …\` (README, "Permissions and why").`;
}

/**
 * The folder holding `path` ("." for a bare file name), as Deno's permission flags and
 * `Deno.permissions.query` take it; both separators count, for Windows paths.
 */
export function folderOf(path: string): string {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (cut < 0) return ".";
  return cut === 0 ? path.slice(0, 1) : path.slice(0, cut);
}

/** `path` as one shell word in a suggested command. */
function _shellWord(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
}
