import { BatonError, isBatonError, type ErrorCode } from '../core/errors.js';

/**
 * The one error mapper for every surface (S27): internal codes → HTTP status, and the body a
 * client sees — a stable code, a short message written for clients, and the request id that
 * finds the details in the server log. Nothing internal crosses this line.
 */
const STATUS: Record<ErrorCode, number> = {
  invalid_input: 400,
  too_large: 400,
  body_too_large: 413,
  unauthenticated: 401,
  forbidden: 403,
  csrf: 403,
  not_found: 404,
  conflict: 409,
  cycle: 409,
  not_ready: 409,
  lease_lost: 409,
  lease_expired: 409,
  version_conflict: 409,
  approval_required: 409,
  rate_limited: 429,
  unavailable: 503,
  storage_full: 503,
  storage_corrupt: 503,
  storage_readonly: 503,
  cursor_expired: 410,
  shutting_down: 503,
  too_complex: 400,
  internal: 500,
};

export interface ErrorBody {
  error: { code: ErrorCode; message: string; request_id: string; details?: Record<string, unknown> };
}

export function toBatonError(err: unknown): BatonError {
  return isBatonError(err) ? err : new BatonError('internal', 'internal error');
}

export function httpStatus(err: BatonError): number {
  return STATUS[err.code];
}

export function errorBody(err: BatonError, requestId: string): ErrorBody {
  const body: ErrorBody = { error: { code: err.code, message: err.message, request_id: requestId } };
  if (err.details !== undefined && err.code !== 'internal') body.error.details = err.details;
  return body;
}
