/**
 * The error of a failed Mailchimp request.
 *
 * @module
 */
import { ApiError, type ApiErrorInit } from "../http/api_error.ts";

/** What {@linkcode MailchimpError} is built from: an `ApiErrorInit` plus the problem's words. */
export interface MailchimpErrorInit extends ApiErrorInit {
  /** The problem's `title`, e.g. `Resource Not Found`. */
  title?: string | undefined;
  /** The problem's `detail`. */
  detail?: string | undefined;
  /** Mailchimp's clock when it answered (the `Date` header), when it sent one. */
  serverTimeMs?: number | undefined;
}

/**
 * A Mailchimp request that failed: an error answer (problem+json `title`/`detail` kept), no
 * answer at all (`status` undefined), or an answer that is not what the API documents. The
 * message names the endpoint and the request id; a 401 says "Mailchimp rejected the API key
 * (401)". Callers catch it to tell a bad key or an unknown list from a transient failure;
 * it is an {@linkcode ApiError}, so code common to both APIs can catch that instead.
 */
export class MailchimpError extends ApiError {
  /** The problem's `title`. */
  readonly title: string | undefined;
  /** The problem's `detail`. */
  readonly detail: string | undefined;
  /** Mailchimp's clock when it answered (its `Date`), when it sent one. */
  readonly serverTimeMs: number | undefined;

  constructor(init: MailchimpErrorInit) {
    super(init);
    this.name = "MailchimpError";
    this.title = init.title;
    this.detail = init.detail;
    this.serverTimeMs = init.serverTimeMs;
  }
}
