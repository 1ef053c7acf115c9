/**
 * Retries against a real database and a running worker: handler runs back
 * off exponentially with jitter up to their bound, a final failure can be
 * retried once by hand, a malformed job is recorded and completed, and
 * executor outcomes (retryable, permanent, needs re-authorization) end the
 * directive as they should.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Actor } from '../../src/signals/actor.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { DomainError } from '../../src/core/errors.ts';
import { addUncheckedJobs } from '../../src/db/jobs.ts';
import { executionIdOfDirective } from '../../src/directives/execute.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { getDirective } from '../../src/directives/store.ts';
import type { ExecuteResult, Executor } from '../../src/executors/registry.ts';
import { HANDLE_SIGNAL } from '../../src/core/jobs.ts';
import type { ExecutionFailed } from '../../src/executions/model.ts';
import { getExecution, listExecutions } from '../../src/executions/read.ts';
import { retryExecution } from '../../src/handlers/retry-execution.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const OPERATOR: Actor = { type: 'human', id: 'ops@retries.test' };

/** Fails its first two attempts, then succeeds. */
const flaky: Handler = {
  id: 'test.flaky',
  on: ['job.flaky'],
  retryBaseMs: 20,
  maxAttempts: 3,
  handle(_signal, { attempt }) {
    if (attempt < 3) throw new Error(`transient failure on attempt ${attempt}`);
  },
};

/** Fails every attempt until the test heals it. */
let brokenHealed = false;
const broken: Handler = {
  id: 'test.broken',
  on: ['job.broken'],
  retryBaseMs: 20,
  maxAttempts: 3,
  handle(_signal, { attempt }) {
    if (!brokenHealed) throw new Error(`still broken on attempt ${attempt}`);
  },
};

/** `probe.call`: behaves as its params say, per attempt. */
const probeCalls = new Map<string, number>();
const Mode = z.enum(['retry_once', 'throw_once', 'always_retry', 'permanent', 'reauth']);
const probeExecutor: Executor<{ mode: z.infer<typeof Mode> }> = {
  kinds: ['probe.call'],
  params: z.object({ mode: Mode, n: z.number().optional() }),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  maxAttempts: 3,
  async execute({ directiveId, params, attempt }): Promise<ExecuteResult> {
    probeCalls.set(directiveId, (probeCalls.get(directiveId) ?? 0) + 1);
    switch (params.mode) {
      case 'retry_once':
        return attempt === 1
          ? { outcome: 'retryable', error: { code: 'provider_busy', message: 'try again shortly' }, retryAfterMs: 10 }
          : { outcome: 'succeeded', result: { attempt } };
      case 'throw_once':
        if (attempt === 1) throw new Error('socket hang up');
        return { outcome: 'succeeded', result: { attempt } };
      case 'always_retry':
        return { outcome: 'retryable', error: { code: 'provider_busy', message: `busy on attempt ${attempt}` } };
      case 'permanent':
        return { outcome: 'permanent', error: { code: 'card_declined', message: 'the card was declined' } };
      case 'reauth':
        return { outcome: 'needs_reauthorization', error: { code: 'invalid_grant', message: 'the refresh token was revoked' }, credential: 'probe_oauth' };
    }
  },
};

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({
    env: { SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '10' },
    handlers: [flaky, broken],
    executors: [probeExecutor],
  });
  org = await t.createOrg('retries');
  await updatePolicy(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' },
    input: { rules: [{ id: 'allow-probe', match: 'probe.*', effect: 'allow' }] },
  });
  await t.startWorker({ pollIntervalMs: 50 });
});
afterAll(() => t.close());

async function emitJob(type: string, n: number) {
  const { signal } = await emit(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: OPERATOR, source: 'api' },
    input: { type, subject: `job:${type}:${n}`, payload: { n } },
  });
  return signal;
}

/** The handler execution of `signalId`, once the dispatcher has created it. */
async function executionOf(handler: string, signalId: string, until: (status: string) => boolean) {
  return waitFor(async () => {
    const { data } = await listExecutions(t.app.deps.sql, org, { handler, signalId, limit: 10 });
    return data.length === 1 && until(data[0]!.status) ? data[0] : undefined;
  }, 20_000, `${handler} on ${signalId}`);
}

