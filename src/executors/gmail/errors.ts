/**
 * Gmail and token-endpoint failures as executor outcomes. A refused grant or
 * a refused access token needs the account reconnected; rate limits, server
 * errors and lost connections are retried by the core (honouring
 * Retry-After); any other 4xx is final with the API's own reason. Messages
 * are built from status codes and the provider's error text, never from the
 * request (whose headers and form carry the tokens).
 */
import type { ExecuteResult } from '../registry.ts';

export const GMAIL_CREDENTIAL = 'gmail_oauth';

export type Failure = Exclude<ExecuteResult, { outcome: 'succeeded' }>;

interface ProviderResponse {
  status: number;
  data?: unknown;
  headers?: unknown;
}

const MAX_MESSAGE = 300;
/** Past this, a Retry-After is more likely a misconfiguration than a plan: the backoff's own cap applies. */
const MAX_RETRY_AFTER_MS = 15 * 60_000;
/** Gmail answers some rate limits with 403 and one of these reasons. */
const RATE_LIMIT_REASONS = new Set(['rateLimitExceeded', 'userRateLimitExceeded', 'dailyLimitExceeded', 'quotaExceeded', 'concurrentLimitExceeded']);

const clip = (text: string) => (text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 1)}…` : text);
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

function responseOf(error: unknown): ProviderResponse | undefined {
  const response = isObject(error) ? error.response : undefined;
  return isObject(response) && typeof response.status === 'number' ? (response as unknown as ProviderResponse) : undefined;
}

/** The HTTP status a Gmail client error carries, if it got an answer. */
export const statusOf = (error: unknown): number | undefined => responseOf(error)?.status;

function header(headers: unknown, name: string): string | undefined {
  if (!isObject(headers)) return undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as unknown as Headers).get(name) ?? undefined;
  const value = headers[name] ?? headers[name.toLowerCase()];
  return typeof value === 'string' ? value : undefined;
}

/** Retry-After in delay-seconds or as an HTTP date, in ms from `now`. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const trimmed = value.trim();
  const ms = /^\d+$/.test(trimmed) ? Number(trimmed) * 1000 : Date.parse(trimmed) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS);
}

/** Google's error body: `{ error: { code, message, status, errors: [{ reason }] } }`. */
function googleError(data: unknown): { reason?: string; message?: string } {
  const error = isObject(data) ? data.error : undefined;
  if (!isObject(error)) return {};
  const first = Array.isArray(error.errors) && isObject(error.errors[0]) ? error.errors[0] : undefined;
  const reason = typeof first?.reason === 'string' ? first.reason : typeof error.status === 'string' ? error.status : undefined;
  return { reason, message: typeof error.message === 'string' ? clip(error.message) : undefined };
}

function transportFailure(error: unknown, what: string): Failure {
  // The system code (ECONNRESET, …) or the abort sits on the cause chain of fetch's error.
  let systemCode: string | undefined;
  let aborted = false;
  let cause: unknown = error;
  for (let depth = 0; depth < 4 && isObject(cause); depth++, cause = cause.cause) {
    // The executor never aborts a call itself: an abort is the timeout firing.
    if ([cause.name, cause.code].some((name) => name === 'TimeoutError' || name === 'AbortError')) aborted = true;
    if (!systemCode && typeof cause.code === 'string' && /^E[A-Z_]+$/.test(cause.code)) systemCode = cause.code;
  }
  if (aborted) return { outcome: 'retryable', error: { code: 'timeout', message: `${what} did not answer in time` } };
  return { outcome: 'retryable', error: { code: 'network_error', message: `the connection to ${what} failed${systemCode ? ` (${systemCode})` : ''}` } };
}

const reauthorize = (code: string, message: string): Failure => ({ outcome: 'needs_reauthorization', error: { code, message }, credential: GMAIL_CREDENTIAL });

/** A failed Gmail API call. */
export function apiFailure(error: unknown, now: number): Failure {
  const response = responseOf(error);
  if (!response) return transportFailure(error, 'Gmail');
  const { status } = response;
  const { reason, message } = googleError(response.data);
  if (status === 401) return reauthorize('unauthorized', 'Gmail refused the access token of the credential; reconnect the account');
  if (status === 408 || status === 429 || status >= 500 || (status === 403 && reason !== undefined && RATE_LIMIT_REASONS.has(reason))) {
    const retryAfterMs = parseRetryAfter(header(response.headers, 'retry-after'), now);
    return {
      outcome: 'retryable',
      error: { code: status === 429 || status === 403 ? 'rate_limited' : 'provider_unavailable', message: message ?? `Gmail answered ${status}` },
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }
  return { outcome: 'permanent', error: { code: reason ?? `http_${status}`, message: message ?? `Gmail answered ${status}` } };
}

/** A failed refresh at the OAuth token endpoint. */
export function tokenFailure(error: unknown, now: number): Failure {
  const response = responseOf(error);
  if (!response) {
    if (isObject(error) && error.name === 'TokenResponseError') {
      return { outcome: 'retryable', error: { code: 'token_refresh_failed', message: 'the token endpoint answered without an access token' } };
    }
    return transportFailure(error, 'the OAuth token endpoint');
  }
  const { status } = response;
  const data = isObject(response.data) ? response.data : {};
  const oauthError = typeof data.error === 'string' ? data.error : undefined;
  const description = typeof data.error_description === 'string' ? `: ${clip(data.error_description)}` : '';
  if (oauthError === 'invalid_grant') {
    return reauthorize('invalid_grant', `the Gmail authorization was revoked or has expired${description}; reconnect the account`);
  }
  if (oauthError === 'invalid_client' || oauthError === 'unauthorized_client') {
    return reauthorize(oauthError, `the OAuth client of the Gmail credential was refused${description}; update the credential`);
  }
  if (status === 408 || status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(header(response.headers, 'retry-after'), now);
    return {
      outcome: 'retryable',
      error: { code: 'token_refresh_unavailable', message: `the OAuth token endpoint answered ${status}` },
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }
  return { outcome: 'permanent', error: { code: 'token_refresh_failed', message: `the OAuth token endpoint answered ${status}${oauthError ? ` ${oauthError}` : ''}${description}` } };
}
