/**
 * Token bucket arithmetic, pure: the clock comes in as `now` (ms). A bucket
 * holds up to `burst` tokens and refills at `ratePerS`; a request takes one.
 */

export interface BucketPolicy {
  ratePerS: number;
  burst: number;
}

export interface BucketState {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
}

/** Tokens the bucket holds at `now`. */
export function tokensAt(state: BucketState, policy: BucketPolicy, now: number): number {
  return Math.min(policy.burst, state.tokens + (Math.max(0, now - state.at) / 1000) * policy.ratePerS);
}

/** Seconds until the bucket holds `tokens` (at least 1 s, as Retry-After counts whole seconds). */
export function secondsUntil(tokens: number, held: number, policy: BucketPolicy): number {
  // Less a hair: (1 - 0.95) / 0.01 is 5.000000000000004 in floating point.
  return Math.max(1, Math.ceil((tokens - held) / policy.ratePerS - 1e-9));
}

/** Takes one token if there is one; the state is updated either way (refilled to `now`). */
export function take(state: BucketState, policy: BucketPolicy, now: number): boolean {
  state.tokens = tokensAt(state, policy, now);
  state.at = now;
  if (state.tokens < 1) return false;
  state.tokens -= 1;
  return true;
}

/** Gives back a token taken by `take` (a request that turned out not to count). */
export function giveBack(state: BucketState, policy: BucketPolicy): void {
  state.tokens = Math.min(policy.burst, state.tokens + 1);
}
