/**
 * Rebuild equals live (ARCHITECTURE.md, "The one law"): whatever happened to
 * an org — proposals under changing policies, approvals, rejections,
 * cancels, expiries, executor retries and failures, handler failures and
 * manual retries — refolding its log gives the projections the live writes
 * left, row for row. Randomized workloads run against a real worker; a long
 * stream is rebuilt in small pages; and a rebuild runs while writes go on.
 */
import fc from 'fast-check';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../src/signals/actor.ts';
import { DomainError } from '../../src/core/errors.ts';
import type { DirectiveDeps } from '../../src/directives/deps.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { getDirective } from '../../src/directives/store.ts';
import { decideDirective, expireDirective, type DirectiveAction } from '../../src/directives/transitions.ts';
import type { Executor, ExecuteResult } from '../../src/executors/registry.ts';
import { retryExecution } from '../../src/handlers/retry-execution.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { checksumProjections, rebuildProjections } from '../../src/projections/rebuild.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { seedLifecycles } from '../support/lifecycles.ts';
import { describeDrift, projectionRows, waitQuiescent } from '../support/quiescent.ts';

const ANA: Actor = { type: 'human', id: 'ana@rebuild.test' };
const ROUTES = ['allow', 'review', 'deny'] as const;
const BEHAVIORS = ['ok', 'flaky', 'exhaust', 'permanent', 'reauth', 'throw'] as const;

const ActParams = z.object({
  route: z.enum(ROUTES),
  behavior: z.enum(BEHAVIORS),
  fail_attempts: z.number().int().min(0).max(5),
  cost: z.number().min(0),
  tag: z.string(),
});
type ActParams = z.infer<typeof ActParams>;

/** `fuzz.act`: its params say how it behaves, so a workload chooses each directive's fate. */
const fuzzExecutor: Executor<ActParams> = {
  kinds: ['fuzz.act'],
  params: ActParams,
  estimateCostUsd: (_kind, params) => params.cost,
  honorsIdempotencyKey: true,
  maxAttempts: 3,
  // One endpoint for all: faults open and close its circuit, so circuits are folded too.
  circuit: { key: () => 'https://fuzz.example/endpoint', failureThreshold: 2, cooldownMs: 50 },
  async execute({ params, attempt }): Promise<ExecuteResult> {
    const retryable: ExecuteResult = { outcome: 'retryable', error: { code: 'busy', message: `attempt ${attempt} busy` } };
    // Costs like 1/3 · 1.1 exercise numeric round trips through jsonb and numeric columns.
    const succeeded: ExecuteResult = { outcome: 'succeeded', result: { tag: params.tag, attempt }, costUsd: params.cost * 1.1, usage: { tokens_in: 3, tokens_out: attempt } };
    switch (params.behavior) {
      case 'ok':
        return succeeded;
      case 'flaky':
        return attempt <= params.fail_attempts ? retryable : succeeded;
      case 'exhaust':
        return retryable;
      case 'permanent':
        return { outcome: 'permanent', error: { code: 'refused', message: 'the provider refused' } };
      case 'reauth':
        return { outcome: 'needs_reauthorization', error: { code: 'token_revoked', message: 'grant revoked' }, credential: 'fuzz_token' };
      case 'throw':
        throw new Error(`executor blew up on attempt ${attempt}`);
    }
  },
};

/** `fuzz.gated`: holds its call open until the test opens the gate, to place its outcome in time. */
const gate = { calls: 0, open: () => {}, opened: Promise.resolve(), outcome: 'succeeded' as 'succeeded' | 'permanent' };
const gatedExecutor: Executor<Record<string, unknown>> = {
  kinds: ['fuzz.gated'],
  params: z.record(z.string(), z.unknown()),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  async execute() {
    gate.calls += 1;
    await gate.opened;
    if (gate.outcome === 'permanent') return { outcome: 'permanent', error: { code: 'refused', message: 'refused' } };
    return { outcome: 'succeeded', result: { calls: gate.calls } };
  },
};

const FAILS = ['none', 'transient', 'until_retried', 'always', 'permanent'] as const;
type Fail = (typeof FAILS)[number];
interface Task {
  fail: Fail;
  ordered: boolean;
  derive: boolean;
  proposals: ActParams[];
}