async function failures(executionId: string): Promise<ExecutionFailed[]> {
  const rows = await t.app.deps.sql<{ payload: ExecutionFailed }[]>`
    select payload from org_retries.signals
     where type = 'execution.failed' and payload->>'execution_id' = ${executionId}
     order by (payload->>'attempt')::int`;
  return rows.map((row) => row.payload);
}

const gapMs = (failure: ExecutionFailed) => new Date(failure.retry_at!).getTime() - new Date(failure.finished_at).getTime();

describe('handler retries', () => {
  it('back off exponentially with jitter and succeed within the bound', async () => {
    const signals = await Promise.all(Array.from({ length: 8 }, (_, n) => emitJob('job.flaky', n)));
    const firstGaps: number[] = [];
    for (const signal of signals) {
      const execution = await executionOf('test.flaky', signal.id, (status) => status === 'succeeded');
      expect(execution.attempts).toBe(3);
      expect(execution.error).toBeNull();

      const failed = await failures(execution.id);
      expect(failed.map((failure) => [failure.attempt, failure.final, failure.error.code])).toEqual([
        [1, false, 'handler_error'],
        [2, false, 'handler_error'],
      ]);
      expect(failed[0]!.error.message).toBe('transient failure on attempt 1');
      // base · 2^(attempt-1), drawn from its upper half: [10, 20] then [20, 40] ms.
      const [first, second] = failed.map(gapMs) as [number, number];
      expect(first).toBeGreaterThanOrEqual(10);
      expect(first).toBeLessThanOrEqual(20);
      expect(second).toBeGreaterThanOrEqual(20);
      expect(second).toBeLessThanOrEqual(40);
      expect(second).toBeGreaterThanOrEqual(first);
      // No attempt started before its scheduled time.
      expect(new Date(failed[1]!.started_at).getTime()).toBeGreaterThanOrEqual(new Date(failed[0]!.retry_at!).getTime());
      const [success] = await t.app.deps.sql<{ payload: { attempt: number; started_at: string } }[]>`
        select payload from org_retries.signals where type = 'execution.succeeded' and payload->>'execution_id' = ${execution.id}`;
      expect(success!.payload.attempt).toBe(3);
      expect(new Date(success!.payload.started_at).getTime()).toBeGreaterThanOrEqual(new Date(failed[1]!.retry_at!).getTime());
      firstGaps.push(first);
    }
    // Jitter: eight first retries do not all wait the same time.
    expect(new Set(firstGaps).size).toBeGreaterThan(1);
  });

  it('fail for good after maxAttempts; a manual retry runs exactly one more attempt', async () => {
    brokenHealed = false;
    const signal = await emitJob('job.broken', 1);
    const execution = await executionOf('test.broken', signal.id, (status) => status === 'failed');
    expect(execution.attempts).toBe(3);
    expect(execution.error).toEqual({ code: 'handler_error', message: 'still broken on attempt 3' });
    const failed = await failures(execution.id);
    expect(failed.map((failure) => [failure.attempt, failure.final, failure.retry_at === null])).toEqual([
      [1, false, false],
      [2, false, false],
      [3, true, true],
    ]);
    const { data: failedList } = await listExecutions(t.app.deps.sql, org, { status: 'failed', limit: 100 });
    expect(failedList.map((row) => row.id)).toContain(execution.id);
    expect(failedList.every((row) => row.status === 'failed')).toBe(true);

    const retry = (reason: string) =>
      retryExecution(t.app.deps.bus, { ctx: { tenant: org, actor: OPERATOR, source: 'api' }, input: { id: execution.id, reason } });

    // Still broken: the extra attempt fails and is final at once, not a new series.
    expect((await retry('first look')).status).toBe('queued');
    const again = await waitFor(async () => {
      const row = await getExecution(t.app.deps.sql, org, execution.id);
      return row.status === 'failed' && row.attempts === 4 ? row : undefined;
    }, 20_000, 'the manual attempt to fail');
    expect(again.error?.message).toBe('still broken on attempt 4');
    expect((await failures(execution.id)).map((failure) => [failure.attempt, failure.final])).toEqual([
      [1, false], [2, false], [3, true], [4, true],
    ]);

    brokenHealed = true;
    await retry('fixed the handler');
    const healed = await waitFor(async () => {
      const row = await getExecution(t.app.deps.sql, org, execution.id);
      return row.status === 'succeeded' ? row : undefined;
    }, 20_000, 'the manual attempt to succeed');
    expect(healed.attempts).toBe(5);
    expect(healed.error).toBeNull();
    const requests = await t.app.deps.sql<{ actor: Actor; payload: { reason: string } }[]>`
      select actor, payload from org_retries.signals
       where type = 'execution.retry_requested' and payload->>'execution_id' = ${execution.id} order by tx_id, seq`;
    expect(requests.map((row) => [row.actor.id, row.payload.reason])).toEqual([
      [OPERATOR.id, 'first look'],
      [OPERATOR.id, 'fixed the handler'],
    ]);

    // Only a failed execution can be retried.
    const refused = (await retry('once more').catch((caught: unknown) => caught)) as DomainError;
    expect(refused).toBeInstanceOf(DomainError);
    expect(refused.code).toBe('invalid_transition');
    expect(refused.status).toBe(409);
    expect((await getExecution(t.app.deps.sql, org, execution.id)).status).toBe('succeeded');
    const missing = (await retryExecution(t.app.deps.bus, { ctx: { tenant: org, actor: OPERATOR, source: 'api' }, input: { id: 'exe_doesnotexist' } })
      .catch((caught: unknown) => caught)) as DomainError;
    expect(missing.code).toBe('not_found');
  });
});

