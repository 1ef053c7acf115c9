import { describe, expect, it } from 'vitest';
import { orderedQueueName, planDispatch, stampOrdered, type PageRow, type Subscription } from './dispatch-plan.ts';

const row = (seq: number, type: string, subject: string | null = null): PageRow => ({
  tx_id: '100', seq: String(seq), id: `sig_${seq}`, type, subject, payload: {}, actor: { type: 'system', id: 'signalbus' },
  source: 'api', correlation_id: null, causation_id: null, trace: `tp-${seq}`,
});
const handler = (id: string, prefix: string, ordered = false): Subscription['handler'] => ({ id, ordered, matches: (signal) => signal.type.startsWith(prefix) });
const at = (seq: number) => ({ tx: 100n, seq: BigInt(seq) });
let counter = 0;
const ids = () => `exe_${++counter}`;

describe('planning a dispatch pass', () => {
  it('given a page, makes one job per signal past each checkpoint that its handler matches', () => {
    counter = 0;
    const page = [row(1, 'order.created'), row(2, 'mail.sent'), row(3, 'order.paid')];
    const subs = [
      { handler: handler('orders', 'order.'), position: at(0) },
      { handler: handler('mail', 'mail.'), position: at(2) },
    ];
    const { jobs, advanced } = planDispatch({ orgId: 'org_1', page, subs, newExecutionId: ids });
    expect(jobs.map((job) => [job.payload.org_id, 'handler' in job.payload && job.payload.handler, 'signal_id' in job.payload && job.payload.signal_id])).toEqual([
      ['org_1', 'orders', 'sig_1'],
      ['org_1', 'orders', 'sig_3'],
    ]);
    expect(jobs[0]).toMatchObject({ identifier: 'handle_signal', queue_name: null, payload: { execution_id: 'exe_1', attempt: 1, traceparent: 'tp-1' } });
    // Both checkpoints end at the page's last signal; the mail subscription had seen signal 2 already.
    expect(advanced).toEqual(['orders', 'mail']);
  });

  it('given a subscription already past the page, neither enqueues for it nor moves it back', () => {
    const { jobs, advanced } = planDispatch({ orgId: 'org_1', page: [row(1, 'order.created')], subs: [{ handler: handler('orders', 'order.'), position: at(5) }], newExecutionId: ids });
    expect(jobs).toEqual([]);
    expect(advanced).toEqual([]);
  });

  it('given an empty page, plans nothing', () => {
    expect(planDispatch({ orgId: 'org_1', page: [], subs: [{ handler: handler('orders', 'order.'), position: at(0) }], newExecutionId: ids })).toEqual({ jobs: [], advanced: [] });
  });

  it('given an ordered handler, queues a subject’s jobs on one lane with strictly increasing run_at', () => {
    const page = [row(1, 'order.created', 'order:1'), row(2, 'order.paid', 'order:1')];
    const { jobs } = planDispatch({ orgId: 'org_1', page, subs: [{ handler: handler('orders', 'order.', true), position: at(0) }], newExecutionId: ids });
    expect(jobs.map((job) => job.queue_name)).toEqual([orderedQueueName('org_1', 'orders', 'order:1'), orderedQueueName('org_1', 'orders', 'order:1')]);
    stampOrdered(jobs, 1_735_689_600_000_000n);
    expect(jobs.map((job) => job.run_at)).toEqual(['2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000001Z']);
  });
});
