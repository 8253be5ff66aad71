/**
 * The webhook receiver: `POST /webhooks/mailchimp/<connection id>/<secret>` takes one
 * Mailchimp list webhook event, `GET` on the same route answers 200 (Mailchimp checks a URL
 * that way before it registers it). The secret in the URL is the first proof a request is
 * Mailchimp's: a wrong secret and an unknown connection get the same 404, so neither can be
 * probed, and secrets are compared in constant time. A connection with the webhook's signing
 * secret also checks every delivery's HMAC signature (`signature.ts`). The receiver only
 * validates and appends the event to the connection's inbox in the state store, which is
 * durable when the append resolves (every backend); it answers 200 only then. Acting on the
 * event happens behind the answer, in the connection's writer (writer/writer_pool.ts). A valid
 * delivery it does not act on (SMS, campaign, another list…) is answered 200 and counted:
 * Mailchimp retries anything else for 75 minutes and may disable the webhook
 * (docs/API_NOTES.md, "Mailchimp list webhooks").
 *
 * It runs on a listener of its own (`WEBHOOK_PORT`), apart from metrics and status, because
 * it is the one thing that must face the internet.
 *
 * @module
 */
import { sealEmail } from "./sealed_email.ts";
import { timingSafeEqual } from "node:crypto";
import type { Logger } from "@logtape/logtape";
import type { Clock } from "../clock/clock.ts";
import type { ConnectionConfig } from "../config/config.ts";
import { DEFAULT_LISTEN_HOST } from "../config/defaults.ts";
import type { Inbox } from "../state/store.ts";
import { type IgnoredKind, parseWebhookEvent, webhookEventKey } from "./event.ts";
import { SIGNATURE_HEADER, verifyWebhookSignature } from "./signature.ts";

/** The path every webhook route starts with. */
export const WEBHOOK_PATH_PREFIX = "/webhooks/mailchimp/";

/** Largest body taken: a real event is well under 2 KiB; anything near this is not one. */
export const WEBHOOK_MAX_BODY_BYTES = 64 * 1024;

/** What the receiver did with one request, for metrics (`sync_webhook_events_total`). */
export type ReceiverOutcome =
  | "queued"
  | "duplicate"
  | "check"
  | "not_found"
  | "bad_request"
  | "bad_signature"
  | `ignored_${IgnoredKind}`
  | "full";

/** One connection the receiver accepts events for. */
export interface WebhookRoute {
  id: string;
  listId: string;
  /** The secret in its URL; a connection without one accepts nothing. */
  secret: string | undefined;
  /**
   * The webhook's signing secret (shown once when `webhooks register` created it): with it,
   * every delivery must carry a valid `X-Mailchimp-Signature`; without it, the URL's secret
   * is the only proof.
   */
  signingSecret?: string | undefined;
  /**
   * With `erase_on_permanent_delete`: the secret the address of a delete is sealed under for
   * the inbox (the connection's Ometria key, see `sealed_email.ts`).
   */
  sealWith?: string | undefined;
}

/**
 * The receiver's routes for the configured connections: each with the secret of its URL and,
 * when configured, its webhook's signing secret. Whoever builds the receiver passes these,
 * so that a configured signing secret is never left out.
 */
export function webhookRoutes(
  connections: readonly (
    & Pick<ConnectionConfig, "id" | "listId" | "webhookSecret" | "webhookSigningSecret">
    & Partial<Pick<ConnectionConfig, "ometria" | "eraseOnPermanentDelete">>
  )[],
): WebhookRoute[] {
  return connections.map((c) => ({
    id: c.id,
    listId: c.listId,
    secret: c.webhookSecret,
    ...(c.webhookSigningSecret ? { signingSecret: c.webhookSigningSecret } : {}),
    ...(c.eraseOnPermanentDelete && c.ometria ? { sealWith: c.ometria.apiKey } : {}),
  }));
}

