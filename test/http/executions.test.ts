/**
 * Executions and signal traces over HTTP, with a running worker: handlers
 * that fail, recover on retry, or fan out into a derived signal and a
 * directive. Per route a happy case, an error case and a security case.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { newId } from '../../src/core/ids.ts';
import type { Executor } from '../../src/executors/registry.ts';
import type { Execution } from '../../src/executions/read.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import type { TraceNode } from '../../src/handlers/trace.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { alwaysFails, HOLD_POLICY, setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp, type TestResponse } from '../support/harness.ts';

/** Fails its first attempt (final: one attempt allowed), succeeds when retried by hand. */
const recovers: Handler = {
  id: 'test.recovers',
  on: ['exec.shaky'],
  maxAttempts: 1,
  start: 'beginning',
  handle(_signal, tools) {
    if (tools.attempt === 1) throw new Error('first attempts always fail');
  },
};

/** One input, two outputs: a derived signal and a directive. */
const fansOut: Handler = {
  id: 'test.fans_out',
  on: ['exec.order.placed'],
  start: 'beginning',
  handle(signal, tools) {
    tools.emit({ type: 'exec.order.recorded', subject: signal.subject, payload: { order: signal.payload.order }, key: 'recorded' });
    tools.propose({ kind: 'noop.record', params: { order: signal.payload.order }, key: 'record' });
  },
};

/** An executor that fails for good: its directive fails with its execution. */
const brokenExecutor: Executor<Record<string, unknown>> = {
  kinds: ['test.broken'],
  params: z.record(z.string(), z.unknown()),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  maxAttempts: 1,
  async execute() {
    return { outcome: 'permanent', error: { code: 'broken', message: 'this executor never works' } };
  },
};

let t: TestApp;
let org: Tenant;
let other: Tenant;
const keys = {} as Record<'viewer' | 'operator' | 'otherOperator', string>;

const call = (method: string, rest: string, key: string, body?: unknown, tenant = org) =>
  t.request(method, `/v1/orgs/${tenant.slug}${rest}`, { key, ...(body !== undefined ? { body } : {}) });

function expectProblem(response: TestResponse, status: number, code: string) {
  expect(response.status, response.text).toBe(status);
  expect(response.headers.get('content-type')).toContain('application/problem+json');
  expect(response.body.code).toBe(code);
}

async function emitSignal(type: string, payload: Record<string, unknown>, subject?: string): Promise<string> {
  const response = await call('POST', '/signals', keys.operator, { type, payload, ...(subject ? { subject } : {}) });
  expect(response.status, response.text).toBe(201);
  return response.body.signal.id;
}

/** The one execution of `handler` on `signalId`, once it is in `status`. */
async function executionOf(handler: string, signalId: string, status: Execution['status']): Promise<Execution> {
  return waitFor(async () => {
    const page = await call('GET', `/executions?handler=${handler}&limit=1000`, keys.viewer);
    const found = page.body.data.find((execution: Execution) => execution.signal_id === signalId);
    return found?.status === status ? (found as Execution) : undefined;
  }, 15_000, `${handler} on ${signalId} to be ${status}`);
}

beforeAll(async () => {
  t = await createTestApp({ handlers: [alwaysFails, recovers, fansOut], executors: [brokenExecutor] });
  org = await t.createOrg('exe_a');
  other = await t.createOrg('exe_b');
  keys.viewer = await t.createKey(org, 'viewer');
  keys.operator = await t.createKey(org, 'operator');
  keys.otherOperator = await t.createKey(other, 'operator');
  await setPolicy(t, org, { rules: [...HOLD_POLICY.rules, { id: 'allow-broken', match: 'test.broken', effect: 'allow' }] });
  await t.startWorker({ pollIntervalMs: 50 });
});
afterAll(() => t.close());