function failIfAsked(fail: Fail, attempt: number) {
  if (fail === 'permanent') throw new DomainError('validation_failed', 'the task is malformed');
  if (fail === 'always') throw new Error(`attempt ${attempt} failed`);
  if (fail === 'transient' && attempt < 2) throw new Error('transient failure');
  // Fails every automatic attempt (max 3); the operator's retry (attempt 4) succeeds.
  if (fail === 'until_retried' && attempt <= 3) throw new Error('needs an operator');
}

const relay: Handler = {
  id: 'fuzz.relay',
  on: ['fuzz.task'],
  start: 'beginning',
  maxAttempts: 3,
  retryBaseMs: 5,
  handle(signal, tools) {
    const task = signal.payload as unknown as Task;
    failIfAsked(task.fail, tools.attempt);
    task.proposals.forEach((params, index) => tools.propose({ kind: 'fuzz.act', params, key: `p${index}` }));
    if (task.derive) tools.emit({ type: 'fuzz.derived', subject: signal.subject, payload: { from: signal.id }, key: 'derived' });
  },
};

/** Ordered, so its retries happen inside the job; reads the payload in its condition. */
const ordered: Handler = {
  id: 'fuzz.ordered',
  on: ['fuzz.task'],
  when: 'signal.payload.ordered == true',
  ordered: true,
  start: 'beginning',
  maxAttempts: 2,
  retryBaseMs: 5,
  handle(signal, tools) {
    const task = signal.payload as unknown as Task;
    if (task.fail === 'transient' && tools.attempt < 2) throw new Error('transient failure');
    tools.emit({ type: 'fuzz.ordered_seen', subject: signal.subject, payload: { attempt: tools.attempt }, key: 'seen' });
  },
};
const HANDLERS = [relay, ordered];

const POLICIES = [
  { rules: [
    { id: 'deny-route', match: 'fuzz.act', when: "params.route == 'deny'", effect: 'deny' },
    { id: 'review-route', match: 'fuzz.act', when: "params.route == 'review'", effect: 'require_approval' },
    { id: 'allow-fuzz', match: 'fuzz.*', effect: 'allow' },
  ] },
  { rules: [
    { id: 'deny-route', match: 'fuzz.act', when: "params.route == 'deny'", effect: 'deny' },
    { id: 'review-all', match: '*', effect: 'require_approval', reason: 'freeze' },
  ] },
  { rules: [{ id: 'allow-fuzz', match: 'fuzz.*', effect: 'allow' }], guards: { rate_limits: [{ match: 'fuzz.act', limit: 3, window_seconds: 3600 }] } },
  { rules: [{ id: 'allow-fuzz', match: 'fuzz.*', effect: 'allow' }], guards: { budgets: [{ match: 'fuzz.*', monthly_usd: 1.5 }] } },
  { rules: [] },
];

type Action =
  | { type: 'emit'; subject: number; task: Task }
  | { type: 'propose'; params: ActParams; key: number | null }
  | { type: 'decide'; action: DirectiveAction; pick: number }
  | { type: 'expire'; pick: number }
  | { type: 'retry'; pick: number }
  | { type: 'policy'; variant: number }
  | { type: 'rebuild' }
  | { type: 'settle' };

const actParams = fc.record({
  route: fc.constantFrom(...ROUTES),
  behavior: fc.constantFrom(...BEHAVIORS),
  fail_attempts: fc.integer({ min: 0, max: 3 }),
  cost: fc.constantFrom(0, 0.1, 1 / 3, 2.5, 1e-7, 12345.6789),
  tag: fc.string({ maxLength: 6 }),
});
const pick = fc.nat({ max: 50 });
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant('emit' as const), subject: fc.nat({ max: 3 }), task: fc.record({
    fail: fc.constantFrom(...FAILS), ordered: fc.boolean(), derive: fc.boolean(), proposals: fc.array(actParams, { maxLength: 2 }),
  }) }) },
  { weight: 4, arbitrary: fc.record({ type: fc.constant('propose' as const), params: actParams, key: fc.option(fc.nat({ max: 3 })) }) },
  { weight: 4, arbitrary: fc.record({ type: fc.constant('decide' as const), action: fc.constantFrom<DirectiveAction>('approve', 'reject', 'cancel'), pick }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('expire' as const), pick }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('retry' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('policy' as const), variant: fc.nat({ max: POLICIES.length - 1 }) }) },
  { weight: 1, arbitrary: fc.constant({ type: 'rebuild' as const }) },
  { weight: 1, arbitrary: fc.constant({ type: 'settle' as const }) },
);
/** Groups run concurrently, one group after another: 5–16 groups of 1–3. */
const workload = fc.array(fc.array(action, { minLength: 1, maxLength: 3 }), { minLength: 5, maxLength: 16 });

