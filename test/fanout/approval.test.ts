/**
 * Approvals and the execute path against a real database: concurrent
 * approvals execute once, expiry closes the window, directives that were not
 * approved never reach their executor, and a run whose worker died is
 * resumed only when the provider can deduplicate it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Actor } from '../../src/signals/actor.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { DomainError } from '../../src/core/errors.ts';
import { addJobs } from '../../src/db/jobs.ts';
import { executeJob } from '../../src/directives/deps.ts';
import { executeDirective, executionIdOfDirective } from '../../src/directives/execute.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { getDirective } from '../../src/directives/store.ts';
import { decideDirective, expireDirective, type DirectiveAction } from '../../src/directives/transitions.ts';
import type { ExecuteRequest, ExecuteResult, Executor } from '../../src/executors/registry.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const ANA: Actor = { type: 'human', id: 'ana@approval.test' };
const BO: Actor = { type: 'human', id: 'bo@approval.test' };

/** `ledger.post`: no provider idempotency, so a second call would be a second effect. Counts calls per directive. */
const ledgerCalls = new Map<string, number>();
const ledgerExecutor: Executor<Record<string, unknown>> = {
  kinds: ['ledger.post'],
  params: z.record(z.string(), z.unknown()),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: false,
  async execute({ directiveId, params }) {
    ledgerCalls.set(directiveId, (ledgerCalls.get(directiveId) ?? 0) + 1);
    return { outcome: 'succeeded', result: params };
  },
};

let t: TestApp;
let org: Tenant;
// The directive verbs read this clock; tests move it to pass an expiry.
let clockOffsetMs = 0;

beforeAll(async () => {
  t = await createTestApp({ executors: [ledgerExecutor], now: () => new Date(Date.now() + clockOffsetMs) });
  org = await t.createOrg('approval');
  await updatePolicy(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' },
    input: {
      rules: [
        { id: 'allow-ledger', match: 'ledger.*', effect: 'allow' },
        { id: 'review', match: 'ledger.*', when: "params.mode == 'review'", effect: 'require_approval', approval_ttl_seconds: 60 },
        { id: 'refuse', match: 'ledger.*', when: "params.mode == 'refuse'", effect: 'deny' },
      ],
    },
  });
  await t.startWorker();
});
afterAll(() => t.close());

let keyCounter = 0;
async function propose(mode: 'review' | 'refuse' | 'auto', tenant: Tenant = org, app: TestApp = t) {
  const { directive } = await proposeDirective(app.app.deps.bus.directives, {
    ctx: { tenant, actor: ANA, source: 'api' },
    input: { kind: 'ledger.post', params: { mode, n: ++keyCounter }, idempotency_key: `approval-${keyCounter}` },
  });
  return directive;
}

function decide(id: string, action: DirectiveAction, actor: Actor = ANA) {
  return decideDirective(t.app.deps.bus.directives, { ctx: { tenant: org, actor, source: 'api' }, input: { id, action, reason: `${action} by ${actor.id}` } });
}

/** Lifecycle signals of one directive, by type. */
async function lifecycle(id: string, tenant: Tenant = org, app: TestApp = t): Promise<Record<string, number>> {
  const rows = await app.app.deps.sql<{ type: string; count: number }[]>`
    select type, count(*)::int as count from ${app.app.deps.sql(`${tenant.schema}.signals`)}
     where subject = ${`directive:${id}`} group by type`;
  return Object.fromEntries(rows.map((row) => [row.type, row.count]));
}

/** Execute jobs still queued (or running) for a directive. */
async function pendingExecuteJobs(id: string): Promise<number> {
  const [row] = await t.app.deps.sql<{ count: number }[]>`
    select count(*)::int as count from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
     where k.identifier = 'execute_directive' and j.payload->>'directive_id' = ${id}`;
  return row!.count;
}

function expectInvalidTransition(result: PromiseSettledResult<unknown>) {
  expect(result.status).toBe('rejected');
  const error = (result as PromiseRejectedResult).reason as DomainError;
  expect(error).toBeInstanceOf(DomainError);
  expect(error.code).toBe('invalid_transition');
  expect(error.status).toBe(409);
}

