/**
 * A redelivery with more outputs than a signal can list: its completion is
 * still recorded — the report's lists are cut to fit the org's payload
 * limit and marked truncated, its counts stay exact — instead of the
 * replay failing on a report too large to record.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { ensureSubscriptions } from '../../src/handlers/subscriptions.ts';
import { runReplay } from '../../src/replay/run.ts';
import { emitBatch } from '../../src/signals/emit.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { request, untilEnded } from './support.ts';

const MAX_PAYLOAD_BYTES = 16 * 1024;
const SIGNALS = 120;

const noter: Handler = {
  id: 'test.noter',
  on: ['order.placed'],
  handle(signal, tools) {
    tools.emit({ type: 'order.noted', subject: signal.subject, payload: { of: signal.id }, key: 'noted' });
    tools.propose({ kind: 'noop.record', params: { order: signal.id, note: 'n'.repeat(100) }, key: 'record' });
  },
};

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ handlers: [noter], env: { SIGNALBUS_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES) } });
  org = await t.createOrg('rpl_big_report');
  await ensureSubscriptions(t.app.deps.sql, org, [noter]);
  await emitBatch(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: { type: 'integration', id: 'shop' }, source: 'api' },
    inputs: Array.from({ length: SIGNALS }, (_, i) => ({ type: 'order.placed', subject: `order:${i}`, payload: { i } })),
  });
  // Below the horizon, so the redelivery's plan sees them all.
  await t.settle();
});
afterAll(() => t?.close());

describe('a redelivery whose report would not fit in a signal', () => {
  it('completes with its lists cut to fit and marked truncated, its counts exact', async () => {
    const replay = await request(t, org, { mode: 'redeliver', selection: { types: ['order.placed'] } });
    await runReplay(t.app.deps.bus.replays, { tenant: org, replayId: replay.id });
    const done = await untilEnded(t, org, replay.id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const report = done.report as { directives_new: number; signals_new: number; truncated: boolean; proposed: unknown[]; emitted: unknown[] };
    expect(report).toMatchObject({ directives_new: SIGNALS, signals_new: SIGNALS, truncated: true });
    expect(report.proposed.length).toBeGreaterThan(0);
    expect(report.proposed.length).toBeLessThan(SIGNALS);
    const [completed] = await t.app.deps.sql<{ bytes: number }[]>`
      select octet_length(payload::text) as bytes from ${t.app.deps.sql(`${org.schema}.signals`)}
       where type = 'replay.completed' and subject = ${`replay:${replay.id}`}`;
    expect(completed!.bytes).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
  });
});
