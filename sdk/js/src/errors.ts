// Errors of the rvenc SDK. Every error is an RvencError with the protocol's `code` (the same names as
// the C++ SDK's Errc: PROTOCOL.md section 5 and the client-side stream errors) and, when it came
// from an HTTP answer of the gateway, its `status`. Subclasses say where it came from, so callers
// can `instanceof` as with the OpenAI SDK.
//
// Design: messages never contain secrets or ciphertext; a server's message is repeated only up to
// MAX_ECHOED_MESSAGE characters.

export type ErrorCode =
  | 'invalid_request' | 'unsupported_version' | 'decryption_failed' | 'replayed_request'
  | 'invalid_inference' | 'invalid_api_key' | 'key_revoked' | 'test_key_not_allowed'
  | 'unknown_key_id' | 'model_not_found' | 'not_found' | 'method_not_allowed' | 'request_too_large'
  | 'rate_limit_exceeded' | 'replay_quota_exceeded' | 'upstream_error' | 'enclave_busy'
  | 'enclave_unavailable' | 'overloaded' | 'upstream_timeout' | 'internal_error'
  | 'tampered_stream' | 'truncated_stream' | 'event_too_large' | 'timeout' | 'attestation_failed'
  | 'transport_error' | 'tls_error';

export const ERROR_CODES: readonly ErrorCode[] = [
  'invalid_request', 'unsupported_version', 'decryption_failed', 'replayed_request',
  'invalid_inference', 'invalid_api_key', 'key_revoked', 'test_key_not_allowed', 'unknown_key_id',
  'model_not_found', 'not_found', 'method_not_allowed', 'request_too_large', 'rate_limit_exceeded',
  'replay_quota_exceeded', 'upstream_error', 'enclave_busy', 'enclave_unavailable', 'overloaded',
  'upstream_timeout', 'internal_error', 'tampered_stream', 'truncated_stream', 'event_too_large',
  'timeout', 'attestation_failed', 'transport_error', 'tls_error',
];

const MAX_ECHOED_MESSAGE = 512;

export class RvencError extends Error {
  readonly code: ErrorCode;
  /** HTTP status of the gateway's answer this error came from; undefined otherwise. */
  readonly status: number | undefined;
  /** Retry-After, x-ratelimit-*, x-request-id of that answer (lower-case names). */
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string, status?: number, headers: Record<string, string> = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.headers = headers;
  }
}

/** The gateway or the enclave refused the request with an HTTP error (before any event). */
export class APIError extends RvencError {}
/** The enclave's attestation did not verify against the policy: nothing was sent. */
export class AttestationError extends RvencError {}
/** The answer's event stream failed: tampered_stream, truncated_stream, event_too_large, upstream_error. */
export class StreamError extends RvencError {}
/** The enclave's own (authenticated) error event, confirmed by the stream's authenticated end. */
export class EnclaveError extends RvencError {}
/** The gateway could not be reached, stopped answering (timeout), or the call was aborted. */
export class ConnectionError extends RvencError {}

export function isErrorCode(name: unknown): name is ErrorCode {
  return typeof name === 'string' && (ERROR_CODES as readonly string[]).includes(name);
}

export function bounded(message: string): string {
  return message.length <= MAX_ECHOED_MESSAGE ? message : message.slice(0, MAX_ECHOED_MESSAGE) + '...';
}

function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400: return 'invalid_request';
    case 401: return 'invalid_api_key';
    case 403: return 'key_revoked';
    case 404: return 'not_found';
    case 405: return 'method_not_allowed';
    case 413: return 'request_too_large';
    case 429: return 'rate_limit_exceeded';
    case 502: return 'upstream_error';
    case 503: return 'overloaded';
    case 504: return 'upstream_timeout';
    default: return status >= 400 && status < 500 ? 'invalid_request' : 'internal_error';
  }
}

/** {"error": {"message", "code"}} → {code, message}; null when `text` is not of that shape. */
export function parseErrorJson(text: string): { code: ErrorCode | null; message: string } | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const error = (value as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null) return null;
  const { message, code } = error as { message?: unknown; code?: unknown };
  return {
    code: isErrorCode(code) ? code : null,
    message: typeof message === 'string' ? bounded(message) : '',
  };
}

/** An HTTP error answer of the gateway as an APIError (the body is never echoed, only its message). */
export function errorFromHttp(status: number, body: string, headers: Record<string, string> = {}): APIError {
  const parsed = parseErrorJson(body);
  if (parsed) {
    return new APIError(parsed.code ?? codeForStatus(status),
      parsed.message || `the gateway answered HTTP ${status}`, status, headers);
  }
  return new APIError(codeForStatus(status), `the gateway answered HTTP ${status} without an error body`, status, headers);
}
