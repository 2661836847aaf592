/**
 * The two error classes of the toolkit: {@linkcode ScgiProtocolError} for a
 * request that breaks the SCGI protocol (it carries the HTTP status the server
 * answers with), and {@linkcode ScgiClientError} for every way a call to an
 * SCGI backend can fail (it carries a machine-readable `code`).
 *
 * @example Telling a protocol error's status
 * ```ts
 * import { ScgiProtocolError } from "./errors.ts";
 *
 * const error = new ScgiProtocolError(411, "CONTENT_LENGTH is missing");
 * console.assert(error.status === 411);
 * ```
 *
 * @module
 */

/** The statuses a malformed SCGI request is answered with. */
export type ScgiProtocolStatus = 400 | 411 | 413 | 431;

/**
 * A request that breaks the SCGI protocol or a configured limit.
 *
 * `status` is the answer the server gives: 400 for a malformed netstring or
 * variable, 411 for a missing `CONTENT_LENGTH`, 413 for a body over the limit,
 * 431 for a header block over the limit. The handler is never called for such
 * a request.
 *
 * @example
 * ```ts
 * import { ScgiProtocolError } from "./errors.ts";
 *
 * try {
 *   throw new ScgiProtocolError(400, "netstring length has a leading zero");
 * } catch (error) {
 *   if (error instanceof ScgiProtocolError) console.log(error.status);
 * }
 * ```
 */
export class ScgiProtocolError extends Error {
  /** The HTTP status that answers the request. */
  readonly status: ScgiProtocolStatus;

  /**
   * Creates the error.
   *
   * @param status The HTTP status that answers the request.
   * @param message What is wrong, in words a front end's operator understands.
   * @param options Standard error options (`cause`).
   */
  constructor(
    status: ScgiProtocolStatus,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ScgiProtocolError";
    this.status = status;
  }
}

/**
 * What went wrong in a call to an SCGI backend.
 *
 * - `connection_refused`: nothing listens at the backend's address.
 * - `connection_failed`: the connection could not be made or broke (reset,
 *   missing socket file, permission).
 * - `connect_timeout`, `head_timeout`, `idle_timeout`: the backend did not
 *   accept, answer, or keep sending in time.
 * - `head_too_large`, `response_too_large`: the response exceeded a limit.
 * - `malformed_response`: the backend's answer is not a CGI response.
 * - `truncated_response`: the backend closed before its `Content-Length`.
 * - `request_body_mismatch`: a request body stream was shorter or longer than
 *   its stated `content-length`.
 * - `request_too_large`: a request body of unknown length exceeded the
 *   buffering limit.
 */
export type ScgiClientErrorCode =
  | "connection_refused"
  | "connection_failed"
  | "connect_timeout"
  | "head_timeout"
  | "idle_timeout"
  | "head_too_large"
  | "response_too_large"
  | "malformed_response"
  | "truncated_response"
  | "request_body_mismatch"
  | "request_too_large";

/**
 * The one error class of the SCGI client: every failure of `scgiFetch`, and of
 * the response body it returns, is an `ScgiClientError` with a `code`. An
 * aborted `signal` rejects with the signal's reason, as `fetch` does.
 *
 * @example
 * ```ts
 * import { ScgiClientError } from "./errors.ts";
 *
 * const error = new ScgiClientError("head_timeout", "no response head in 5 s");
 * console.assert(error.code === "head_timeout");
 * ```
 */
export class ScgiClientError extends Error {
  /** What kind of failure this is. */
  readonly code: ScgiClientErrorCode;

  /**
   * Creates the error.
   *
   * @param code What kind of failure this is.
   * @param message A sentence for people.
   * @param options Standard error options (`cause`).
   */
  constructor(
    code: ScgiClientErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ScgiClientError";
    this.code = code;
  }
}
