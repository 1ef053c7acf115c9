/**
 * Token buckets shared by every server process, kept in PostgreSQL
 * (`public.rate_limit_buckets`, unlogged). A process does not spend a round
 * trip per request: it leases a few tokens at a time with one atomic
 * INSERT … ON CONFLICT DO UPDATE … RETURNING (refill, take up to `want`,
 * record) and spends them locally. Leased tokens left the shared bucket, so
 * the processes together never serve more than the bucket allows; a lease
 * is at most a twentieth of a second of the rate (and a quarter of the
 * burst), the next goes out while half of the last is left (so requests do
 * not wait for it), and what a process leased but did not spend lapses a
 * second after its last lease, so no process saves up an old allowance. An empty bucket is
 * remembered until it refills, so a client over its limit costs the
 * database one statement per token, not one per request.
 */
import type { Sql } from '../db/client.ts';
import { secondsUntil, type BucketPolicy } from './token-bucket.ts';

/** What one request gets from a bucket. */
export interface BucketVerdict {
  allowed: boolean;
  /** Tokens left for everyone, as far as this process knows (an estimate across processes). */
  remaining: number;
  /** When refused: seconds until a token. */
  retryAfterS: number;
}

export interface SharedBuckets {
  /** Takes one token of bucket `id`; answers without a round trip while a lease lasts. */
  take(id: string, policy: BucketPolicy, now?: number): BucketVerdict | Promise<BucketVerdict>;
}

interface Lease {
  /** Tokens leased from the shared bucket and not spent yet. */
  held: number;
  /** Unspent tokens lapse then. */
  expiresAt: number;
  /** The shared bucket's tokens right after the last lease, and when (for the remaining estimate). */
  shared: number;
  leasedAt: number;
  /** The shared bucket was empty: refused here until it holds a token again. */
  deniedUntil: number;
  /** A lease under way, which concurrent requests wait for rather than lease again. */
  pending: Promise<void> | undefined;
  /** The last lease failed. */
  failed: boolean;
}

const LEASE_SECONDS_OF_RATE = 0.05;
const LEASE_TTL_MS = 1_000;
const MAX_TRACKED = 100_000;

/** Tokens one round trip leases: a small slice of the rate, never so much of the burst that one process starves the others. */
export function leaseSize(policy: BucketPolicy): number {
  return Math.max(1, Math.min(Math.floor(policy.burst / 4), Math.ceil(policy.ratePerS * LEASE_SECONDS_OF_RATE)));
}

export function createSharedBuckets(deps: { sql: Sql; onError?: (error: unknown) => void }): SharedBuckets {
  const leases = new Map<string, Lease>();

  const lease = async (id: string, policy: BucketPolicy, state: Lease) => {
    const want = leaseSize(policy);
    const { ratePerS: rate, burst } = policy;
    // One statement, so concurrent processes serialize on the row: each sees
    // the tokens the other left. now() is the statement's start; a later
    // statement can hold the row first, hence greatest() on the elapsed time.
    const [row] = await deps.sql<{ granted: number; tokens: number }[]>`
      insert into public.rate_limit_buckets as b (id, tokens, granted, updated_at)
      values (${id}, ${burst}::float8 - least(${want}::int, floor(${burst}::float8)),
              least(${want}::int, floor(${burst}::float8))::int, now())
      on conflict (id) do update set
        granted = least(${want}::int, floor(least(${burst}::float8,
                    b.tokens + greatest(0, extract(epoch from now() - b.updated_at)) * ${rate}::float8)))::int,
        tokens = least(${burst}::float8, b.tokens + greatest(0, extract(epoch from now() - b.updated_at)) * ${rate}::float8)
               - least(${want}::int, floor(least(${burst}::float8,
                    b.tokens + greatest(0, extract(epoch from now() - b.updated_at)) * ${rate}::float8))),
        updated_at = greatest(b.updated_at, now())
      returning granted, tokens`;
    const now = Date.now();
    // A lease tops up what is held; what lapsed is gone.
    state.held = (now < state.expiresAt ? state.held : 0) + row!.granted;
    state.expiresAt = now + LEASE_TTL_MS;
    state.shared = row!.tokens;
    state.leasedAt = now;
    state.deniedUntil = row!.granted > 0 ? 0 : now + secondsUntil(1, row!.tokens, policy) * 1000;
  };

  /** Starts a lease unless one is under way; it never rejects (a failure is reported and marked). */
  const startLease = (id: string, policy: BucketPolicy, state: Lease): Promise<void> =>
    (state.pending ??= lease(id, policy, state).then(
      () => {
        state.pending = undefined;
        state.failed = false;
      },
      (error) => {
        state.pending = undefined;
        state.failed = true;
        deps.onError?.(error);
      },
    ));

  const spend = (id: string, policy: BucketPolicy, state: Lease, now: number): BucketVerdict | undefined => {
    if (state.held >= 1 && now < state.expiresAt) {
      state.held -= 1;
      // The next lease goes out while half of this one is left, so requests
      // do not wait for it while the bucket has tokens.
      if (state.held < leaseSize(policy) / 2 && !state.pending) void startLease(id, policy, state);
      const refilled = ((now - state.leasedAt) / 1000) * policy.ratePerS;
      return { allowed: true, remaining: Math.floor(Math.min(policy.burst, state.held + state.shared + refilled)), retryAfterS: 0 };
    }
    if (now < state.deniedUntil) return { allowed: false, remaining: 0, retryAfterS: Math.max(1, Math.ceil((state.deniedUntil - now) / 1000)) };
    return undefined;
  };

  const takeLeased = async (id: string, policy: BucketPolicy, state: Lease): Promise<BucketVerdict> => {
    for (;;) {
      await startLease(id, policy, state);
      const verdict = spend(id, policy, state, Date.now());
      if (verdict) return verdict;
      // The limiter must not turn a database hiccup into refusals of its
      // own: this request passes, the next one leases again.
      if (state.failed) return { allowed: true, remaining: 0, retryAfterS: 0 };
    }
  };

  return {
    take(id, policy, now = Date.now()) {
      let state = leases.get(id);
      if (!state) {
        if (leases.size >= MAX_TRACKED) leases.clear();
        state = { held: 0, expiresAt: 0, shared: policy.burst, leasedAt: now, deniedUntil: 0, pending: undefined, failed: false };
        leases.set(id, state);
      }
      return spend(id, policy, state, now) ?? takeLeased(id, policy, state);
    },
  };
}
