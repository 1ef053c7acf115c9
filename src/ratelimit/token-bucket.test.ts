import { describe, expect, it } from 'vitest';
import { giveBack, secondsUntil, take, tokensAt, type BucketState } from './token-bucket.ts';

const policy = { ratePerS: 2, burst: 3 };

describe('token bucket', () => {
  it('serves a burst, then refills at the rate and never past the burst', () => {
    const state: BucketState = { tokens: 3, at: 0 };
    expect([take(state, policy, 0), take(state, policy, 0), take(state, policy, 0), take(state, policy, 0)]).toEqual([true, true, true, false]);
    expect(take(state, policy, 499)).toBe(false);
    expect(take(state, policy, 500)).toBe(true);
    expect(tokensAt(state, policy, 60_000)).toBe(3);
  });

  it('does not refill backwards when the clock goes back', () => {
    const state: BucketState = { tokens: 1, at: 1_000 };
    expect(tokensAt(state, policy, 0)).toBe(1);
  });

  it('gives back a token, up to the burst', () => {
    const state: BucketState = { tokens: 2.5, at: 0 };
    giveBack(state, policy);
    expect(state.tokens).toBe(3);
  });

  it('counts whole seconds until a token, at least one', () => {
    expect(secondsUntil(1, 0, policy)).toBe(1);
    expect(secondsUntil(1, 0, { ratePerS: 0.1, burst: 1 })).toBe(10);
    expect(secondsUntil(1, 0.95, { ratePerS: 0.01, burst: 1 })).toBe(5);
  });
});