async function jobsFor(executionId: string): Promise<number> {
  const [row] = await t.app.deps.sql<{ count: number }[]>`
    select count(*)::int as count from graphile_worker._private_jobs where payload->>'execution_id' = ${executionId}`;
  return row!.count;
}

describe('a malformed job', () => {
  it('is recorded as a failed execution and completed, not retried', async () => {
    const executionId = 'exe_malformedpayload01';
    // Names its org and execution, but no signal.
    await addUncheckedJobs(t.app.deps.sql, [
      { identifier: HANDLE_SIGNAL, payload: { org_id: org.id, handler: 'test.flaky', execution_id: executionId, attempt: 1 } },
    ]);
    const execution = await waitFor(async () => {
      const row = await getExecution(t.app.deps.sql, org, executionId).catch(() => undefined);
      return row?.status === 'failed' ? row : undefined;
    }, 20_000, 'the malformed run to be recorded');
    expect(execution.error?.code).toBe('invalid_job_payload');
    expect(execution.handler).toBe('test.flaky');
    // A retried job would stay queued with a later run_at; a completed one is deleted.
    await waitFor(async () => (await jobsFor(executionId)) === 0, 10_000, 'the malformed job to be completed');
    expect(await failures(executionId)).toHaveLength(1);
  });

  it('that names no execution is completed without a trace in the org', async () => {
    const before = await t.app.deps.sql<{ count: number }[]>`select count(*)::int as count from org_retries.signals`;
    await addUncheckedJobs(t.app.deps.sql, [{ identifier: HANDLE_SIGNAL, payload: { org_id: org.id, marker: 'no-execution' } }]);
    await waitFor(async () => {
      const [row] = await t.app.deps.sql<{ count: number }[]>`
        select count(*)::int as count from graphile_worker._private_jobs where payload->>'marker' = 'no-execution'`;
      return row!.count === 0;
    }, 10_000, 'the malformed job to be completed');
    const after = await t.app.deps.sql<{ count: number }[]>`select count(*)::int as count from org_retries.signals`;
    expect(after[0]!.count).toBe(before[0]!.count);
  });
});

