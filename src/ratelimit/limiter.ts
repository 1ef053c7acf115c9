/**
 * The request limits: a token bucket per API key and one per org, shared by
 * every server process (shared-buckets.ts), and one per source address for
 * requests that have not proven a key, kept in process so that guessing
 * keys costs no database lookup. Verdicts carry the response headers: the
 * IETF draft's `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-
 * ratelimit-headers-10/11: one item per policy) and the earlier drafts'
 * `RateLimit-Limit`/`-Remaining`/`-Reset`, for the most constrained policy,
 * which API.md names.
 */
import { createSharedBuckets, type BucketVerdict, type SharedBuckets } from './shared-buckets.ts';
import { giveBack, secondsUntil, take, tokensAt, type BucketPolicy, type BucketState } from './token-bucket.ts';

export interface RateLimitPolicies {
  /** Per API key, across processes; absent = unlimited. */
  key?: BucketPolicy | undefined;
  /** Per org, over all of its keys, across processes. */
  org?: BucketPolicy | undefined;
  /** Per source address for requests without a known key, per process. */
  address?: BucketPolicy | undefined;
  /** Per installation, for deliveries to its inbound hook, across processes. */
  hook?: BucketPolicy | undefined;
}

export interface RateVerdict {
  allowed: boolean;
  /** When refused: seconds until a request may pass. */
  retryAfterS: number;
  headers: Record<string, string>;
}

export interface RateLimiter {
  /** Charges an authenticated request to its key and its org; undefined when neither is limited. */
  forPrincipal(keyId: string, orgId: string | null): RateVerdict | Promise<RateVerdict> | undefined;
  /** Charges a request without a known key to its source address; undefined when that is not limited. */
  forAddress(address: string): RateVerdict | undefined;
  /** Gives the address its token back: the key it sent turned out valid. */
  refundAddress(address: string): void;
  /** Charges a delivery to an installation's hook; undefined when hooks are not limited. */
  forInstallation(installationId: string): RateVerdict | Promise<RateVerdict> | undefined;
}

/** A policy from a configured rate and burst; either 0 means no limit. */
export function bucketPolicy(ratePerS: number, burst: number): BucketPolicy | undefined {
  return ratePerS > 0 && burst > 0 ? { ratePerS, burst } : undefined;
}

type Named = readonly [name: string, policy: BucketPolicy];

const windowSeconds = (policy: BucketPolicy) => Math.max(1, Math.round(policy.burst / policy.ratePerS));

/** `RateLimit-Policy`: each policy's quota (the burst) and the seconds it takes to refill. */
function policyHeader(policies: Named[]): string {
  return policies.map(([name, policy]) => `"${name}";q=${Math.floor(policy.burst)};w=${windowSeconds(policy)}`).join(', ');
}

/** The verdict over the buckets a request was charged to (a refused key's org is not charged, nor reported). */
function verdictOf(policyField: string, charged: Array<readonly [Named, BucketVerdict]>): RateVerdict {
  let rate = '';
  let tightest = charged[0]!;
  let allowed = true;
  let retryAfterS = 0;
  for (const entry of charged) {
    const [[name, policy], result] = entry;
    rate += `${rate ? ', ' : ''}"${name}";r=${result.remaining};t=${resetSeconds(policy, result.remaining)}`;
    if (result.remaining < tightest[1].remaining) tightest = entry;
    if (!result.allowed) {
      allowed = false;
      retryAfterS = Math.max(retryAfterS, result.retryAfterS);
    }
  }
  const [[, policy], { remaining }] = tightest;
  const headers: Record<string, string> = {
    'ratelimit-policy': policyField,
    ratelimit: rate,
    'ratelimit-limit': String(Math.floor(policy.burst)),
    'ratelimit-remaining': String(remaining),
    'ratelimit-reset': String(resetSeconds(policy, remaining)),
  };
  if (!allowed) headers['retry-after'] = String(retryAfterS);
  return { allowed, retryAfterS, headers };
}

/** Seconds until the bucket is full again: when the quota, as the draft counts it, is whole. */
const resetSeconds = (policy: BucketPolicy, remaining: number) =>
  remaining >= Math.floor(policy.burst) ? 0 : secondsUntil(policy.burst, remaining, policy);

export function createRateLimiter(
  deps: { shared: SharedBuckets } | Parameters<typeof createSharedBuckets>[0],
  policies: RateLimitPolicies,
  { maxAddresses = 50_000 } = {},
): RateLimiter {
  const shared = 'shared' in deps ? deps.shared : createSharedBuckets(deps);
  const { key, org, address, hook } = policies;
  const hookNamed: Named[] = hook ? [['installation', hook]] : [];
  const hookField = policyHeader(hookNamed);
  const keyOnly: Named[] = key ? [['key', key]] : [];
  const keyAndOrg: Named[] = [...keyOnly, ...(org ? ([['org', org]] as Named[]) : [])];
  const keyOnlyField = policyHeader(keyOnly);
  const keyAndOrgField = policyHeader(keyAndOrg);
  const addressNamed: Named[] = address ? [['address', address]] : [];
  const addressField = policyHeader(addressNamed);
  const addresses = new Map<string, BucketState>();

  return {
    forPrincipal(keyId, orgId) {
      // Platform keys belong to no org: only their own bucket applies.
      const named = orgId === null ? keyOnly : keyAndOrg;
      if (named.length === 0) return undefined;
      const field = orgId === null ? keyOnlyField : keyAndOrgField;
      const now = Date.now();
      const ids = named.map(([name]) => (name === 'key' ? `key:${keyId}` : `org:${orgId}`));
      // The org's bucket is charged only when the key's allows: a key past
      // its own limit must not drain its org's allowance for the others.
      const first = shared.take(ids[0]!, named[0]![1], now);
      const rest = (result: BucketVerdict): RateVerdict | Promise<RateVerdict> => {
        if (named.length === 1 || !result.allowed) return verdictOf(field, [[named[0]!, result]]);
        const second = shared.take(ids[1]!, named[1]![1], now);
        return second instanceof Promise
          ? second.then((other) => verdictOf(field, [[named[0]!, result], [named[1]!, other]]))
          : verdictOf(field, [[named[0]!, result], [named[1]!, second]]);
      };
      return first instanceof Promise ? first.then(rest) : rest(first);
    },
    forAddress(from) {
      if (!address) return undefined;
      const now = Date.now();
      let state = addresses.get(from);
      if (!state) {
        if (addresses.size >= maxAddresses) addresses.clear();
        state = { tokens: address.burst, at: now };
        addresses.set(from, state);
      }
      const allowed = take(state, address, now);
      const remaining = Math.floor(state.tokens);
      return verdictOf(addressField, [
        [addressNamed[0]!, { allowed, remaining, retryAfterS: allowed ? 0 : secondsUntil(1, tokensAt(state, address, now), address) }],
      ]);
    },
    forInstallation(installationId) {
      if (!hook) return undefined;
      const result = shared.take(`hook:${installationId}`, hook, Date.now());
      return result instanceof Promise
        ? result.then((verdict) => verdictOf(hookField, [[hookNamed[0]!, verdict]]))
        : verdictOf(hookField, [[hookNamed[0]!, result]]);
    },
    refundAddress(from) {
      const state = addresses.get(from);
      if (state && address) giveBack(state, address);
    },
  };
}
