/**
 * The error of a failed Mailchimp request.
 *
 * @module
 */

/** What {@linkcode MailchimpError} is built from. */
export interface MailchimpErrorInit {
  /** Full message. */
  message: string;
  /** Method and path, e.g. `GET /lists/abc/members` (never the key, never the query). */
  endpoint: string;
  /** HTTP status; undefined when no answer came (network error, timeout). */
  status?: number | undefined;
  /** The problem's `title`, e.g. `Resource Not Found`. */
  title?: string | undefined;
  /** The problem's `detail`. */
  detail?: string | undefined;
  /** The `X-Request-Id` header, to quote to Mailchimp support. */
  requestId?: string | undefined;
  /** Whether another attempt may succeed (network error, timeout, 408, 429, 5xx, bare 403). */
  retryable?: boolean;
  /** How long the server asked to wait (`Retry-After`), in milliseconds. */
  retryAfterMs?: number | undefined;
  /** The underlying error (network error, timeout). */
  cause?: unknown;
}

/**
 * A Mailchimp request that failed: an error answer (problem+json `title`/`detail` kept), no
 * answer at all (`status` undefined), or an answer that is not what the API documents. The
 * message names the endpoint and the request id; a 401 says "Mailchimp rejected the API key
 * (401)". Callers catch it to tell a bad key or an unknown list from a transient failure.
 */
export class MailchimpError extends Error {
  /** Method and path, e.g. `GET /lists/abc/members`. */
  readonly endpoint: string;
  /** HTTP status; undefined when no answer came. */
  readonly status: number | undefined;
  /** The problem's `title`. */
  readonly title: string | undefined;
  /** The problem's `detail`. */
  readonly detail: string | undefined;
  /** The `X-Request-Id` header. */
  readonly requestId: string | undefined;
  /** Whether another attempt may succeed. */
  readonly retryable: boolean;
  /** How long the server asked to wait, in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(init: MailchimpErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "MailchimpError";
    this.endpoint = init.endpoint;
    this.status = init.status;
    this.title = init.title;
    this.detail = init.detail;
    this.requestId = init.requestId;
    this.retryable = init.retryable ?? false;
    this.retryAfterMs = init.retryAfterMs;
  }
}
