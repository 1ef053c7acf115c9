/**
 * Executors that call without a claim (`claimBeforeCall: false`): their
 * providers deduplicate by the directive id, so an attempt is recorded once,
 * with its outcome. The execute path runs here without a worker, so each
 * test decides which runs happen.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { DomainError } from '../../src/core/errors.ts';
import { executeDirective, executionIdOfDirective } from '../../src/directives/execute.ts';
import { getDirective } from '../../src/directives/store.ts';
import { decideDirective } from '../../src/directives/transitions.ts';
import { createExecutorRegistry, type ExecuteResult, type Executor } from '../../src/executors/registry.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { proposeApproved, proposeAs } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

/** Answers from `next` (success when empty); counts calls per directive. */
function scriptedExecutor(kind: string, claimBeforeCall: boolean) {
  const calls = new Map<string, number>();
  const next: ExecuteResult[] = [];
  const executor: Executor<Record<string, unknown>> = {
    kinds: [kind],
    params: z.record(z.string(), z.unknown()),
    estimateCostUsd: () => 0,
    honorsIdempotencyKey: true,
    claimBeforeCall,
    maxAttempts: 3,
    async execute({ directiveId, params }) {
      calls.set(directiveId, (calls.get(directiveId) ?? 0) + 1);
      return next.shift() ?? { outcome: 'succeeded', result: params };
    },
  };
  return { executor, calls, next };
}

const relay = scriptedExecutor('relay.send', false);
const claimed = scriptedExecutor('claimed.send', true);
let t: TestApp;
let org: Tenant;
let counter = 0;
const by = () => ({ tenant: org, actor: PLATFORM_ACTOR });

beforeAll(async () => {
  t = await createTestApp({ executors: [relay.executor, claimed.executor] });
  org = await t.createOrg('unclaimed');
  await setPolicy(t, org, {
    rules: [
      { id: 'allow', match: '*', effect: 'allow' },
      { id: 'review', match: '*', when: "params.mode == 'review'", effect: 'require_approval' },
    ],
  });
});
afterAll(() => t?.close());

const propose = (kind: string, mode = 'go') => proposeApproved(t, by(), { kind, params: { mode, n: ++counter } });
const run = (directiveId: string, attempt?: number) =>
  executeDirective(t.app.deps.bus.directives, { tenant: org, directiveId, traceparent: null, attempt });

async function lifecycle(directiveId: string): Promise<string[]> {
  const rows = await t.app.deps.sql<{ type: string }[]>`
    select type from org_unclaimed.signals where subject = ${`directive:${directiveId}`} order by tx_id, seq`;
  return rows.map((row) => row.type);
}

describe('an executor whose provider deduplicates for good', () => {
  it('records the attempt once, with its outcome: no claim signals, the execution row from the outcome alone', async () => {
    const directive = await propose('relay.send');
    await run(directive.id);
    expect(relay.calls.get(directive.id)).toBe(1);
    expect(await lifecycle(directive.id)).toEqual(['directive.proposed', 'execution.succeeded', 'directive.succeeded']);
    expect(await getDirective(t.app.deps.sql, org, directive.id)).toMatchObject({ status: 'succeeded', attempts: 1, result: directive.params });
    const [execution] = await t.app.deps.sql`
      select status, attempts, started_at, finished_at from org_unclaimed.executions where id = ${executionIdOfDirective(directive.id)}`;
    expect(execution).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(execution!.started_at).not.toBeNull();
    expect(execution!.finished_at).not.toBeNull();

    // A redelivered job finds it finished and calls nobody.
    await run(directive.id, 2);
    expect(relay.calls.get(directive.id)).toBe(1);
  });

  it('numbers attempts by its retry jobs', async () => {
    const directive = await propose('relay.send');
    relay.next.push({ outcome: 'retryable', error: { code: 'unavailable', message: 'try later' } });
    await run(directive.id);
    expect((await getDirective(t.app.deps.sql, org, directive.id)).status).toBe('approved');
    // The retry job carries the attempt it makes.
    await run(directive.id, 2);
    expect(relay.calls.get(directive.id)).toBe(2);
    const attempts = await t.app.deps.sql<{ type: string; attempt: number }[]>`
      select type, (payload->>'attempt')::int as attempt from org_unclaimed.signals
       where subject = ${`directive:${directive.id}`} and type like 'execution.%' order by tx_id, seq`;
    expect(attempts).toEqual([{ type: 'execution.failed', attempt: 1 }, { type: 'execution.succeeded', attempt: 2 }]);
    expect(await getDirective(t.app.deps.sql, org, directive.id)).toMatchObject({ status: 'succeeded', attempts: 2 });
  });

  it('refuses to cancel an approved directive, as its call may be under way; one awaiting approval still cancels', async () => {
    const approved = await propose('relay.send');
    const ctx = { tenant: org, actor: PLATFORM_ACTOR, source: 'api' };
    const refusal = await decideDirective(t.app.deps.bus.directives, { ctx, input: { id: approved.id, action: 'cancel' } }).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(DomainError);
    expect(refusal).toMatchObject({ code: 'invalid_transition' });
    expect((await getDirective(t.app.deps.sql, org, approved.id)).status).toBe('approved');

    const waiting = await proposeAs(t, by(), { kind: 'relay.send', params: { mode: 'review', n: ++counter } });
    expect(waiting.status).toBe('awaiting_approval');
    expect(await decideDirective(t.app.deps.bus.directives, { ctx, input: { id: waiting.id, action: 'cancel' } })).toMatchObject({ status: 'cancelled' });
    await run(waiting.id);
    expect(relay.calls.get(waiting.id)).toBeUndefined();
  });
});

describe('an executor that claims before calling', () => {
  it('records the claim first, and an approved directive can still be cancelled before it runs', async () => {
    const directive = await propose('claimed.send');
    await run(directive.id);
    expect(await lifecycle(directive.id)).toEqual([
      'directive.proposed', 'directive.executing', 'execution.started', 'execution.succeeded', 'directive.succeeded',
    ]);

    const approved = await propose('claimed.send');
    const ctx = { tenant: org, actor: PLATFORM_ACTOR, source: 'api' };
    expect(await decideDirective(t.app.deps.bus.directives, { ctx, input: { id: approved.id, action: 'cancel' } })).toMatchObject({ status: 'cancelled' });
    await run(approved.id);
    expect(claimed.calls.get(approved.id)).toBeUndefined();
  });
});

it('the registry refuses an executor that would call without a claim but cannot deduplicate', () => {
  const { executor } = scriptedExecutor('loose.send', false);
  expect(() => createExecutorRegistry([{ ...executor, honorsIdempotencyKey: false }])).toThrow(/deduplicate/);
  expect(() => createExecutorRegistry([{ ...executor, idempotencyWindowMs: 1000 }])).toThrow(/deduplicate/);
});