/** Refusals the verbs are allowed to answer with; anything else fails the run. */
const EXPECTED_REFUSALS = new Set(['invalid_transition', 'idempotency_conflict', 'not_found']);
async function tolerated(work: Promise<unknown>): Promise<void> {
  try {
    await work;
  } catch (error) {
    if (!(error instanceof DomainError && EXPECTED_REFUSALS.has(error.code))) throw error;
  }
}

let t: TestApp;
let slugs = 0;
const newOrg = (prefix: string) => t.createOrg(`${prefix}_${++slugs}_${Math.random().toString(36).slice(2, 8)}`);
const ctxOf = (org: Tenant) => ({ tenant: org, actor: ANA, source: 'api' });

beforeAll(async () => {
  t = await createTestApp({ handlers: HANDLERS, executors: [fuzzExecutor, gatedExecutor], env: { SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '5' } });
  await t.startWorker({ concurrency: 4, pollIntervalMs: 50 });
});
afterAll(() => t?.close());

async function setPolicy(org: Tenant, variant: number) {
  await updatePolicy(t.app.deps.bus.emit, { ctx: ctxOf(org), input: POLICIES[variant] });
}

/** A row of the org's table chosen by `index`, preferring rows whose status is in `preferred`. */
async function choose(org: Tenant, table: 'directives' | 'executions', preferred: string[], index: number, extra = t.app.deps.sql``) {
  const sql = t.app.deps.sql;
  const rows = await sql<{ id: string; preferred: boolean }[]>`
    select id, status = any(${preferred}::text[]) as preferred from ${sql(`${org.schema}.${table}`)} where true ${extra} order by id`;
  const candidates = rows.some((row) => row.preferred) ? rows.filter((row) => row.preferred) : rows;
  return candidates.length > 0 ? candidates[index % candidates.length]!.id : undefined;
}

async function perform(org: Tenant, step: Action): Promise<void> {
  const { bus } = t.app.deps;
  const ctx = ctxOf(org);
  switch (step.type) {
    case 'emit':
      await emit(bus.emit, { ctx, input: { type: 'fuzz.task', subject: `thing:${step.subject}`, payload: step.task } });
      return;
    case 'propose':
      await tolerated(proposeDirective(bus.directives, {
        ctx,
        input: { kind: 'fuzz.act', params: step.params, ...(step.key === null ? {} : { idempotency_key: `key-${step.key}` }) },
      }));
      return;
    case 'decide': {
      const from = step.action === 'cancel' ? ['awaiting_approval', 'approved'] : ['awaiting_approval'];
      const id = await choose(org, 'directives', from, step.pick);
      if (id) await tolerated(decideDirective(bus.directives, { ctx, input: { id, action: step.action, reason: `${step.action} by fuzz` } }));
      return;
    }
    case 'expire': {
      const id = await choose(org, 'directives', ['awaiting_approval'], step.pick);
      // A clock past any approval window, for this call only.
      const later: DirectiveDeps = { ...bus.directives, now: () => new Date(Date.now() + 400 * 86_400_000) };
      if (id) await expireDirective(later, { ctx: { ...ctx, actor: { type: 'system', id: 'signalbus' }, source: 'system' }, input: { id } });
      return;
    }
    case 'retry': {
      const id = await choose(org, 'executions', ['failed'], step.pick, t.app.deps.sql`and directive_id is null`);
      if (id) await tolerated(retryExecution(bus, { ctx, input: { id, reason: 'fuzz retry' } }));
      return;
    }
    case 'policy':
      await setPolicy(org, step.variant);
      return;
    case 'rebuild':
      // Mid-workload, beside the group's other steps and the worker's jobs.
      await rebuildProjections(t.app.deps.sql, org, t.app.deps.projections, { pageSize: 7 });
      return;
    case 'settle':
      await waitQuiescent(t.app.deps.sql, org, { handlers: HANDLERS.length });
      return;
  }
}

/** Log lines of the org's jobs that ended by throwing: a deadlock or a bug, never a planned failure. */
function jobErrors(org: Tenant): string[] {
  return t.logs.filter((line) => line.includes(`"org":"${org.slug}"`) && line.includes('"outcome":"error"'));
}

