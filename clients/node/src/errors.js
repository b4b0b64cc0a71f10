// The errors a reply can carry, one class per wire error code, so callers can catch by class.

/** Root of every error the runtime reports (and of this client's Timeout). */
export class WorkspaceError extends Error {
  static code = "internal";
  static defaultRetryable = false;

  /**
   * @param {string} message
   * @param {{retryable?: boolean, code?: string}} [options]
   */
  constructor(message, options = {}) {
    super(message);
    this.name = new.target.name;
    /** The wire error code. */
    this.code = options.code ?? new.target.code;
    /** Whether the same request may succeed if sent again later. */
    this.retryable = options.retryable ?? new.target.defaultRetryable;
  }
}

/** The request is malformed or asks for something invalid (`bad_request`). */
export class BadRequest extends WorkspaceError {
  static code = "bad_request";
}

/** ENABLE_AGENT_WORKSPACES is off (`disabled`). */
export class Disabled extends WorkspaceError {
  static code = "disabled";
}

/** The token is missing or wrong (`unauthorized`). */
export class Unauthorized extends WorkspaceError {
  static code = "unauthorized";
}

/** The workspace (process, file, app...) does not exist (`not_found`). */
export class NotFound extends WorkspaceError {
  static code = "not_found";
}

/** The workspace is in a state that does not allow the operation (`conflict`). */
export class Conflict extends WorkspaceError {
  static code = "conflict";
}

/** WORKSPACE_MAX_CONCURRENT workspaces are already active (`capacity`). */
export class CapacityExceeded extends WorkspaceError {
  static code = "capacity";
  static defaultRetryable = true;
}

/** The provider cannot serve requests right now (`provider_unavailable`). */
export class ProviderUnavailable extends WorkspaceError {
  static code = "provider_unavailable";
  static defaultRetryable = true;
}

/** The operation (or the wait for its reply) did not finish in time (`timeout`). */
export class Timeout extends WorkspaceError {
  static code = "timeout";
  static defaultRetryable = true;
}

/** A bug or an unexpected failure inside the runtime (`internal`). */
export class InternalError extends WorkspaceError {
  static code = "internal";
}

/** The client was closed while a request waited, or a method was called after `close()`. */
export class ClientClosed extends Error {
  constructor(message = "the client is closed") {
    super(message);
    this.name = "ClientClosed";
  }
}

/** Error classes by wire code. */
export const ERRORS = Object.freeze(
  Object.fromEntries(
    [
      BadRequest,
      Disabled,
      Unauthorized,
      NotFound,
      Conflict,
      CapacityExceeded,
      ProviderUnavailable,
      Timeout,
      InternalError,
    ].map((cls) => [cls.code, cls]),
  ),
);

/**
 * The error a reply reported, as an instance of its code's class (WorkspaceError for unknown codes).
 * @param {string} code
 * @param {string} message
 * @param {boolean} retryable
 */
export function errorForCode(code, message, retryable) {
  const cls = Object.hasOwn(ERRORS, code) ? ERRORS[code] : WorkspaceError;
  return new cls(String(message), { code: String(code), retryable: Boolean(retryable) });
}