describe('concurrent approvals', () => {
  it('of one directive: exactly one wins and the directive executes once', async () => {
    const directives = await Promise.all(Array.from({ length: 6 }, () => propose('review')));
    for (const directive of directives) expect(directive.status).toBe('awaiting_approval');

    const outcomes = await Promise.all(
      directives.map((directive) => Promise.allSettled([decide(directive.id, 'approve', ANA), decide(directive.id, 'approve', BO)])),
    );
    for (const [index, settled] of outcomes.entries()) {
      const winners = settled.filter((result) => result.status === 'fulfilled');
      expect(winners).toHaveLength(1);
      expectInvalidTransition(settled.find((result) => result.status === 'rejected')!);
      const winner = (winners[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof decide>>>).value;
      expect(winner.status).toBe('approved');
      expect([ANA.id, BO.id]).toContain(winner.decided_by?.id);
      expect(winner.decision_reason).toBe(`approve by ${winner.decided_by?.id}`);
      expect(winner.id).toBe(directives[index]!.id);
    }

    for (const directive of directives) {
      await waitFor(async () => (await getDirective(t.app.deps.sql, org, directive.id)).status === 'succeeded', 20_000, `${directive.id} to succeed`);
    }
    // Once no execute job is left for them, nothing can run them again.
    await waitFor(async () => {
      for (const directive of directives) if ((await pendingExecuteJobs(directive.id)) > 0) return false;
      return true;
    }, 20_000, 'execute jobs to drain');
    for (const directive of directives) {
      expect(await lifecycle(directive.id)).toEqual({
        'directive.proposed': 1,
        'directive.approved': 1,
        'directive.executing': 1,
        'directive.succeeded': 1,
        'execution.started': 1,
        'execution.succeeded': 1,
      });
      expect(ledgerCalls.get(directive.id)).toBe(1);
      const stored = await getDirective(t.app.deps.sql, org, directive.id);
      expect(stored).toMatchObject({ status: 'succeeded', attempts: 1, result: directive.params });
    }
  });

  it('approve against reject: one decision stands, and it alone is recorded', async () => {
    const directive = await propose('review');
    const settled = await Promise.allSettled([decide(directive.id, 'approve', ANA), decide(directive.id, 'reject', BO)]);
    expect(settled.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    expectInvalidTransition(settled.find((result) => result.status === 'rejected')!);
    const approved = settled[0].status === 'fulfilled';
    const final = await waitFor(async () => {
      const row = await getDirective(t.app.deps.sql, org, directive.id);
      return (approved ? row.status === 'succeeded' : row.status === 'rejected') && row;
    }, 20_000, 'the decision to settle');
    const signals = await lifecycle(directive.id);
    expect((signals['directive.approved'] ?? 0) + (signals['directive.rejected'] ?? 0)).toBe(1);
    expect(ledgerCalls.get(directive.id) ?? 0).toBe(approved ? 1 : 0);
    expect(final.decided_by?.id).toBe(approved ? ANA.id : BO.id);
  });
});

describe('expiry', () => {
  it('closes the approval window: approving after expires_at is a 409 and the expiry job records directive.expired', async () => {
    const late = await propose('review');
    const inTime = await propose('review');
    expect(late.decision.approval_ttl_seconds).toBe(60);
    const expiresAt = new Date(late.expires_at!).getTime();
    expect(expiresAt - new Date(late.proposed_at).getTime()).toBeGreaterThan(55_000);

    // The expiry job waits for expires_at.
    const [job] = await t.app.deps.sql<{ run_at: Date }[]>`
      select j.run_at from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
       where k.identifier = 'expire_directive' and j.payload->>'directive_id' = ${late.id}`;
    expect(job!.run_at.getTime()).toBe(expiresAt);
    // Before that, the job is a no-op.
    expect(await expireDirective(t.app.deps.bus.directives, { ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' }, input: { id: late.id } })).toBe(false);
    expect((await getDirective(t.app.deps.sql, org, late.id)).status).toBe('awaiting_approval');

    try {
      // Inside the window (with room for a slow machine between proposal and decision).
      clockOffsetMs = 50_000;
      expect((await decide(inTime.id, 'approve')).status).toBe('approved');

      clockOffsetMs = 61_000;
      for (const action of ['approve', 'reject'] as const) {
        const error = (await decide(late.id, action).catch((caught: unknown) => caught)) as DomainError;
        expect(error).toBeInstanceOf(DomainError);
        expect(error.code).toBe('invalid_transition');
        expect(error.status).toBe(409);
        expect(error.message).toBe(`the approval window closed at ${late.expires_at}`);
      }
      expect((await getDirective(t.app.deps.sql, org, late.id)).status).toBe('awaiting_approval');

      const expire = () => expireDirective(t.app.deps.bus.directives, { ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' }, input: { id: late.id } });
      expect(await expire()).toBe(true);
      expect(await expire()).toBe(false);
    } finally {
      clockOffsetMs = 0;
    }

    const expired = await getDirective(t.app.deps.sql, org, late.id);
    expect(expired.status).toBe('expired');
    const [signal] = await t.app.deps.sql<{ payload: { directive_id: string; expired_at: string }; actor: Actor }[]>`
      select payload, actor from org_approval.signals where type = 'directive.expired' and subject = ${`directive:${late.id}`}`;
    expect(signal).toEqual({ payload: { directive_id: late.id, expired_at: late.expires_at }, actor: PLATFORM_ACTOR });
    expect(await lifecycle(late.id)).toEqual({ 'directive.proposed': 1, 'directive.expired': 1 });
    // Expired is final: no later decision moves it.
    const error = (await decide(late.id, 'approve').catch((caught: unknown) => caught)) as DomainError;
    expect(error.code).toBe('invalid_transition');
    expect(error.message).toBe('cannot approve a directive that is expired');

    await waitFor(async () => (await getDirective(t.app.deps.sql, org, inTime.id)).status === 'succeeded', 20_000, 'the in-time approval to execute');
  });
});

describe('directives that were not approved never execute', () => {
  const cases: Array<{ name: string; make: () => Promise<string>; status: string }> = [
    { name: 'rejected by policy', status: 'rejected', make: async () => (await propose('refuse')).id },
    {
      name: 'rejected by a human',
      status: 'rejected',
      make: async () => {
        const { id } = await propose('review');
        await decide(id, 'reject');
        return id;
      },
    },
    {
      name: 'cancelled while waiting',
      status: 'cancelled',
      make: async () => {
        const { id } = await propose('review');
        await decide(id, 'cancel');
        return id;
      },
    },
    {
      name: 'still awaiting approval',
      status: 'awaiting_approval',
      make: async () => (await propose('review')).id,
    },
  ];

  it.each(cases)('$name, even with an execute job added by hand', async ({ make, status }) => {
    const id = await make();
    expect((await getDirective(t.app.deps.sql, org, id)).status).toBe(status);
    const before = await lifecycle(id);
    await addJobs(t.app.deps.sql, [executeJob(org.id, id, null)]);
    // The worker completes the job (a skip), so it leaves the queue instead of retrying.
    await waitFor(async () => (await pendingExecuteJobs(id)) === 0, 20_000, 'the hand-added execute job to complete');

    expect(await lifecycle(id)).toEqual(before);
    expect(before['directive.executing']).toBeUndefined();
    expect(ledgerCalls.get(id) ?? 0).toBe(0);
    expect((await getDirective(t.app.deps.sql, org, id)).status).toBe(status);
    const [execution] = await t.app.deps.sql`select id from org_approval.executions where id = ${executionIdOfDirective(id)}`;
    expect(execution).toBeUndefined();
  });
});

/**
 * An executor whose first call hangs until released, standing for a worker
 * that died mid-call: the claim committed, the outcome never did.
 */
function hangingExecutor(kind: string, honorsIdempotencyKey: boolean) {
  const calls: ExecuteRequest<Record<string, unknown>>[] = [];
  let release!: (result: ExecuteResult) => void;
  const firstCall = new Promise<ExecuteResult>((resolve) => (release = resolve));
  const executor: Executor<Record<string, unknown>> = {
    kinds: [kind],
    params: z.record(z.string(), z.unknown()),
    estimateCostUsd: () => 0,
    honorsIdempotencyKey,
    async execute(request) {
      calls.push(request);
      return calls.length === 1 ? firstCall : { outcome: 'succeeded', result: { call: calls.length } };
    },
  };
  return { executor, calls, release };
}

describe('a worker dies mid-execution', () => {
  // Its own app without a worker: only the test runs the execute path here.
  let c: TestApp;
  let tenant: Tenant;
  const unsafe = hangingExecutor('crashy.send', false);
  const safe = hangingExecutor('crashy.charge', true);

  beforeAll(async () => {
    c = await createTestApp({ executors: [unsafe.executor, safe.executor] });
    tenant = await c.createOrg('crashy');
    await updatePolicy(c.app.deps.bus.emit, {
      ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system' },
      input: { rules: [{ id: 'allow-crashy', match: 'crashy.*', effect: 'allow' }] },
    });
  });
  afterAll(() => c.close());

  async function startHungRun(kind: string) {
    const { directive } = await proposeDirective(c.app.deps.bus.directives, {
      ctx: { tenant, actor: ANA, source: 'api' },
      input: { kind, params: { amount: 5 } },
    });
    expect(directive.status).toBe('approved');
    const run = () => executeDirective(c.app.deps.bus.directives, { tenant, directiveId: directive.id, traceparent: null });
    const hung = run();
    const executionId = executionIdOfDirective(directive.id);
    await waitFor(async () => {
      const [row] = await c.app.deps.sql<{ status: string }[]>`
        select status from org_crashy.executions where id = ${executionId}`;
      return row?.status === 'running';
    }, 10_000, 'the first attempt to be claimed');
    return { directive, executionId, hung, run };
  }

  it('without provider idempotency: the rerun fails the directive as needs_reconcile and does not call again', async () => {
    const { directive, executionId, hung, run } = await startHungRun('crashy.send');
    expect(unsafe.calls).toHaveLength(1);

    await run();
    expect(unsafe.calls).toHaveLength(1);
    const failed = await getDirective(c.app.deps.sql, tenant, directive.id);
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('needs_reconcile');
    expect(failed.attempts).toBe(1);
    const [execution] = await c.app.deps.sql<{ status: string; error: { code: string } }[]>`
      select status, error from org_crashy.executions where id = ${executionId}`;
    expect(execution).toMatchObject({ status: 'failed', error: { code: 'needs_reconcile' } });
    expect(await lifecycle(directive.id, tenant, c)).toMatchObject({ 'directive.executing': 1, 'directive.failed': 1 });

    // A third run (a redelivered job) finds it failed and leaves it alone.
    await run();
    expect(unsafe.calls).toHaveLength(1);

    // Should the stalled call return after all, the recorded failure stands.
    unsafe.release({ outcome: 'succeeded', result: { late: true } });
    await hung;
    const after = await getDirective(c.app.deps.sql, tenant, directive.id);
    expect(after).toMatchObject({ status: 'failed', error: { code: 'needs_reconcile' } });
    expect((await lifecycle(directive.id, tenant, c))['directive.succeeded']).toBeUndefined();
  });

  it('with provider idempotency: the rerun calls again with the same idempotency key', async () => {
    const { directive, hung, run } = await startHungRun('crashy.charge');
    expect(safe.calls).toHaveLength(1);

    await run();
    expect(safe.calls).toHaveLength(2);
    expect(safe.calls.map((call) => call.idempotencyKey)).toEqual([directive.id, directive.id]);
    expect(safe.calls.map((call) => call.attempt)).toEqual([1, 2]);
    const succeeded = await getDirective(c.app.deps.sql, tenant, directive.id);
    expect(succeeded).toMatchObject({ status: 'succeeded', attempts: 2, result: { call: 2 } });

    safe.release({ outcome: 'succeeded', result: { call: 1 } });
    await hung;
    expect(await getDirective(c.app.deps.sql, tenant, directive.id)).toMatchObject({ status: 'succeeded', result: { call: 2 } });
    expect(await lifecycle(directive.id, tenant, c)).toMatchObject({ 'directive.executing': 2, 'directive.succeeded': 1 });
  });
});
