/**
 * Internal error channel: every failure an op can report carries a stable string code.
 * Surfaces map codes to wire errors (HTTP status, JSON-RPC, MCP tool errors) in one place:
 * see `api/errors.ts`. Messages here are written for clients: short and generic.
 */
export const ERROR_CODES = [
  'invalid_input',
  'too_large',
  'body_too_large',
  'unauthenticated',
  'forbidden',
  'csrf',
  'not_found',
  'conflict',
  'cycle',
  'not_ready',
  'lease_lost',
  'lease_expired',
  'version_conflict',
  'approval_required',
  'rate_limited',
  'unavailable',
  'storage_full',
  'storage_corrupt',
  'storage_readonly',
  'cursor_expired',
  'shutting_down',
  'too_complex',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class BatonError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'BatonError';
    this.code = code;
    this.details = details;
  }
}

export function isBatonError(err: unknown): err is BatonError {
  return err instanceof BatonError;
}

export const notFound = (what: string): BatonError => new BatonError('not_found', `${what} not found`);
export const forbidden = (message = 'not permitted'): BatonError => new BatonError('forbidden', message);
export const conflict = (message: string, details?: Record<string, unknown>): BatonError =>
  new BatonError('conflict', message, details);
