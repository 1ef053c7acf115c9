import { describe, expect, it } from 'vitest';
import { decideClaim } from './claim.ts';

const NOW = new Date('2025-01-01T12:00:00.000Z');
const minutesAgo = (minutes: number) => new Date(NOW.getTime() - minutes * 60_000);
const stripeLike = { honorsIdempotencyKey: true, idempotencyWindowMs: 24 * 60 * 60_000 };
const noDedupe = { honorsIdempotencyKey: false };
const looksUp = { honorsIdempotencyKey: false, looksUpPriorEffect: true };

describe('deciding a claim', () => {
  it('given an approved directive, claims its first attempt now', () => {
    expect(decideClaim({ directive: { status: 'approved', attempts: 0 }, execution: undefined, executor: noDedupe }, NOW)).toEqual({
      kind: 'claim',
      firstAttemptAt: NOW,
      priorOutcomeUnknown: false,
    });
  });

  it('given a directive that is no longer approved or executing, skips it', () => {
    for (const status of ['succeeded', 'failed', 'cancelled', 'awaiting_approval'] as const) {
      expect(decideClaim({ directive: { status, attempts: 1 }, execution: undefined, executor: stripeLike }, NOW)).toEqual({ kind: 'skip' });
    }
  });

  it('given an executing directive whose last attempt recorded its outcome, claims again from the first start', () => {
    const execution = { status: 'retrying', attempts: 1, started_at: minutesAgo(5) };
    expect(decideClaim({ directive: { status: 'executing', attempts: 1 }, execution, executor: noDedupe }, NOW)).toEqual({
      kind: 'claim',
      firstAttemptAt: minutesAgo(5),
      priorOutcomeUnknown: false,
    });
  });

  it('given a worker that stopped in its last attempt and the attempts used up, gives up for a reconcile by hand', () => {
    const stopped = (attempts: number) => ({ status: 'executing' as const, attempts });
    const running = (attempts: number) => ({ status: 'running', attempts, started_at: minutesAgo(1) });
    expect(decideClaim({ directive: stopped(7), execution: running(7), executor: { ...stripeLike, maxAttempts: 8 } }, NOW)).toMatchObject({ kind: 'claim', priorOutcomeUnknown: true });
    expect(decideClaim({ directive: stopped(8), execution: running(8), executor: { ...stripeLike, maxAttempts: 8 } }, NOW)).toMatchObject({
      kind: 'unrecoverable',
      message: expect.stringContaining('attempt 8 of 8'),
    });
    // Without a limit of its own, an executor gets the default five.
    expect(decideClaim({ directive: stopped(5), execution: running(5), executor: looksUp }, NOW)).toMatchObject({ kind: 'unrecoverable' });
    // An outcome recorded: the retry limit of outcomes applies, not this one.
    expect(decideClaim({ directive: stopped(5), execution: { ...running(5), status: 'retrying' }, executor: looksUp }, NOW)).toMatchObject({ kind: 'claim' });
  });

  it('given a worker that stopped mid-call, repeats only where the provider deduplicates or the effect can be looked up', () => {
    const execution = { status: 'running', attempts: 2, started_at: minutesAgo(1) };
    const directive = { status: 'executing' as const, attempts: 2 };
    expect(decideClaim({ directive, execution, executor: stripeLike }, NOW)).toMatchObject({ kind: 'claim', priorOutcomeUnknown: true });
    expect(decideClaim({ directive, execution, executor: looksUp }, NOW)).toMatchObject({ kind: 'claim', priorOutcomeUnknown: true });
    expect(decideClaim({ directive, execution, executor: noDedupe }, NOW)).toMatchObject({ kind: 'unrecoverable' });
  });

  it('given an executing directive with no execution row, treats the outcome as unknown', () => {
    expect(decideClaim({ directive: { status: 'executing', attempts: 1 }, execution: undefined, executor: noDedupe }, NOW)).toMatchObject({ kind: 'unrecoverable' });
  });

  it('given the provider’s idempotency window has passed since the first attempt, refuses to repeat', () => {
    const execution = { status: 'retrying', attempts: 1, started_at: minutesAgo(24 * 60) };
    expect(decideClaim({ directive: { status: 'executing', attempts: 1 }, execution, executor: stripeLike }, NOW)).toMatchObject({
      kind: 'unrecoverable',
      message: expect.stringContaining('idempotency window'),
    });
  });
});
