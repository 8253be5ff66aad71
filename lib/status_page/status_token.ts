/**
 * `STATUS_TOKEN`: what guards the status page, `/status.json` and `/metrics` on Deno Deploy,
 * whose URL anyone on the internet can open (the daemon's listener stays on loopback instead).
 * The token is sent as `Authorization: Bearer <token>` (Prometheus, curl) or `?token=<token>`
 * (a browser). A browser that opens `/?token=…` is sent on to the same address without it, with
 * a cookie: the token then is not in the address bar, the history or the page's own links, and
 * the page's reloads and pager keep working.
 *
 * The token is never logged or echoed; answers say what to send, never what was expected.
 *
 * @module
 */

/** The cookie a browser keeps after opening the page with `?token=`. */
export const STATUS_COOKIE = "sync_status";

/** How long the cookie lasts: a working day of glances without pasting the token again. */
const _COOKIE_SECONDS = 12 * 3600;

/**
 * Decides whether `request` may see the status routes when the deployment's token is `token`.
 * Resolves to undefined when it may; otherwise to the response to send instead: 403 when no
 * `STATUS_TOKEN` is set (nothing is served without one), 401 when the request carries no
 * matching token, or a 303 that trades a `?token=` on the page for the cookie. Comparisons
 * take the same time whatever the token, so it cannot be guessed a character at a time.
 */
export async function checkStatusToken(
  request: Request,
  token: string | undefined,
): Promise<Response | undefined> {
  const headers = { "cache-control": "no-store", "content-type": "text/plain; charset=utf-8" };
  if (token === undefined || token === "") {
    return new Response(
      "Set STATUS_TOKEN on this deployment to serve the status page, /status.json and " +
        "/metrics; then send it as 'Authorization: Bearer <token>' or '?token=<token>'.\n",
      { status: 403, headers },
    );
  }
  const url = new URL(request.url);
  const expected = await _digest(token);
  const bearer = /^Bearer\s+(.+)$/i.exec(request.headers.get("authorization") ?? "")?.[1];
  if (bearer !== undefined && _same(await _digest(bearer.trim()), expected)) return undefined;
  const cookie = _cookie(request.headers.get("cookie") ?? "", STATUS_COOKIE);
  if (cookie !== undefined && _same(_fromHex(cookie), await _cookieValue(expected))) {
    return undefined;
  }
  const fromQuery = url.searchParams.get("token");
  if (fromQuery !== null && _same(await _digest(fromQuery), expected)) {
    if (url.pathname !== "/" || request.method !== "GET") return undefined;
    url.searchParams.delete("token");
    const secure = url.protocol === "https:" ? "; Secure" : "";
    return new Response(null, {
      status: 303,
      headers: {
        "cache-control": "no-store",
        "referrer-policy": "no-referrer",
        location: url.pathname + url.search,
        "set-cookie": `${STATUS_COOKIE}=${
          _hex(await _cookieValue(expected))
        }; Path=/; Max-Age=${_COOKIE_SECONDS}; HttpOnly; SameSite=Strict${secure}`,
      },
    });
  }
  return new Response(
    "Send STATUS_TOKEN as 'Authorization: Bearer <token>' or open this address with " +
      "'?token=<token>'.\n",
    { status: 401, headers: { ...headers, "www-authenticate": 'Bearer realm="status"' } },
  );
}

async function _digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** The cookie holds a hash of the token, not the token: it opens the page and nothing more. */
async function _cookieValue(tokenDigest: Uint8Array): Promise<Uint8Array> {
  const prefix = new TextEncoder().encode("status-page-cookie:");
  const joined = new Uint8Array(prefix.length + tokenDigest.length);
  joined.set(prefix);
  joined.set(tokenDigest, prefix.length);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", joined));
}

function _same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function _cookie(header: string, name: string): string | undefined {
  for (const part of header.split(";")) {
    const at = part.indexOf("=");
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

function _hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function _fromHex(text: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})+$/.test(text)) return new Uint8Array();
  return Uint8Array.from(text.match(/../g)!, (pair) => parseInt(pair, 16));
}
