/**
 * The command line of one Deno Deploy tick, built from the environment: Deploy passes no
 * arguments, so the lists and the state come from variables.
 *
 * @module
 */

/**
 * The arguments of one Deno Deploy tick, from the environment (Deploy passes no arguments):
 * `--once` over SYNC_LIST_IDS (comma or space separated) or SYNC_CONNECTIONS_FILE, with the
 * state in the platform's KV unless SYNC_STATE says otherwise.
 */
export function deployArgs(env: Record<string, string | undefined>): string[] {
  const args = ["--once", "--state", env.SYNC_STATE?.trim() || "kv:"];
  if (env.SYNC_CONNECTIONS_FILE?.trim()) {
    args.push("--connections", env.SYNC_CONNECTIONS_FILE.trim());
  }
  args.push(...(env.SYNC_LIST_IDS ?? "").split(/[\s,]+/).filter((id) => id !== ""));
  return args;
}
