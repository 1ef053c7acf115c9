import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emit } from '../../src/signals/emit.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const proposer: Handler = {
  id: 'test.proposer',
  on: ['order.placed'],
  handle(signal, tools) {
    tools.propose({ kind: 'noop.record', params: { order: signal.payload.id }, key: 'record' });
    tools.emit({ type: 'order.recorded', payload: { id: signal.payload.id }, key: 'recorded' });
  },
};

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ handlers: [proposer] });
  org = await t.createOrg('pipeline');
  await updatePolicy(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' },
    input: { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] },
  });
  await t.startWorker();
});
afterAll(() => t.close());

describe('pipeline', () => {
  it('carries a signal through a handler to an executed directive', async () => {
    const { signal } = await emit(t.app.deps.bus.emit, {
      ctx: { tenant: org, actor: { type: 'human', id: 'ana' }, source: 'api' },
      input: { type: 'order.placed', subject: 'order:1', payload: { id: 'o1' } },
    });
    const directive = await waitFor(async () => {
      const [row] = await t.app.deps.sql<{ status: string; result: unknown }[]>`
        select status, result from org_pipeline.directives where causation_id = ${signal.id}`;
      return row?.status === 'succeeded' ? row : undefined;
    }, 15_000, 'directive to succeed');
    expect(directive.result).toEqual({ order: 'o1' });
    const executions = await t.app.deps.sql`select handler, status from org_pipeline.executions order by handler`;
    expect(executions.map((row) => `${row.handler}:${row.status}`)).toEqual([
      'executor:noop.record:succeeded',
      'test.proposer:succeeded',
    ]);
  });
});
