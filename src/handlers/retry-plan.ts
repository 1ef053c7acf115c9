/**
 * What a failed handler attempt leads to, decided without I/O: a final
 * failure, a retry job at a later time, or — for ordered handlers, whose
 * subject queue must not let later signals pass — a retry inside the same
 * job after a short sleep. Time and randomness come in as arguments.
 */
import { backoffMs } from '../core/backoff.ts';

export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_RETRY_BASE_MS = 1000;
const MAX_BACKOFF_MS = 5 * 60_000;
/** Ordered handlers wait inside their job, holding their queue: their backoff stays short. */
const MAX_IN_JOB_BACKOFF_MS = 30_000;

export interface RetryPlan {
  final: boolean;
  /** Milliseconds until the next attempt; 0 when final. */
  delayMs: number;
  retryAt: Date | null;
  /** The next attempt runs in this job after `delayMs`, not as a new job. */
  inJob: boolean;
}

export function planRetry(
  { attempt, permanent, finishedAt, handler }: {
    attempt: number;
    /** The failure cannot succeed on a retry (bad input, unknown handler, missing signal). */
    permanent: boolean;
    finishedAt: Date;
    handler?: { maxAttempts?: number | undefined; retryBaseMs?: number | undefined; ordered?: boolean | undefined } | undefined;
  },
  random: () => number = Math.random,
): RetryPlan {
  const final = permanent || attempt >= (handler?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
  if (final) return { final, delayMs: 0, retryAt: null, inJob: false };
  const ordered = handler?.ordered === true;
  const delayMs = backoffMs(attempt, { baseMs: handler?.retryBaseMs ?? DEFAULT_RETRY_BASE_MS, maxMs: ordered ? MAX_IN_JOB_BACKOFF_MS : MAX_BACKOFF_MS, random });
  return { final, delayMs, retryAt: new Date(finishedAt.getTime() + delayMs), inJob: ordered };
}
