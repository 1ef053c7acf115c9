/**
 * A handler's proposal with params its executor refuses is recorded as the
 * handler's failed execution, naming the bad fields — nothing is proposed,
 * and the refusal is permanent (a retry would propose the same).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listExecutions } from '../../src/executions/read.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const refunder: Handler = {
  id: 'test.refunder',
  on: ['order.refund_requested'],
  handle(signal, tools) {
    const payload = signal.payload as { payment_intent?: string; amount: unknown };
    tools.propose({ kind: 'stripe.refund.create', params: { payment_intent: payload.payment_intent, amount: payload.amount }, key: 'refund' });
  },
};

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ handlers: [refunder] });
  org = await t.createOrg('handler_proposals');
  await t.startWorker();
});
afterAll(() => t.close());

describe('a handler proposing params its executor refuses', () => {
  it('fails its execution with the bad fields, permanently, and proposes nothing', async () => {
    const { signal } = await emit(t.app.deps.bus.emit, {
      ctx: { tenant: org, actor: { type: 'human', id: 'ana' }, source: 'api' },
      input: { type: 'order.refund_requested', subject: 'order:1', payload: { payment_intent: 'pi_1', amount: -5 } },
    });
    const failed = await waitFor(async () => {
      const { data } = await listExecutions(t.app.deps.sql, org, { handler: 'test.refunder', signalId: signal.id, limit: 5 });
      return data[0]?.status === 'failed' ? data[0] : undefined;
    }, 20_000, 'the handler run to fail');
    expect(failed.attempts).toBe(1);
    expect(failed.error?.code).toBe('validation_failed');
    expect(failed.error?.message).toMatch(/params are not valid for stripe\.refund\.create \(params\.amount: /);
    const [row] = await t.app.deps.sql<{ n: number }[]>`select count(*)::int as n from org_handler_proposals.directives`;
    expect(row!.n).toBe(0);
  });
});
