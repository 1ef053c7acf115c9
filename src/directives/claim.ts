/**
 * Whether the next attempt of a directive may be claimed, decided without
 * I/O from the directive's row, its execution's row and what its executor
 * promises about repeats. The clock comes in as `now`.
 */
import type { Executor } from '../executors/registry.ts';
import type { DirectiveStatus } from './model.ts';

/** Attempts a directive gets when its executor names no limit. */
export const DEFAULT_MAX_ATTEMPTS = 5;

export type ClaimDecision =
  | { kind: 'skip' }
  | { kind: 'unrecoverable'; message: string }
  | {
      kind: 'claim';
      /** When the directive's first attempt started: the provider's idempotency window counts from it. */
      firstAttemptAt: Date;
      /** A previous attempt may have reached the provider without its outcome being recorded. */
      priorOutcomeUnknown: boolean;
    };

export function decideClaim(
  { directive, execution, executor }: {
    directive: { status: DirectiveStatus; attempts: number };
    /** The directive's execution row, when it has one. */
    execution: { status: string; attempts: number; started_at: Date | null } | undefined;
    executor: Pick<Executor, 'honorsIdempotencyKey' | 'looksUpPriorEffect' | 'idempotencyWindowMs' | 'maxAttempts'>;
  },
  now: Date,
): ClaimDecision {
  if (directive.status !== 'approved' && directive.status !== 'executing') return { kind: 'skip' };
  if (directive.status === 'approved') return { kind: 'claim', firstAttemptAt: now, priorOutcomeUnknown: false };
  // Executing: an earlier attempt was claimed. Its outcome is unknown when
  // nothing recorded one after the claim (its worker stopped mid-call).
  const firstAttemptAt = execution?.started_at ?? now;
  const priorOutcomeUnknown = !execution || (execution.status === 'running' && execution.attempts >= directive.attempts);
  if (priorOutcomeUnknown && !executor.honorsIdempotencyKey && !executor.looksUpPriorEffect) {
    return { kind: 'unrecoverable', message: 'a worker stopped during execution and the provider cannot deduplicate a repeat; reconcile by hand' };
  }
  // A directive whose worker stops in every attempt (it crashes the process,
  // say) gets no more attempts than one that fails every time.
  if (priorOutcomeUnknown && directive.attempts >= (executor.maxAttempts ?? DEFAULT_MAX_ATTEMPTS)) {
    return { kind: 'unrecoverable', message: `a worker stopped during its last attempt, attempt ${directive.attempts} of ${executor.maxAttempts ?? DEFAULT_MAX_ATTEMPTS}; reconcile by hand` };
  }
  // Past the provider's memory of the key a repeat could take effect twice.
  if (executor.idempotencyWindowMs !== undefined && now.getTime() - firstAttemptAt.getTime() >= executor.idempotencyWindowMs) {
    return { kind: 'unrecoverable', message: "the provider's idempotency window has passed since the first attempt; reconcile by hand" };
  }
  return { kind: 'claim', firstAttemptAt, priorOutcomeUnknown };
}
