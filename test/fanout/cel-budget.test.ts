/**
 * CEL past its budget in the background: a handler proposing under a policy
 * whose condition spends the budget fails its execution for good, with the
 * expression; a subscription condition that spends it does not match, and
 * the log names the handler and the expression.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { listExecutions } from '../../src/executions/read.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { emit } from '../../src/signals/emit.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const NESTED_POLICY = 'params.l.all(a, params.l.all(b, a + b >= 0))';
const NESTED_CONDITION = 'signal.payload.l.all(a, signal.payload.l.all(b, a + b >= 0))';

const proposer: Handler = {
  id: 'test.proposer',
  on: ['batch.received'],
  handle(signal, tools) {
    tools.propose({ kind: 'noop.record', params: { l: signal.payload.l }, key: 'record' });
  },
};
const picky: Handler = {
  id: 'test.picky',
  on: ['batch.received'],
  when: NESTED_CONDITION,
  handle() {},
};

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ handlers: [proposer, picky] });
  org = await t.createOrg('cel_fanout');
  await updatePolicy(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' },
    input: { rules: [{ id: 'costly', match: 'noop.*', when: NESTED_POLICY, effect: 'deny' }, { id: 'allow-noop', match: 'noop.*', effect: 'allow' }] },
  });
  await t.startWorker();
});
afterAll(() => t.close());

describe('CEL past its budget in handlers', () => {
  it('fails the proposing execution for good with the rule and its expression; the condition does not match and is logged', async () => {
    const { signal } = await emit(t.app.deps.bus.emit, {
      ctx: { tenant: org, actor: { type: 'human', id: 'ana' }, source: 'api' },
      input: { type: 'batch.received', subject: 'batch:1', payload: { l: Array.from({ length: 1000 }, (_, i) => i) } },
    });
    const execution = await waitFor(async () => {
      const { data } = await listExecutions(t.app.deps.sql, org, { handler: 'test.proposer', signalId: signal.id, limit: 10 });
      return data[0]?.status === 'failed' ? data[0] : undefined;
    }, 20_000, 'the proposing execution to fail');
    expect(execution.attempts).toBe(1);
    expect(execution.error).toMatchObject({ code: 'cel_budget_exceeded' });
    expect(execution.error!.message).toContain(`rules.0.when: ${NESTED_POLICY}`);

    const logged = await waitFor(
      () => t.logs.map((line) => JSON.parse(line)).find((entry) => entry.msg === 'handler condition failed; not matched' && entry.handler === 'test.picky'),
      20_000,
      'the condition failure to be logged',
    );
    expect(logged.error).toMatch(/exceeded the (cost|time) limit/);
    expect(logged.error).toContain(NESTED_CONDITION);
    const { data: picked } = await listExecutions(t.app.deps.sql, org, { handler: 'test.picky', signalId: signal.id, limit: 10 });
    expect(picked).toEqual([]);
  });
});
