import { describe, expect, it } from 'vitest';
import { planRetry } from './retry-plan.ts';

const FINISHED = new Date('2025-01-01T00:00:00.000Z');
const top = () => 0.999999;

describe('planning a handler retry', () => {
  it('given a permanent failure, is final at once', () => {
    expect(planRetry({ attempt: 1, permanent: true, finishedAt: FINISHED })).toEqual({ final: true, delayMs: 0, retryAt: null, inJob: false });
  });

  it('given the last allowed attempt failed, is final', () => {
    expect(planRetry({ attempt: 3, permanent: false, finishedAt: FINISHED, handler: { maxAttempts: 3 } }).final).toBe(true);
    expect(planRetry({ attempt: 5, permanent: false, finishedAt: FINISHED }).final).toBe(true);
  });

  it('given attempts remain, schedules a new job after an exponential, jittered delay', () => {
    const plan = planRetry({ attempt: 3, permanent: false, finishedAt: FINISHED, handler: { retryBaseMs: 100 } }, () => 0);
    // base · 2^(attempt-1) = 400, drawn from its upper half: 200 at the lowest.
    expect(plan).toEqual({ final: false, delayMs: 200, retryAt: new Date(FINISHED.getTime() + 200), inJob: false });
  });

  it('given an ordered handler, retries inside its job with a wait bounded to 30 s', () => {
    const plan = planRetry({ attempt: 20, permanent: false, finishedAt: FINISHED, handler: { ordered: true, maxAttempts: 50 } }, top);
    expect(plan.inJob).toBe(true);
    expect(plan.delayMs).toBe(30_000);
  });

  it('given an unordered handler, waits up to five minutes in a new job', () => {
    const plan = planRetry({ attempt: 20, permanent: false, finishedAt: FINISHED, handler: { maxAttempts: 50 } }, top);
    expect(plan).toMatchObject({ inJob: false, delayMs: 300_000 });
  });
});
