/**
 * Directive executions run on their own runner, bounded by provider calls
 * in flight rather than by executions: a worker makes at most
 * `executorConcurrency` calls at once, beyond its handler-job concurrency,
 * while more executions read their directives and record their outcomes
 * around those calls, in shared transactions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { getDirective } from '../../src/directives/store.ts';
import type { ExecuteResult, Executor } from '../../src/executors/registry.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { finishedDirective } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const EXECUTOR_CONCURRENCY = 6;

/** Calls in flight, held until released. */
function heldCalls() {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const state = { inFlight: 0, most: 0, calls: 0, release };
  const execute = async (): Promise<ExecuteResult> => {
    state.calls++;
    state.most = Math.max(state.most, ++state.inFlight);
    await released;
    state.inFlight--;
    return { outcome: 'succeeded', result: { ok: true } };
  };
  return { state, execute };
}

const claimed = heldCalls();
const claimedExecutor: Executor<{ n: number }> = {
  kinds: ['held.call'],
  params: z.object({ n: z.number() }),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  execute: claimed.execute,
};

let unclaimedCalls = 0;
const unclaimedExecutor: Executor<{ n: number }> = {
  kinds: ['quick.call'],
  params: z.object({ n: z.number() }),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  claimBeforeCall: false,
  async execute() {
    unclaimedCalls++;
    return { outcome: 'succeeded', result: { ok: true } };
  },
};

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ executors: [claimedExecutor, unclaimedExecutor] });
  org = await t.createOrg('exec_concurrency');
  await setPolicy(t, org, { rules: [{ id: 'allow-held', match: 'held.*', effect: 'allow' }, { id: 'allow-quick', match: 'quick.*', effect: 'allow' }] });
  await t.startWorker({ concurrency: 1, executorConcurrency: EXECUTOR_CONCURRENCY });
});
afterAll(() => t.close());

async function propose(kind: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let n = 0; n < count; n++) {
    const { directive } = await proposeDirective(t.app.deps.bus.directives, {
      ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'api' },
      input: { kind, params: { n }, idempotency_key: `${kind}-${n}` },
    });
    ids.push(directive.id);
  }
  return ids;
}

describe('executor concurrency', () => {
  it('makes as many provider calls at once as it is given, beyond the handler-job concurrency, and no more; the rest wait unclaimed', async () => {
    const ids = await propose('held.call', EXECUTOR_CONCURRENCY + 3);
    await waitFor(() => claimed.state.inFlight === EXECUTOR_CONCURRENCY, 15_000, `${EXECUTOR_CONCURRENCY} calls in flight`);
    // Given time, no seventh starts while six are held.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(claimed.state.inFlight).toBe(EXECUTOR_CONCURRENCY);
    // Those waiting for a call slot have not been claimed: a worker dying now leaves no attempt with an unknown outcome.
    const directives = await Promise.all(ids.map((id) => getDirective(t.app.deps.sql, org, id)));
    expect(directives.filter((directive) => directive.status === 'executing')).toHaveLength(EXECUTOR_CONCURRENCY);
    expect(directives.filter((directive) => directive.status === 'approved' && directive.attempts === 0)).toHaveLength(3);
    claimed.state.release();
    for (const id of ids) expect((await finishedDirective(t, org, id, 15_000)).status).toBe('succeeded');
    expect(claimed.state.most).toBe(EXECUTOR_CONCURRENCY);
    expect(claimed.state.calls).toBe(EXECUTOR_CONCURRENCY + 3);
  });

  it('goes on calling while outcomes wait to be recorded: recording holds no call slot', async () => {
    const count = EXECUTOR_CONCURRENCY * 4;
    // Recording writes the executions projection: hold it, so no outcome can commit.
    const blocker = await t.app.deps.sql.reserve();
    try {
      await blocker`begin`;
      await blocker`lock table ${blocker(`${org.schema}.executions`)} in exclusive mode`;
      const ids = await propose('quick.call', count);
      // Four times the call slots, all called while none of their outcomes is recorded.
      await waitFor(() => unclaimedCalls === count, 15_000, `${count} calls while recording is blocked`);
      const directives = await Promise.all(ids.map((id) => getDirective(t.app.deps.sql, org, id)));
      expect(directives.every((directive) => directive.status === 'approved')).toBe(true);
      await blocker`rollback`;
      for (const id of ids) expect((await finishedDirective(t, org, id, 15_000)).status).toBe('succeeded');
    } finally {
      blocker.release();
    }
    expect(unclaimedCalls).toBe(count);
  });
});