describe('GET /v1/orgs/{org}/executions', () => {
  it('lists failed runs with ?status=failed and filters by handler', async () => {
    const doomed = [await emitSignal('test.doomed', { n: 1 }), await emitSignal('test.doomed', { n: 2 })];
    for (const signalId of doomed) await executionOf(alwaysFails.id, signalId, 'failed');

    const failed = await call('GET', '/executions?status=failed&limit=1000', keys.viewer);
    expect(failed.status).toBe(200);
    expect(failed.body.data.every((execution: Execution) => execution.status === 'failed')).toBe(true);
    const mine = failed.body.data.filter((execution: Execution) => doomed.includes(execution.signal_id!));
    expect(mine).toHaveLength(2);
    for (const execution of mine) {
      expect(execution).toMatchObject({
        handler: alwaysFails.id,
        directive_id: null,
        attempts: 1,
        error: { code: 'handler_error', message: 'this handler always fails' },
        outputs: { signals: [], directives: [] },
      });
      expect(execution.id).toMatch(/^exe_/);
      expect(execution.finished_at).not.toBeNull();
    }
    const byHandler = await call('GET', `/executions?handler=${recovers.id}`, keys.viewer);
    expect(byHandler.body.data.every((execution: Execution) => execution.handler === recovers.id)).toBe(true);
  });

  it('pages with limit and after, each execution once, in creation order', async () => {
    await emitSignal('test.doomed', { n: 3 });
    const all = await waitFor(async () => {
      const page = await call('GET', '/executions?limit=1000', keys.viewer);
      return page.body.data.length >= 3 && page.body;
    }, 15_000, 'three executions');
    const walked: string[] = [];
    let after: string | null = null;
    do {
      const page = await call('GET', `/executions?limit=1${after ? `&after=${after}` : ''}`, keys.viewer);
      expect(page.status).toBe(200);
      walked.push(...page.body.data.map((execution: Execution) => execution.id));
      after = page.body.next_cursor;
    } while (after);
    expect(walked.slice(0, all.data.length)).toEqual(all.data.map((execution: Execution) => execution.id));
    expect(new Set(walked).size).toBe(walked.length);
  });

  it('answers an unknown status or a bad limit with 422', async () => {
    expectProblem(await call('GET', '/executions?status=exploded', keys.viewer), 422, 'validation_failed');
    expectProblem(await call('GET', '/executions?limit=5000', keys.viewer), 422, 'validation_failed');
  });

  it("answers another org's key 404 and shows that org none of these runs", async () => {
    expectProblem(await call('GET', '/executions', keys.otherOperator), 404, 'not_found');
    const theirs = await call('GET', '/executions?limit=1000', keys.otherOperator, undefined, other);
    expect(theirs.status).toBe(200);
    expect(theirs.body.data).toEqual([]);
  });
});

describe('GET /v1/orgs/{org}/executions/{id}', () => {
  it('returns one execution', async () => {
    const signalId = await emitSignal('test.doomed', { n: 'get' });
    const execution = await executionOf(alwaysFails.id, signalId, 'failed');
    const response = await call('GET', `/executions/${execution.id}`, keys.viewer);
    expect(response.status).toBe(200);
    expect(response.body.execution).toEqual(execution);
  });

  it('answers 404 for unknown ids and ids of another kind', async () => {
    for (const id of [newId('execution'), newId('directive'), 'exe_', 'latest']) {
      expectProblem(await call('GET', `/executions/${id}`, keys.viewer), 404, 'not_found');
    }
  });

  it("answers another org's key 404, by this org and by its own", async () => {
    const signalId = await emitSignal('test.doomed', { n: 'iso' });
    const execution = await executionOf(alwaysFails.id, signalId, 'failed');
    expectProblem(await call('GET', `/executions/${execution.id}`, keys.otherOperator), 404, 'not_found');
    expectProblem(await call('GET', `/executions/${execution.id}`, keys.otherOperator, undefined, other), 404, 'not_found');
  });
});