/** Options of {@linkcode webhookReceiver}. */
export interface WebhookReceiverOptions {
  routes: readonly WebhookRoute[];
  /** The inbox of a connection (`StateStore.inbox`). */
  inboxFor: (connectionId: string) => Inbox;
  clock: Clock;
  logger: Logger;
  /** Called for every request with its outcome (and the connection, once the secret matched). */
  onOutcome?: (outcome: ReceiverOutcome, connectionId: string | undefined) => void;
  /** @default {WEBHOOK_MAX_BODY_BYTES} */
  maxBodyBytes?: number;
}

/** The path of a connection's webhook route (the secret URL-encoded). */
export function webhookPath(connectionId: string, secret: string): string {
  return `${WEBHOOK_PATH_PREFIX}${encodeURIComponent(connectionId)}/${encodeURIComponent(secret)}`;
}

/** True for a path the receiver answers (for a handler that routes several listeners). */
export function isWebhookPath(pathname: string): boolean {
  return pathname.startsWith(WEBHOOK_PATH_PREFIX);
}

/**
 * Builds the receiver's handler. Answers: 200 for a `GET`/`HEAD` check of a valid route, and
 * for a `POST` once the event is queued or known as a duplicate, or once it is known as a
 * delivery not to act on (counted as `ignored_<kind>`); 404 (counted) for any other path, an
 * unknown connection or a wrong secret; 405 for other methods; 401 for a delivery without a
 * valid signature on a route with a signing secret; 400 for a body over `maxBodyBytes` or one
 * that is not a Mailchimp event at all; 503 when the connection's inbox is full (Mailchimp
 * retries; polling reads the change anyway). Log lines never carry the path: it holds the secret.
 */
export function webhookReceiver(
  options: WebhookReceiverOptions,
): (request: Request) => Promise<Response> {
  const { clock, logger } = options;
  const maxBody = options.maxBodyBytes ?? WEBHOOK_MAX_BODY_BYTES;
  const routes = new Map(options.routes.map((r) => [r.id, r]));
  const count = (outcome: ReceiverOutcome, id?: string) => options.onOutcome?.(outcome, id);
  const text = (body: string, status: number, headers: Record<string, string> = {}) =>
    new Response(body + "\n", {
      status,
      headers: {
        "content-type": "text/plain; charset=utf-8",
        "cache-control": "no-store",
        ...headers,
      },
    });
  return async (request) => {
    const route = _match(new URL(request.url).pathname, routes);
    if (route === undefined) {
      await request.body?.cancel();
      count("not_found");
      return text("not found", 404);
    }
    if (request.method === "GET" || request.method === "HEAD") {
      count("check", route.id);
      return text("ok", 200);
    }
    if (request.method !== "POST") {
      await request.body?.cancel();
      return text("method not allowed", 405, { allow: "GET, HEAD, POST" });
    }
    const body = await _readBody(request, maxBody);
    if (body === undefined) {
      count("bad_request", route.id);
      logger.warn("Webhook for {connection} refused: its body is over {max} bytes", {
        connection: route.id,
        max: maxBody,
      });
      return text(`bad request: the body is over ${maxBody} bytes`, 400);
    }
    const signed = route.signingSecret
      ? verifyWebhookSignature(
        request.headers.get(SIGNATURE_HEADER),
        body,
        route.signingSecret,
        clock.now(),
      )
      : "valid";
    if (signed !== "valid" && signed !== "stale") {
      count("bad_signature", route.id);
      logger.warn("Webhook for {connection} refused: signature {verdict}", {
        connection: route.id,
        verdict: signed,
      });
      return text(`unauthorized: the X-Mailchimp-Signature is ${signed}`, 401);
    }
    const form = new URLSearchParams(new TextDecoder().decode(body));
    const parsed = parseWebhookEvent(form, route.listId);
    if ("problem" in parsed) {
      count("bad_request", route.id);
      logger.warn("Webhook for {connection} refused: {problem}", {
        connection: route.id,
        problem: parsed.problem,
      });
      return text(`bad request: ${parsed.problem}`, 400);
    }
    if (signed === "stale" || "ignored" in parsed) {
      const kind: IgnoredKind = signed !== "stale" && "ignored" in parsed
        ? parsed.ignored
        : "stale";
      count(`ignored_${kind}`, route.id);
      const props = { connection: route.id, type: form.get("type") ?? "", kind };
      // A stale signature or another list's event is worth a look; SMS events are routine.
      if (kind === "stale" || kind === "other_list") {
        logger.warn("Webhook {type} for {connection} not acted on: {kind}", props);
      } else logger.debug("Webhook {type} for {connection} not acted on: {kind}", props);
      return text(`ok: not acted on (${kind})`, 200);
    }
    const event = parsed.event;
    // A delete's address, sealed, is what lets the writer file the erasure it confirms.
    const email = form.get("data[email]");
    const sealed = route.sealWith && event.type === "unsubscribe" && event.action === "delete" &&
        email
      ? await sealEmail(route.sealWith, email)
      : undefined;
    const outcome = await options.inboxFor(route.id).append({
      type: event.type,
      receivedAtMs: clock.now(),
      firedAtMs: event.firedAtMs,
      action: event.action,
      memberIds: event.memberIds,
      ...(sealed ? { sealed } : {}),
    }, webhookEventKey(route.id, event));
    count(outcome, route.id);
    if (outcome === "full") {
      logger.warn("Webhook for {connection} refused for now: its inbox is full", {
        connection: route.id,
      });
      return text("busy: try again later", 503, { "retry-after": "60" });
    }
    logger.debug("Webhook {type} for {connection}: {outcome}", {
      type: event.type,
      connection: route.id,
      outcome,
    });
    return text("ok", 200);
  };
}

