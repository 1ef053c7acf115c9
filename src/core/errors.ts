/**
 * The domain's error vocabulary. Domain code throws these; `src/http/problem.ts`
 * is the one place that turns them into RFC 9457 responses. Messages must be
 * safe to show a caller: no SQL, no secrets, no stack.
 */
export const ERROR_STATUS = {
  invalid_json: 400,
  bad_request: 400,
  unauthorized: 401,
  invalid_signature: 401,
  timestamp_out_of_tolerance: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  idempotency_conflict: 409,
  invalid_transition: 409,
  replay_in_progress: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  validation_failed: 422,
  reserved_type: 422,
  cel_budget_exceeded: 422,
  cel_error: 422,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
} as const;
export type ErrorCode = keyof typeof ERROR_STATUS;

export interface FieldError {
  path: string;
  message: string;
}

export class DomainError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly errors?: FieldError[],
  ) {
    super(message);
    this.name = 'DomainError';
    this.status = ERROR_STATUS[code];
  }
}

export const notFound = (what: string) => new DomainError('not_found', `${what} not found`);
export const forbidden = (message = 'this key may not perform this action') =>
  new DomainError('forbidden', message);
