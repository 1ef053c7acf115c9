/**
 * What a failed Stripe call means for the directive. Every call carries the
 * directive's idempotency key, so anything whose outcome is unknown (a
 * dropped connection, a timeout, a 5xx) is safe to try again: Stripe replays
 * the stored result instead of acting twice. What Stripe refused on its
 * merits (a declined card, a bad request) fails at once with Stripe's own
 * code; a refused API key asks for a new credential.
 */
import Stripe from 'stripe';
import type { ExecuteResult } from '../registry.ts';

export const STRIPE_API_KEY = 'stripe_api_key';

/** A Retry-After beyond this is clipped, so a retry schedule stays well inside Stripe's idempotency window. */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;

type Failure = Exclude<ExecuteResult, { outcome: 'succeeded' }>;

/**
 * Stripe masks keys in its own messages, but a message is still provider
 * text: anything shaped like a key is cut out, and the key in use too.
 */
export function redactMessage(message: string, apiKey?: string): string {
  let text = message;
  if (apiKey) text = text.split(apiKey).join('[redacted]');
  return text.replace(/\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9*]+/g, '[redacted]').slice(0, 500);
}

/** Retry-After as seconds or an HTTP date, clipped to `MAX_RETRY_AFTER_MS`. */
export function retryAfterMsOf(value: unknown, now = Date.now()): number | undefined {
  const header = Array.isArray(value) ? value[0] : value;
  if (typeof header !== 'string' || header.trim() === '') return undefined;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - now;
  if (!Number.isFinite(ms) || ms <= 0) return undefined;
  return Math.min(Math.ceil(ms), MAX_RETRY_AFTER_MS);
}

const isTimeout = (error: Stripe.errors.StripeError) =>
  (error.detail as { code?: string } | undefined)?.code === 'ETIMEDOUT' || /timeout/i.test(error.message);

/** Maps a thrown Stripe SDK error (or anything else) to an executor outcome. */
export function stripeFailure(error: unknown, apiKey?: string): Failure {
  if (!(error instanceof Stripe.errors.StripeError)) {
    const message = error instanceof Error ? error.message : 'unexpected failure calling Stripe';
    return { outcome: 'retryable', error: { code: 'unexpected_error', message: redactMessage(message, apiKey) } };
  }
  const message = redactMessage(error.message || 'Stripe returned an error', apiKey);
  const detail = (suffix: string | undefined) => (suffix ? `${message} (${suffix})` : message);
  const headers = error.headers ?? {};
  const shouldRetry = headers['stripe-should-retry'];

  switch (error.type) {
    case 'StripeConnectionError':
      // The request may or may not have reached Stripe: repeating it with the same key is how we find out.
      return { outcome: 'retryable', error: { code: isTimeout(error) ? 'timeout' : 'connection_error', message } };
    case 'StripeAuthenticationError':
      return { outcome: 'needs_reauthorization', error: { code: error.code ?? 'invalid_api_key', message }, credential: STRIPE_API_KEY };
    case 'StripeRateLimitError': {
      // Includes `lock_timeout`: another request held the object; it clears on its own.
      const retryAfterMs = retryAfterMsOf(headers['retry-after']);
      return { outcome: 'retryable', error: { code: error.code ?? 'rate_limited', message }, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    }
    case 'StripeIdempotencyError':
      // Same key, different params: the directive's params changed between attempts
      // (or the key was reused). Repeating can only fail the same way.
      return { outcome: 'permanent', error: { code: 'idempotency_conflict', message } };
    case 'StripeCardError':
      return { outcome: 'permanent', error: { code: error.code ?? 'card_error', message: detail(error.decline_code ? `decline_code: ${error.decline_code}` : undefined) } };
    case 'StripeInvalidRequestError':
      return { outcome: 'permanent', error: { code: error.code ?? 'invalid_request', message: detail(error.param ? `param: ${error.param}` : undefined) } };
    case 'StripePermissionError':
      return { outcome: 'permanent', error: { code: error.code ?? 'permission_denied', message } };
  }
  const status = error.statusCode ?? 0;
  if (shouldRetry === 'false') {
    // Stripe stored this result under the key: a repeat would only replay it.
    return { outcome: 'permanent', error: { code: error.code ?? 'api_error', message } };
  }
  if (shouldRetry === 'true' || status >= 500 || status === 409 || status === 0) {
    // 409: another request with this key is still in flight at Stripe.
    const retryAfterMs = retryAfterMsOf(headers['retry-after']);
    return {
      outcome: 'retryable',
      error: { code: error.code ?? (status === 409 ? 'conflict' : 'api_error'), message },
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }
  return { outcome: 'permanent', error: { code: error.code ?? 'stripe_error', message } };
}
