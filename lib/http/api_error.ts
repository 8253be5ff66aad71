/**
 * The base error of a failed request to a third-party HTTP API.
 *
 * @module
 */

/** What {@linkcode ApiError} is built from. */
export interface ApiErrorInit {
  /** Full message. */
  message: string;
  /** Method and path, e.g. `GET /lists/abc/members` (never the key, never the query). */
  endpoint: string;
  /** HTTP status; undefined when no answer came (network error, timeout). */
  status?: number | undefined;
  /** The server's request id (e.g. the `X-Request-Id` header), to quote to its support. */
  requestId?: string | undefined;
  /** Whether another attempt may succeed. @default {false} */
  retryable?: boolean;
  /**
   * The most attempts this kind of answer is worth, when fewer than the retry policy's (a
   * bare 403 from Mailchimp's edge: one more try, not eight). @default {no limit of its own}
   */
  maxAttempts?: number | undefined;
  /** How long the server asked to wait (`Retry-After`), in milliseconds. */
  retryAfterMs?: number | undefined;
  /** The underlying error (network error, timeout). */
  cause?: unknown;
}

/**
 * A request that failed: an error answer, no answer at all (`status` undefined), or an
 * answer that is not what the API documents. Each client throws its own subclass
 * (`MailchimpError`, `OmetriaError`) so callers can tell the APIs apart; `retryable` and
 * `retryAfterMs` are what `apiRequest` retries on.
 */
export class ApiError extends Error {
  /** Method and path, e.g. `POST /v2/push`. */
  readonly endpoint: string;
  /** HTTP status; undefined when no answer came. */
  readonly status: number | undefined;
  /** The server's request id. */
  readonly requestId: string | undefined;
  /** Whether another attempt may succeed. */
  readonly retryable: boolean;
  /** The most attempts this kind of answer is worth, if it has a limit of its own. */
  readonly maxAttempts: number | undefined;
  /** How long the server asked to wait, in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(init: ApiErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "ApiError";
    this.endpoint = init.endpoint;
    this.status = init.status;
    this.requestId = init.requestId;
    this.retryable = init.retryable ?? false;
    this.maxAttempts = init.maxAttempts;
    this.retryAfterMs = init.retryAfterMs;
  }
}
