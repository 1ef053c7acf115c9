/**
 * Fan-out fixtures for the HTTP suites: a policy that holds some directives
 * for approval, a handler that always fails, and directives and executions
 * in the state a route needs — made through the domain verbs, never by
 * writing projection rows.
 */
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { newId } from '../../src/core/ids.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import type { Directive } from '../../src/directives/store.ts';
import { getExecution, type Execution } from '../../src/executions/read.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { runHandleSignal } from '../../src/handlers/runtime.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import type { TestApp } from './harness.ts';

/** `noop.record` directives with a `hold` param wait for approval; other noop ones run at once. */
export const HOLD_POLICY = {
  rules: [
    { id: 'hold', match: 'noop.record', when: 'has(params.hold)', effect: 'require_approval', reason: 'held for review' },
    { id: 'allow-noop', match: 'noop.*', effect: 'allow' },
  ],
};

/**
 * Fails every run, with no retry: its executions end `failed` at once.
 * Subscribes from the beginning, so under a worker no signal emitted before
 * the dispatcher first saw the org is missed.
 */
export const alwaysFails: Handler = {
  id: 'test.always_fails',
  on: ['test.doomed'],
  maxAttempts: 1,
  start: 'beginning',
  handle() {
    throw new Error('this handler always fails');
  },
};

export async function setPolicy(t: TestApp, tenant: Tenant, input: unknown = HOLD_POLICY) {
  return updatePolicy(t.app.deps.bus.emit, { ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system' }, input });
}

/** A fresh `noop.record` directive; with HOLD_POLICY it is awaiting approval. */
export async function heldDirective(
  t: TestApp,
  tenant: Tenant,
  { params = {}, idempotencyKey }: { params?: Record<string, unknown>; idempotencyKey?: string } = {},
): Promise<Directive> {
  const { directive } = await proposeDirective(t.app.deps.bus.directives, {
    ctx: { tenant, actor: { type: 'human', id: `proposer@${tenant.slug}.test` }, source: 'api' },
    input: { kind: 'noop.record', params: { hold: true, ...params }, ...(idempotencyKey ? { idempotency_key: idempotencyKey } : {}) },
  });
  return directive;
}

/**
 * A fresh failed execution of `alwaysFails` (which the app must register):
 * one `handle_signal` job body run in process, as a worker would run it, so
 * no worker is needed and the result is there when this returns.
 */
export async function failedExecution(t: TestApp, tenant: Tenant, payload: Record<string, unknown> = {}): Promise<Execution> {
  const { signal } = await emit(t.app.deps.bus.emit, {
    ctx: { tenant, actor: { type: 'human', id: `doomer@${tenant.slug}.test` }, source: 'api' },
    input: { type: 'test.doomed', payload: { n: newId('request'), ...payload } },
  });
  const executionId = newId('execution');
  await runHandleSignal(t.app.deps.bus.runtime, {
    tenant,
    job: { org_id: tenant.id, handler: alwaysFails.id, signal_id: signal.id, execution_id: executionId, attempt: 1, traceparent: null },
  });
  return getExecution(t.app.deps.sql, tenant, executionId);
}
