/**
 * RFC 9457 problem responses: the one place that turns errors into HTTP.
 * Known errors keep their stable code and safe message; anything else is
 * logged by the caller and answered with a bare 500.
 */
import { HTTPException } from 'hono/http-exception';
import { DomainError, ERROR_STATUS, type ErrorCode, type FieldError } from '../core/errors.ts';

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail?: string;
  errors?: FieldError[];
  request_id?: string;
}

const TITLES: Record<ErrorCode, string> = {
  invalid_json: 'Malformed JSON',
  bad_request: 'Bad request',
  unauthorized: 'Missing or invalid API key',
  invalid_signature: 'Invalid webhook signature',
  timestamp_out_of_tolerance: 'Webhook timestamp out of tolerance',
  forbidden: 'Forbidden',
  not_found: 'Not found',
  conflict: 'Conflict',
  idempotency_conflict: 'Idempotency key reused with different content',
  invalid_transition: 'Invalid state transition',
  replay_in_progress: 'A replay of the same scope is in progress',
  payload_too_large: 'Payload too large',
  unsupported_media_type: 'Unsupported media type',
  validation_failed: 'Validation failed',
  reserved_type: 'Reserved signal type',
  cel_budget_exceeded: 'CEL budget exceeded',
  cel_error: 'CEL evaluation failed',
  rate_limited: 'Too many requests',
  internal: 'Internal server error',
  unavailable: 'Service unavailable',
};

export function problem(code: ErrorCode, detail?: string, errors?: FieldError[]): Problem {
  return {
    type: `https://signalbus.dev/problems/${code.replaceAll('_', '-')}`,
    title: TITLES[code],
    status: ERROR_STATUS[code],
    code,
    ...(detail ? { detail } : {}),
    ...(errors && errors.length > 0 ? { errors } : {}),
  };
}

/**
 * PostgreSQL refusing a character it cannot store (NUL in text, `\u0000` in
 * jsonb): the text came from the caller, so it is their bad input, not our 500.
 * Input schemas refuse these where they can name the field; this is the net
 * for every other value that reaches a query (ids, filters, names).
 */
const UNSTORABLE_CHARACTER_CODES = new Set(['22021', '22P05']);

function isUnstorableCharacter(error: unknown): boolean {
  const { name, code } = error as { name?: unknown; code?: unknown };
  return name === 'PostgresError' && typeof code === 'string' && UNSTORABLE_CHARACTER_CODES.has(code);
}

/** Maps a thrown value to a problem; `undefined` means unexpected (log it, answer 500). */
export function knownProblem(error: unknown): Problem | undefined {
  if (error instanceof DomainError) return problem(error.code, error.message, error.errors);
  if (isUnstorableCharacter(error)) {
    return problem('validation_failed', 'the request contains characters that cannot be stored (NUL)');
  }
  if (error instanceof HTTPException) {
    switch (error.status) {
      case 400:
        return /json/i.test(error.message)
          ? problem('invalid_json', 'the request body is not valid JSON')
          : problem('bad_request', 'the request could not be read');
      case 401:
        return problem('unauthorized');
      case 404:
        return problem('not_found');
      case 413:
        return problem('payload_too_large', 'the request body is over the limit');
      case 415:
        return problem('unsupported_media_type', 'send the body as application/json');
      default:
        return undefined;
    }
  }
  return undefined;
}

export function problemResponse(body: Problem, requestId?: string): Response {
  return new Response(JSON.stringify(requestId ? { ...body, request_id: requestId } : body), {
    status: body.status,
    headers: {
      'content-type': 'application/problem+json',
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
      ...(requestId ? { 'x-request-id': requestId } : {}),
    },
  });
}