function _match(pathname: string, routes: Map<string, WebhookRoute>): WebhookRoute | undefined {
  if (!pathname.startsWith(WEBHOOK_PATH_PREFIX)) return undefined;
  const parts = pathname.slice(WEBHOOK_PATH_PREFIX.length).replace(/\/$/, "").split("/");
  if (parts.length !== 2) return undefined;
  let id: string;
  let secret: string;
  try {
    id = decodeURIComponent(parts[0]!);
    secret = decodeURIComponent(parts[1]!);
  } catch {
    return undefined;
  }
  const route = routes.get(id);
  if (route?.secret === undefined || route.secret === "") return undefined;
  return _sameSecret(secret, route.secret) ? route : undefined;
}

/** Compares in constant time (for equal lengths; the length of a secret is no secret). */
function _sameSecret(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The body's bytes (what a signature covers), or undefined once it passes `max` bytes (the
 * rest is not read).
 */
async function _readBody(request: Request, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > max) {
    await request.body?.cancel();
    return undefined;
  }
  if (request.body === null) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

/** Options of {@linkcode serveWebhooks}. */
export interface ServeWebhooksOptions {
  handler: (request: Request) => Promise<Response>;
  /** @default {"127.0.0.1"} */
  hostname?: string;
  /** Port to listen on; 0 picks a free one. */
  port: number;
}

/** A running webhook listener. */
export interface WebhookServer {
  /** Base URL, e.g. `http://127.0.0.1:8090` (no trailing slash). */
  url: string;
  /** Stops listening and resolves when requests in flight are answered. */
  close(): Promise<void>;
}

/**
 * Serves the receiver on `hostname:port`. Throws Deno's `AddrInUse` (or another listen
 * error) at once, for the caller to word as a configuration error.
 */
export function serveWebhooks(options: ServeWebhooksOptions): WebhookServer {
  const server = Deno.serve({
    hostname: options.hostname ?? DEFAULT_LISTEN_HOST,
    port: options.port,
    onListen: () => {},
  }, options.handler);
  const address = server.addr as Deno.NetAddr;
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return {
    url: `http://${host}:${address.port}`,
    async close() {
      await server.shutdown();
    },
  };
}
