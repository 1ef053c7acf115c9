import { describe, expect, it } from 'vitest';
import type { SignalRow } from '../signals/model.ts';
import { signalRow } from '../../test/support/signal-row.ts';
import {
  evolveExecution,
  executionIdOf,
  type ExecutionFailed,
  type ExecutionRef,
  type ExecutionRetryRequested,
  type ExecutionRow,
  type ExecutionStarted,
  type ExecutionSucceeded,
} from './model.ts';

const REF: Omit<ExecutionRef, 'attempt'> = {
  execution_id: 'exe_0000000001aaaaaaaaaaaaaaaa',
  handler: 'crm.sync',
  signal_id: 'sig_input',
  directive_id: null,
};

let clock = 0;
function signal(type: string, payload: object): SignalRow {
  clock += 1;
  return signalRow(type, payload, {
    second: clock,
    actor: { type: 'system', id: 'handler:crm.sync' },
    source: 'handler:crm.sync',
    correlation_id: 'sig_input',
    causation_id: 'sig_input',
    causation_depth: 1,
  });
}

const time = (second: number) => new Date(Date.UTC(2025, 0, 1, 12, 0, second)).toISOString();

const started = (attempt: number) =>
  signal('execution.started', { ...REF, attempt, started_at: time(attempt * 10) } satisfies ExecutionStarted);
const failed = (attempt: number, final: boolean, code = 'boom') =>
  signal('execution.failed', {
    ...REF,
    attempt,
    started_at: time(attempt * 10),
    finished_at: time(attempt * 10 + 2),
    duration_ms: 2000,
    error: { code, message: `${code} on ${attempt}` },
    final,
    retry_at: final ? null : time(attempt * 10 + 5),
  } satisfies ExecutionFailed);
const succeeded = (attempt: number, usage?: ExecutionSucceeded['usage']) =>
  signal('execution.succeeded', {
    ...REF,
    attempt,
    started_at: time(attempt * 10),
    finished_at: time(attempt * 10 + 1),
    duration_ms: 1000,
    outputs: { signals: ['sig_out'], directives: ['dir_out'] },
    ...(usage ? { usage } : {}),
  } satisfies ExecutionSucceeded);
const retryRequested = (attempt: number) =>
  signal('execution.retry_requested', { ...REF, attempt, reason: 'fixed the mapping' } satisfies ExecutionRetryRequested);

/** Given these signals folded from nothing, the row. */
const given = (...signals: SignalRow[]) => signals.reduce<ExecutionRow | null>(evolveExecution, null);

describe('executions reducer', () => {
  it('the first signal creates the row from the reference it carries', () => {
    const event = failed(1, false);
    expect(given(event)).toEqual({
      id: REF.execution_id,
      handler: 'crm.sync',
      signal_id: 'sig_input',
      directive_id: null,
      status: 'retrying',
      attempts: 1,
      started_at: time(10),
      finished_at: time(12),
      duration_ms: 2000,
      error: { code: 'boom', message: 'boom on 1' },
      outputs: { signals: [], directives: [] },
      tokens_in: null,
      tokens_out: null,
      cost_usd: null,
      updated_at: event.recorded_at,
    } satisfies ExecutionRow);
  });

  describe('attempts', () => {
    it('count up with each attempt', () => {
      expect(given(failed(1, false), failed(2, false))!.attempts).toBe(2);
      expect(given(started(1), failed(1, false), started(2))!.attempts).toBe(2);
    });

    it('never go down', () => {
      expect(given(started(3), started(1))!.attempts).toBe(3);
    });

    it('a later attempt keeps the first start time', () => {
      expect(given(started(1), failed(1, false), started(2))).toMatchObject({ status: 'running', started_at: time(10), finished_at: null });
    });
  });

  describe('failures', () => {
    it('a failure with retries left is retrying', () => {
      expect(given(failed(1, false))!.status).toBe('retrying');
    });

    it('a final failure is failed', () => {
      expect(given(failed(1, false), failed(2, true, 'gave_up'))).toMatchObject({
        status: 'failed',
        attempts: 2,
        error: { code: 'gave_up', message: 'gave_up on 2' },
        finished_at: time(22),
      });
    });

    it('a stale failure does not overwrite a later attempt', () => {
      const later = given(failed(1, false), started(2));
      expect(evolveExecution(later, failed(1, true, 'late'))).toBe(later);
      const retrying = given(failed(1, false), failed(2, false));
      expect(evolveExecution(retrying, failed(1, true, 'late'))).toBe(retrying);
    });
  });

  describe('success', () => {
    it('records outputs, timing and usage', () => {
      const event = succeeded(2, { tokens_in: 120, tokens_out: 30, cost_usd: 0.0042 });
      expect(given(failed(1, false), event)).toMatchObject({
        status: 'succeeded',
        attempts: 2,
        started_at: time(10),
        finished_at: time(21),
        duration_ms: 1000,
        error: null,
        outputs: { signals: ['sig_out'], directives: ['dir_out'] },
        tokens_in: 120,
        tokens_out: 30,
        cost_usd: 0.0042,
        updated_at: event.recorded_at,
      });
    });

    it('without usage leaves the counters null', () => {
      expect(given(succeeded(1))).toMatchObject({ tokens_in: null, tokens_out: null, cost_usd: null });
    });

    it('is final: nothing after it changes the row', () => {
      const done = given(failed(1, false), succeeded(2));
      for (const late of [failed(3, true), failed(2, true), started(3), retryRequested(2), succeeded(3)]) {
        expect(evolveExecution(done, late)).toBe(done);
      }
    });
  });

  describe('retry_requested', () => {
    it('queues a failed execution again, keeping its history', () => {
      const event = retryRequested(3);
      expect(given(failed(1, false), failed(2, false), failed(3, true), event)).toMatchObject({
        status: 'queued',
        attempts: 3,
        error: { code: 'boom', message: 'boom on 3' },
        updated_at: event.recorded_at,
      });
    });

    it('then the next attempt runs its course', () => {
      expect(given(failed(1, true), retryRequested(1), failed(2, true, 'again'))).toMatchObject({ status: 'failed', attempts: 2 });
      expect(given(failed(1, true), retryRequested(1), succeeded(2))).toMatchObject({ status: 'succeeded', attempts: 2 });
    });
  });

  it('an unknown execution.* type creates nothing', () => {
    expect(given(signal('execution.paused', { ...REF, attempt: 1 }))).toBeNull();
    const row = given(failed(1, false));
    expect(evolveExecution(row, signal('execution.paused', { ...REF, attempt: 1 }))).toBe(row);
  });

  it('executionIdOf reads the payload, null when absent', () => {
    expect(executionIdOf(failed(1, false))).toBe(REF.execution_id);
    expect(executionIdOf(signal('execution.failed', { handler: 'x' }))).toBeNull();
  });
});
