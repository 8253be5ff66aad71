/**
 * The Deno Deploy entrypoint (deno.json's `deploy.runtime.entrypoint`). Deploy reads a
 * revision's crons by evaluating this module's top-level code and keeps only those
 * registered before `Deno.serve` starts, not those behind a condition or an await
 * (docs.deno.com/deploy/reference/cron/). So the call below is unconditional and
 * synchronous: it registers the cron, then serves the HTTP handler. Whether a tick may sync
 * (production, or SYNC_ON_BRANCHES) is decided inside each tick, never here.
 *
 * @module
 */
import { serveOnDeploy } from "./main.ts";

serveOnDeploy();