describe('executor outcomes', () => {
  let n = 0;
  async function run(mode: z.infer<typeof Mode>, until: readonly string[] = ['succeeded', 'failed']) {
    const { directive } = await proposeDirective(t.app.deps.bus.directives, {
      ctx: { tenant: org, actor: OPERATOR, source: 'api' },
      input: { kind: 'probe.call', params: { mode, n: ++n } },
    });
    expect(directive.status).toBe('approved');
    return waitFor(async () => {
      const row = await getDirective(t.app.deps.sql, org, directive.id);
      return until.includes(row.status) ? row : undefined;
    }, 20_000, `the ${mode} directive to finish`);
  }

  it('a retryable failure is retried after its Retry-After, then succeeds', async () => {
    const directive = await run('retry_once');
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2, result: { attempt: 2 }, error: null });
    expect(probeCalls.get(directive.id)).toBe(2);
    const executionId = executionIdOfDirective(directive.id);
    const [failure] = await failures(executionId);
    expect(failure).toMatchObject({ attempt: 1, final: false, directive_id: directive.id, error: { code: 'provider_busy' } });
    expect(gapMs(failure!)).toBeGreaterThanOrEqual(10);
    expect(await getExecution(t.app.deps.sql, org, executionId)).toMatchObject({ status: 'succeeded', attempts: 2, handler: 'executor:probe.call' });
  });

  it('an executor that throws is retried like a retryable failure', async () => {
    const directive = await run('throw_once');
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    const [failure] = await failures(executionIdOfDirective(directive.id));
    expect(failure).toMatchObject({ attempt: 1, final: false, error: { code: 'executor_error', message: 'socket hang up' } });
  });

  it('retryable failures stop at the executor bound and fail the directive', async () => {
    const directive = await run('always_retry');
    expect(directive).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'provider_busy', message: 'busy on attempt 3' } });
    expect(probeCalls.get(directive.id)).toBe(3);
    const failed = await failures(executionIdOfDirective(directive.id));
    expect(failed.map((failure) => [failure.attempt, failure.final])).toEqual([[1, false], [2, false], [3, true]]);
    // base 10 ms: [5, 10] then [10, 20] ms.
    expect(gapMs(failed[0]!)).toBeLessThanOrEqual(10);
    expect(gapMs(failed[1]!)).toBeGreaterThanOrEqual(10);
    expect(gapMs(failed[1]!)).toBeLessThanOrEqual(20);
    // An executor run is retried by proposing again, not by retrying the execution.
    const refused = (await retryExecution(t.app.deps.bus, {
      ctx: { tenant: org, actor: OPERATOR, source: 'api' },
      input: { id: executionIdOfDirective(directive.id) },
    }).catch((caught: unknown) => caught)) as DomainError;
    expect(refused.code).toBe('invalid_transition');
  });

  it('a permanent failure fails the directive at once with its error', async () => {
    const directive = await run('permanent');
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'card_declined', message: 'the card was declined' } });
    expect(probeCalls.get(directive.id)).toBe(1);
    expect(await failures(executionIdOfDirective(directive.id))).toMatchObject([{ attempt: 1, final: true, retry_at: null }]);
  });

  it('needing re-authorization fails the directive as needs_reauthorization, without retrying', async () => {
    const directive = await run('reauth');
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'needs_reauthorization', message: 'the refresh token was revoked' } });
    expect(probeCalls.get(directive.id)).toBe(1);
    expect(await getExecution(t.app.deps.sql, org, executionIdOfDirective(directive.id))).toMatchObject({ status: 'failed', attempts: 1 });
    const notices = await t.app.deps.sql<{ subject: string; payload: Record<string, unknown> }[]>`
      select subject, payload from org_retries.signals where type = 'secret.reauthorization_required'
         and payload->>'directive_id' = ${directive.id}`;
    expect(notices).toEqual([
      {
        subject: 'secret:org/probe_oauth',
        payload: { name: 'probe_oauth', owner: 'org', directive_id: directive.id, kind: 'probe.call', error: { code: 'invalid_grant', message: 'the refresh token was revoked' } },
      },
    ]);
  });
});
