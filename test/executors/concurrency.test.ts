/**
 * Directive executions run on their own runner with their own concurrency:
 * executions mostly wait on providers, so a worker holds more of them in
 * flight than it runs handler jobs, and they share claiming and recording
 * transactions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { PLATFORM_ACTOR } from '../../src/auth/actor.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import type { ExecuteResult, Executor } from '../../src/executors/registry.ts';
import type { Tenant } from '../../src/tenancy/tenant.ts';
import { finishedDirective } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const EXECUTOR_CONCURRENCY = 6;
let inFlight = 0;
let mostInFlight = 0;
let release!: () => void;
const released = new Promise<void>((resolve) => (release = resolve));

const heldExecutor: Executor<{ n: number }> = {
  kinds: ['held.call'],
  params: z.object({ n: z.number() }),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  async execute(): Promise<ExecuteResult> {
    mostInFlight = Math.max(mostInFlight, ++inFlight);
    await released;
    inFlight--;
    return { outcome: 'succeeded', result: { ok: true } };
  },
};

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ executors: [heldExecutor] });
  org = await t.createOrg('exec_concurrency');
  await setPolicy(t, org, { rules: [{ id: 'allow', match: 'held.*', effect: 'allow' }] });
  await t.startWorker({ concurrency: 1, executorConcurrency: EXECUTOR_CONCURRENCY });
});
afterAll(() => t.close());

describe('executor concurrency', () => {
  it('holds as many executions in flight as it is given, beyond the handler-job concurrency, and no more', async () => {
    const ids: string[] = [];
    for (let n = 0; n < EXECUTOR_CONCURRENCY + 3; n++) {
      const { directive } = await proposeDirective(t.app.deps.bus.directives, {
        ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'api' },
        input: { kind: 'held.call', params: { n }, idempotency_key: `held-${n}` },
      });
      ids.push(directive.id);
    }
    await waitFor(() => inFlight === EXECUTOR_CONCURRENCY, 15_000, `${EXECUTOR_CONCURRENCY} executions in flight`);
    // Given time, no seventh starts while six are held.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(inFlight).toBe(EXECUTOR_CONCURRENCY);
    release();
    for (const id of ids) expect((await finishedDirective(t, org, id, 15_000)).status).toBe('succeeded');
    expect(mostInFlight).toBe(EXECUTOR_CONCURRENCY);
  });
});