describe('POST /v1/orgs/{org}/executions/{id}/retry', () => {
  it('requeues a failed run as the operator (200), refuses a second retry while queued (409), then succeeds', async () => {
    const signalId = await emitSignal('exec.shaky', { n: 1 });
    const failed = await executionOf(recovers.id, signalId, 'failed');
    expect(failed.attempts).toBe(1);

    const retried = await call('POST', `/executions/${failed.id}/retry`, keys.operator, { reason: 'fixed upstream' });
    expect(retried.status, retried.text).toBe(200);
    expect(retried.body.execution).toMatchObject({ id: failed.id, status: 'queued' });
    expectProblem(await call('POST', `/executions/${failed.id}/retry`, keys.operator), 409, 'invalid_transition');

    const succeeded = await executionOf(recovers.id, signalId, 'succeeded');
    expect(succeeded).toMatchObject({ id: failed.id, attempts: 2, error: null });
    expectProblem(await call('POST', `/executions/${failed.id}/retry`, keys.operator), 409, 'invalid_transition');

    const requests = await waitFor(async () => {
      const page = await call('GET', '/signals?type=execution.retry_requested&limit=1000', keys.viewer);
      return page.body.data.find((signal: { payload: { execution_id: string } }) => signal.payload.execution_id === failed.id);
    }, 10_000, 'the retry request below the horizon');
    expect(requests).toMatchObject({ actor: { type: 'human', id: 'operator@exe_a.test' }, payload: { reason: 'fixed upstream' } });
  });

  it("answers 409 for a directive's failed run: that is retried by proposing the directive again", async () => {
    const proposed = await call('POST', '/directives', keys.operator, { kind: 'test.broken', params: { n: 1 } });
    expect(proposed.status).toBe(201);
    const execution = await waitFor(async () => {
      const page = await call('GET', '/executions?handler=executor:test.broken&status=failed', keys.viewer);
      return page.body.data.find((row: Execution) => row.directive_id === proposed.body.directive.id) as Execution | undefined;
    }, 15_000, 'the executor run to fail');
    expectProblem(await call('POST', `/executions/${execution.id}/retry`, keys.operator), 409, 'invalid_transition');
  });

  it('answers 404 for unknown and malformed ids', async () => {
    for (const id of [newId('execution'), newId('signal'), 'exe_NOT_AN_ID']) {
      expectProblem(await call('POST', `/executions/${id}/retry`, keys.operator), 404, 'not_found');
    }
  });

  it('refuses a viewer (403) and another org (404); the run stays failed', async () => {
    const signalId = await emitSignal('test.doomed', { n: 'guarded' });
    const execution = await executionOf(alwaysFails.id, signalId, 'failed');
    expectProblem(await call('POST', `/executions/${execution.id}/retry`, keys.viewer), 403, 'forbidden');
    expectProblem(await call('POST', `/executions/${execution.id}/retry`, keys.otherOperator), 404, 'not_found');
    expectProblem(await call('POST', `/executions/${execution.id}/retry`, keys.otherOperator, {}, other), 404, 'not_found');
    expect((await call('GET', `/executions/${execution.id}`, keys.viewer)).body.execution.status).toBe('failed');
  });
});

describe('GET /v1/orgs/{org}/signals/{id}/trace', () => {
  it('shows the handler run, its derived signal and its directive with decision and status', async () => {
    const signalId = await emitSignal('exec.order.placed', { order: 'o-7' }, 'order:o-7');
    const trace = await waitFor(async () => {
      const response = await call('GET', `/signals/${signalId}/trace`, keys.viewer);
      expect(response.status).toBe(200);
      const directive = response.body.trace.root.executions[0]?.directives[0];
      return directive?.status === 'succeeded' && directive.execution?.status === 'succeeded' && response.body.trace;
    }, 15_000, 'the fan-out to complete');

    expect(trace.truncated).toBe(false);
    const root: TraceNode = trace.root;
    expect(root.signal).toMatchObject({ id: signalId, type: 'exec.order.placed' });
    expect(root.executions).toHaveLength(1);
    const [run] = root.executions;
    expect(run).toMatchObject({ handler: fansOut.id, status: 'succeeded', signal_id: signalId, attempts: 1 });
    expect(run!.signals).toHaveLength(1);
    expect(run!.signals[0]!.signal).toMatchObject({
      type: 'exec.order.recorded',
      causation_id: signalId,
      payload: { order: 'o-7' },
      source: `handler:${fansOut.id}`,
    });
    expect(run!.signals[0]!.executions).toEqual([]);
    expect(run!.directives).toEqual([
      expect.objectContaining({
        kind: 'noop.record',
        status: 'succeeded',
        decision: expect.objectContaining({ effect: 'allow', rule: 'allow-noop' }),
        execution: expect.objectContaining({ handler: 'executor:noop.record', status: 'succeeded' }),
      }),
    ]);
  });

  it('answers 404 for an unknown or malformed signal id', async () => {
    for (const id of [newId('signal'), newId('execution'), 'sig_']) {
      expectProblem(await call('GET', `/signals/${id}/trace`, keys.viewer), 404, 'not_found');
    }
  });

  it("answers another org's key 404, by this org and by its own", async () => {
    const signalId = await emitSignal('exec.order.placed', { order: 'o-8' });
    expectProblem(await call('GET', `/signals/${signalId}/trace`, keys.otherOperator), 404, 'not_found');
    expectProblem(await call('GET', `/signals/${signalId}/trace`, keys.otherOperator, undefined, other), 404, 'not_found');
  });
});
