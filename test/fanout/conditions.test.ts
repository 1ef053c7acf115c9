import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Handler } from '../../src/handlers/registry.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const seen: string[] = [];
const big: Handler = {
  id: 'cond.big_human_orders',
  on: ['cond.order.*'],
  start: 'beginning',
  // Reads the actor, the subject and the payload: the dispatcher must fetch all three.
  when: "signal.actor.type == 'human' && signal.subject.startsWith('customer:') && signal.payload.amount > 100",
  handle(signal) {
    seen.push(signal.id);
  },
};
const everyOrder: Handler = { id: 'cond.every_order', on: ['cond.order.*'], start: 'beginning', handle() {} };

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ handlers: [big, everyOrder] });
  org = await t.createOrg('conditions');
  await t.startWorker();
});
afterAll(() => t.close());

const send = (actorType: 'human' | 'agent', subject: string, payload: Record<string, unknown>) =>
  emit(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: { type: actorType, id: `${actorType}@conditions.test` }, source: 'api' },
    input: { type: 'cond.order.placed', subject, payload },
  }).then(({ signal }) => signal.id);

describe('handler conditions (CEL over the signal)', () => {
  it('run a handler only on the signals its condition accepts; a condition that fails to evaluate is a non-match', async () => {
    const match = await send('human', 'customer:1', { amount: 150 });
    const ids = [
      match,
      await send('agent', 'customer:2', { amount: 500 }), // not a human
      await send('human', 'order:3', { amount: 500 }), // another subject family
      await send('human', 'customer:4', { amount: 100 }), // not above 100
      await send('human', 'customer:5', { note: 'no amount' }), // evaluation error: no such key
    ];
    // The unconditional handler runs on all five: the dispatcher has passed them all.
    await waitFor(async () => {
      const [row] = await t.app.deps.sql<{ n: number }[]>`
        select count(*)::int as n from org_conditions.executions where handler = 'cond.every_order' and status = 'succeeded'`;
      return row!.n === ids.length;
    }, 20_000, 'the unconditional handler to run on every order');
    const runs = await t.app.deps.sql<{ signal_id: string }[]>`
      select signal_id from org_conditions.executions where handler = 'cond.big_human_orders'`;
    expect(runs.map((run) => run.signal_id)).toEqual([match]);
    expect(seen).toEqual([match]);
    expect(t.logs.some((line) => line.includes('handler condition failed') && line.includes('cond.big_human_orders'))).toBe(true);
  });
});
