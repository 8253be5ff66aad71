/**
 * Which Deno Deploy deployments may tick. Every git branch gets a deployment of its own, with
 * its own crons and KV database, and runs its crons on schedule (preview deployments run
 * none, but start an isolate to warm up); its environment is the Development context, which
 * often holds the production keys. A branch that synced would then write into the
 * production Ometria account from a second, unseen state. So ticks run only where
 * `DENO_TIMELINE` is `production`, unless SYNC_ON_BRANCHES says otherwise (a staging context
 * with staging keys). Sources: docs.deno.com/deploy/reference/env_vars_and_contexts/,
 * …/reference/cron/ and …/reference/timelines/.
 *
 * @module
 */

/**
 * Why this deployment must not tick, or undefined when it may: `timeline` is `DENO_TIMELINE`
 * (`production`, `git-branch/<branch>` or `preview/<revision>`; unset outside today's
 * Deploy), `syncOnBranches` SYNC_ON_BRANCHES. The answer names the variable that changes it.
 */
export function timelineRefusal(
  timeline: string | undefined,
  syncOnBranches: boolean,
): string | undefined {
  const name = timeline?.trim() ?? "";
  if (name === "production" || syncOnBranches) return undefined;
  const what = name.startsWith("git-branch/")
    ? `the deployment of branch ${name.slice("git-branch/".length)} (DENO_TIMELINE=${name})`
    : name.startsWith("preview/")
    ? `a preview deployment (DENO_TIMELINE=${name})`
    : name === ""
    ? "a deployment without DENO_TIMELINE, which cannot be told from a branch's"
    : `a deployment on timeline DENO_TIMELINE=${name}`;
  return `Not syncing: this is ${what}, not production. A branch or preview deployment ` +
    `has its own state but may hold production keys, and would sync into the same Ometria ` +
    `account beside production. Set SYNC_ON_BRANCHES=1 in this deployment's environment ` +
    `(e.g. a Development context with staging keys) to sync from it.`;
}
