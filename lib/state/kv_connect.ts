/**
 * Remote Deno KV over KV Connect (`--state kv:https://…`): Deploy's KV from outside, or a
 * self-hosted denokv, shared by daemons on several machines through the KvStore leases.
 * `Deno.openKv(url)` reads the access token from `DENO_KV_ACCESS_TOKEN` itself and does the
 * metadata exchange at once, so a wrong URL or token fails at start-up, here, with a message
 * that never carries the token.
 *
 * Deno Deploy's KV Connect URL changed with the platform: Deploy Classic, shut down on
 * 2026-07-20, served `https://api.deno.com/databases/<id>/connect`; today's Deploy serves
 * `https://api.deno.com/v2/databases/<id>/connect` (docs.deno.com/deploy/reference/deno_kv/).
 *
 * @module
 */
import { errorText } from "../log/error_text.ts";

/** Today's Deno Deploy KV Connect URL of database `id`. */
export function deployKvConnectUrl(id: string): string {
  return `https://api.deno.com/v2/databases/${id}/connect`;
}

const _CLASSIC = /^\/databases\/([^/]+)\/connect\/?$/;

/**
 * What is wrong with KV Connect `url` before anything is sent to it, or undefined: a Deno
 * Deploy Classic URL names a platform that is gone (its databases were not moved), so it is
 * refused with today's form of the URL instead of failing later on an answer from a server.
 */
export function kvConnectUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  const classic = parsed.hostname === "api.deno.com" ? _CLASSIC.exec(parsed.pathname) : null;
  if (!classic) return undefined;
  return `--state kv:${kvConnectLocation(url)} is Deno Deploy Classic's KV Connect URL, and ` +
    `Deploy Classic was shut down on 2026-07-20. Today's Deno Deploy (console.deno.com) serves ` +
    `a database at ${deployKvConnectUrl("<database id>")}: the id is on the database's page, ` +
    `and a database of Classic was not moved to it (ask support@deno.com to move its data).`;
}

/** True when a `kv:` spec's path is a KV Connect URL (`http://` or `https://`). */
export function isKvConnectUrl(path: string): boolean {
  return /^https?:\/\//i.test(path);
}

/**
 * The KV Connect URL as it may be shown: without user info, query or fragment, where a
 * credential could have been pasted; the token itself never is part of the URL.
 */
export function kvConnectLocation(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = "";
    parsed.password = "";
    parsed.search = "";
    parsed.hash = "";
    return parsed.href;
  } catch {
    return "an invalid URL";
  }
}

/**
 * What to tell a user whose remote Deno KV at `location` could not be opened, from the error
 * `Deno.openKv` threw. Deno copies the server's answer into its message, and a server may
 * echo the request's `Authorization` header, so everything after the status is dropped: the
 * message keeps what failed and adds what to do, never the token.
 */
export function explainKvConnectError(location: string, error: unknown): string {
  const text = errorText(error);
  const what = `Cannot open the remote Deno KV ${location}`;
  if (/DENO_KV_ACCESS_TOKEN/.test(text) && /requires env access/i.test(text)) {
    return `${what}: this process may not read DENO_KV_ACCESS_TOKEN. Run it with ` +
      `--allow-env (at least --allow-env=DENO_KV_ACCESS_TOKEN).`;
  }
  if (/missing DENO_KV_ACCESS_TOKEN/i.test(text)) {
    return `${what}: DENO_KV_ACCESS_TOKEN is not set. Set it to an access token of the ` +
      `database (for Deno Deploy, a personal or organisation access token).`;
  }
  const status = /responded with status (\d{3})([^:\n]*)/.exec(text);
  if (status) {
    const code = Number(status[1]);
    const hint = code === 401 || code === 403
      ? "check DENO_KV_ACCESS_TOKEN: the server refused it"
      : code === 404
      ? `check the URL: the server knows no database there (on today's Deno Deploy it is ${
        deployKvConnectUrl("<database id>")
      })`
      : "check the URL and that the server is a KV Connect endpoint";
    return `${what}: the server answered ${code}${status[2]!.trimEnd()}; ${hint}.`;
  }
  if (/requires net access/i.test(text)) {
    return `${what}: this process may not connect there. Run it with --allow-net for that host.`;
  }
  // Connection failures (refused, DNS, TLS) are Deno's own words about our request; they
  // hold the URL, never a header.
  const cause = text.replace(/^Could not open Deno KV database:\s*/i, "");
  return `${what}: ${cause}. Check the URL and that the server is reachable from here.`;
}
