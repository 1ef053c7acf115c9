import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { MAX_RETRY_AFTER_MS, redactMessage, retryAfterMsOf, stripeFailure } from './errors.ts';

const raw = (statusCode: number, fields: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  ({ statusCode, headers, message: 'stripe says no', ...fields }) as ConstructorParameters<typeof Stripe.errors.StripeError>[0];

describe('retryAfterMsOf', () => {
  it('reads seconds and HTTP dates, clipped, and ignores nonsense', () => {
    expect(retryAfterMsOf('2')).toBe(2000);
    expect(retryAfterMsOf(['3'])).toBe(3000);
    expect(retryAfterMsOf(new Date(10_000 + 5_000).toUTCString(), 10_000)).toBe(5000);
    expect(retryAfterMsOf('86400')).toBe(MAX_RETRY_AFTER_MS);
    expect(retryAfterMsOf('soon')).toBeUndefined();
    expect(retryAfterMsOf('-1')).toBeUndefined();
    expect(retryAfterMsOf(undefined)).toBeUndefined();
  });
});

describe('redactMessage', () => {
  it('cuts out the key in use and anything shaped like a key', () => {
    expect(redactMessage('Invalid API Key provided: sk_test_****abcd', 'sk_test_zzz')).toBe('Invalid API Key provided: [redacted]');
    expect(redactMessage('bad key opaque-key-123 here', 'opaque-key-123')).toBe('bad key [redacted] here');
    expect(redactMessage('rk_live_abc and pk_test_def')).toBe('[redacted] and [redacted]');
  });
});

describe('stripeFailure', () => {
  it('maps what the end-to-end suite does not reach', () => {
    expect(stripeFailure(new Stripe.errors.StripePermissionError(raw(403)))).toMatchObject({ outcome: 'permanent', error: { code: 'permission_denied' } });
    expect(stripeFailure(new Stripe.errors.StripeAPIError(raw(409)))).toMatchObject({ outcome: 'retryable', error: { code: 'conflict' } });
    expect(stripeFailure(new Stripe.errors.StripeAPIError(raw(503, {}, { 'retry-after': '4' })))).toEqual({
      outcome: 'retryable',
      error: { code: 'api_error', message: 'stripe says no' },
      retryAfterMs: 4000,
    });
    // Stored under the key at Stripe: a repeat would replay the same failure.
    expect(stripeFailure(new Stripe.errors.StripeAPIError(raw(500, {}, { 'stripe-should-retry': 'false' })))).toMatchObject({ outcome: 'permanent' });
    expect(stripeFailure(new Stripe.errors.StripeInvalidRequestError(raw(400, { code: 'parameter_invalid_integer', param: 'amount' })))).toEqual({
      outcome: 'permanent',
      error: { code: 'parameter_invalid_integer', message: 'stripe says no (param: amount)' },
    });
    expect(stripeFailure(new Stripe.errors.StripeAuthenticationError(raw(401, { message: 'Expired API Key provided: sk_live_****wxyz', code: 'api_key_expired' })))).toEqual({
      outcome: 'needs_reauthorization',
      error: { code: 'api_key_expired', message: 'Expired API Key provided: [redacted]' },
      credential: 'stripe_api_key',
    });
    expect(stripeFailure(new TypeError('boom sk_test_123'), 'sk_test_123')).toEqual({ outcome: 'retryable', error: { code: 'unexpected_error', message: 'boom [redacted]' } });
  });
});
