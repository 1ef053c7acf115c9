/**
 * Rebuild equals live (ARCHITECTURE.md, "The one law"): whatever happened to
 * an org — proposals under changing policies, approvals, rejections,
 * cancels, expiries, executor retries and failures, handler failures and
 * manual retries — refolding its log gives the projections the live writes
 * left, row for row. Randomized workloads run against a real worker; a long
 * stream is rebuilt in small pages; and a rebuild runs while writes go on.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proposeDirective } from '../../src/directives/propose.ts';
import { getDirective } from '../../src/directives/store.ts';
import { decideDirective } from '../../src/directives/transitions.ts';
import { checksumProjections, rebuildProjections } from '../../src/projections/rebuild.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { seedLifecycles } from '../support/lifecycles.ts';
import { describeDrift, projectionRows, waitQuiescent } from '../support/quiescent.ts';
import { fuzzCtxOf as ctxOf, fuzzExecutor, gate, gatedExecutor, HANDLERS, jobErrors, perform as performOn, setFuzzPolicy, workload, type Action } from '../support/workloads.ts';

let t: TestApp;
let slugs = 0;
const newOrg = (prefix: string) => t.createOrg(`${prefix}_${++slugs}_${Math.random().toString(36).slice(2, 8)}`);

beforeAll(async () => {
  t = await createTestApp({ handlers: HANDLERS, executors: [fuzzExecutor, gatedExecutor], env: { SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '5' } });
  await t.startWorker({ concurrency: 4, pollIntervalMs: 50 });
});
afterAll(() => t?.close());

const setPolicy = (org: Tenant, variant: number) => setFuzzPolicy(t, org, variant);
const perform = (org: Tenant, step: Action) => performOn(t, org, step);
const orgJobErrors = (org: Tenant) => jobErrors(t, org);

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
        expect(orgJobErrors(org), 'jobs that threw (executor and handler failures are results, not throws)').toEqual([]);
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