/** Asserts the rebuild reproduces the live projections; on drift, names the projection and rows. */
async function expectRebuildEqualsLive(org: Tenant, options: { pageSize?: number; onProgress?: (processed: number) => void } = {}) {
  const { sql, projections } = t.app.deps;
  const live = await checksumProjections(sql, org, projections.projections);
  const liveRows = await projectionRows(sql, org, projections.projections);
  const report = await rebuildProjections(sql, org, projections, options);
  const drift = describeDrift(liveRows, await projectionRows(sql, org, projections.projections));
  expect(drift, `rebuild of ${org.slug} differs from live`).toBe('');
  expect(report.after, 'rebuilt checksums').toEqual(live);
  expect(report.before, 'checksums the rebuild saw before').toEqual(live);
  // Every registered projection is checked, the core ones among them.
  expect(Object.keys(live).sort()).toEqual(projections.projections.map((projection) => projection.name).sort());
  expect(Object.keys(live)).toEqual(expect.arrayContaining(['circuits', 'directives', 'executions', 'installations', 'policies']));
  return { live, report };
}

describe('rebuild equals live', () => {
  it('for randomized workloads run through the worker', async () => {
    const seen = { directives: 0, executions: 0, statuses: new Set<string>() };
    await fc.assert(
      fc.asyncProperty(workload, async (groups) => {
        const org = await newOrg('rb');
        await setPolicy(org, 0);
        for (const group of groups) await Promise.all(group.map((step) => perform(org, step)));
        await waitQuiescent(t.app.deps.sql, org, { handlers: HANDLERS.length });
        expect(jobErrors(org), 'jobs that threw (executor and handler failures are results, not throws)').toEqual([]);
        const { live } = await expectRebuildEqualsLive(org);
        seen.directives += live.directives!.rows;
        seen.executions += live.executions!.rows;
        const statuses = await t.app.deps.sql<{ status: string }[]>`
          select 'directive:' || status as status from ${t.app.deps.sql(`${org.schema}.directives`)}
          union select 'execution:' || status from ${t.app.deps.sql(`${org.schema}.executions`)}
          union select 'proposed:' || (payload->'decision'->>'effect') from ${t.app.deps.sql(`${org.schema}.signals`)}
           where type = 'directive.proposed'`;
        for (const { status } of statuses) seen.statuses.add(status);
      }),
      // A failure's shrinking reruns whole workloads; the limit keeps it inside the test's time.
      { numRuns: 15, plugins: [fc.interruptAfterTimeLimit(150_000, { failOnInterrupt: true })] },
    );
    // The workloads did reach the states the law is about.
    expect(seen.directives).toBeGreaterThan(10);
    expect(seen.executions).toBeGreaterThan(10);
    // 'proposed:require_approval': some directive waited for a human (whether or not one still waits at the end).
    for (const status of ['directive:succeeded', 'directive:failed', 'directive:rejected', 'proposed:require_approval', 'execution:failed', 'execution:succeeded']) {
      expect([...seen.statuses]).toContain(status);
    }
  }, 240_000);

  it.each(['succeeded', 'permanent'] as const)('an executor outcome (%s) recorded while a rebuild takes its locks neither deadlocks nor runs twice', async (outcome) => {
    const org = await newOrg('rb_locks');
    gate.outcome = outcome;
    await setPolicy(org, 0);
    const { bus, sql, projections } = t.app.deps;
    gate.calls = 0;
    gate.opened = new Promise<void>((resolve) => (gate.open = resolve));
    const { directive } = await proposeDirective(bus.directives, { ctx: ctxOf(org), input: { kind: 'fuzz.gated', params: {} } });
    await waitFor(() => gate.calls === 1, 20_000, 'the executor to be called');

    // A blocker holds the directives table so the rebuild queues for it first
    // and the outcome's write to it queues second, with executions already written.
    let releaseBlocker = () => {};
    const blocker = sql.begin(async (tx) => {
      await tx`lock table ${tx(`${org.schema}.directives`)} in exclusive mode`;
      await new Promise<void>((resolve) => (releaseBlocker = resolve));
    });
    try {
      await waitFor(async () => (await directivesLocks(org, 'ExclusiveLock', true)) === 1, 20_000, 'the blocker to lock');
      const rebuild = rebuildProjections(sql, org, projections);
      rebuild.catch(() => {});
      await waitFor(async () => (await directivesLocks(org, 'ExclusiveLock', false)) === 1, 20_000, 'the rebuild to wait');
      gate.open();
      await waitFor(async () => (await directivesLocks(org, 'RowShareLock', false)) === 1, 20_000, 'the outcome to wait');
      releaseBlocker();
      await blocker;
      await rebuild;
    } finally {
      releaseBlocker();
      gate.open();
      await blocker.catch(() => {});
    }
    await waitQuiescent(sql, org, { handlers: HANDLERS.length });
    expect(gate.calls, 'executor calls: an outcome rolled back by a deadlock runs the job again').toBe(1);
    expect(await getDirective(sql, org, directive.id)).toMatchObject({ status: outcome === 'succeeded' ? 'succeeded' : 'failed', attempts: 1 });
    await expectRebuildEqualsLive(org);
  });

  it('streams a long log in small pages and counts every signal', async () => {
    const org = await newOrg('rb_stream');
    await seedLifecycles(t, org, 600, { straddleXidDigits: true });
    const [{ total } = { total: 0 }] = await t.app.deps.sql<{ total: number }[]>`
      select count(*)::int as total from ${t.app.deps.sql(`${org.schema}.signals`)}`;
    expect(total).toBeGreaterThanOrEqual(3000);

    const progress: number[] = [];
    const { live, report } = await expectRebuildEqualsLive(org, { pageSize: 100, onProgress: (processed) => progress.push(processed) });
    expect(report.signals).toBe(total);
    expect(live.directives!.rows).toBe(600);
    expect(progress).toHaveLength(Math.ceil(total / 100));
    expect(progress.at(-1)).toBe(total);
    progress.forEach((processed, index) => expect(processed - (progress[index - 1] ?? 0)).toBeLessThanOrEqual(100));
    const statuses = await t.app.deps.sql<{ status: string; count: number }[]>`
      select status, count(*)::int as count from ${t.app.deps.sql(`${org.schema}.directives`)} group by status order by status`;
    expect(Object.fromEntries(statuses.map(({ status, count }) => [status, count]))).toEqual({
      cancelled: 100, expired: 100, failed: 100, rejected: 200, succeeded: 100,
    });
  });

  it('a rebuild during live writes loses and doubles nothing', async () => {
    const org = await newOrg('rb_live');
    await setPolicy(org, 0);
    await seedLifecycles(t, org, 200);
    const { bus, sql, projections } = t.app.deps;
    const written: string[] = [];
    let writing = true;
    let rebuilding = false;
    let duringRebuild = 0;
    const writer = async (name: string) => {
      for (let i = 0, after = 0; writing || after < 5; i++) {
        if (rebuilding) duringRebuild++;
        const review = i % 3 === 0;
        const { directive } = await proposeDirective(bus.directives, {
          ctx: ctxOf(org),
          input: { kind: 'fuzz.act', params: { route: review ? 'review' : 'allow', behavior: i % 4 === 0 ? 'flaky' : 'ok', fail_attempts: 1, cost: 0.1, tag: `${name}-${i}` } },
        });
        written.push(directive.id);
        if (review && i % 2 === 0) await decideDirective(bus.directives, { ctx: ctxOf(org), input: { id: directive.id, action: 'approve', reason: null } });
        if (!writing) after++;
      }
    };
    const writers = [writer('w1'), writer('w2')];
    try {
      await waitFor(() => written.length >= 4, 20_000, 'writers to start');
      // Several rebuilds, so executor outcomes and proposals land on both sides of their table locks.
      for (let round = 0; round < 3; round++) {
        rebuilding = true;
        await rebuildProjections(sql, org, projections, { pageSize: 20 }).finally(() => (rebuilding = false));
      }
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    expect(duringRebuild, 'proposals started while a rebuild ran').toBeGreaterThan(0);
    await waitQuiescent(sql, org, { handlers: HANDLERS.length });

    const rows = await sql<{ id: string }[]>`select id from ${sql(`${org.schema}.directives`)} where kind = 'fuzz.act'`;
    expect(rows.map(({ id }) => id).sort()).toEqual([...written].sort());
    const { live } = await expectRebuildEqualsLive(org);
    expect(live.directives!.rows).toBe(200 + written.length);
  });
});

/** Lock requests in `mode` on the org's directives table, granted or waiting. */
async function directivesLocks(org: Tenant, mode: string, granted: boolean): Promise<number> {
  const { sql } = t.app.deps;
  const [row] = await sql<{ count: number }[]>`
    select count(*)::int as count from pg_locks
     where database = (select oid from pg_database where datname = current_database())
       and relation = ${`${org.schema}.directives`}::regclass and mode = ${mode} and granted = ${granted}`;
  return row!.count;
}
