/**
 * Rebuild equals live, through the replay job: randomized workloads (emits,
 * proposals under changing policies, approvals, rejections, cancels,
 * expiries, executor failures and retries, handler failures and manual
 * retries) keep running while the rebuild folds into its shadow tables and
 * swaps them in. At the swap the rebuilt tables equal live ones — no drift —
 * and readers meanwhile see the old tables whole: the rows they count never
 * shrink, never read empty.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { checksumProjections } from '../../src/projections/rebuild.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { waitQuiescent } from '../support/quiescent.ts';
import { action, fuzzExecutor, gatedExecutor, HANDLERS, jobErrors, perform, setFuzzPolicy } from '../support/workloads.ts';
import { request, untilEnded } from './support.ts';

let t: TestApp;
let slugs = 0;

beforeAll(async () => {
  t = await createTestApp({
    handlers: HANDLERS,
    executors: [fuzzExecutor, gatedExecutor],
    env: { SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '5', SIGNALBUS_REPLAY_PAGE_SIZE: '8' },
  });
  await t.startWorker({ concurrency: 4, pollIntervalMs: 50 });
});
afterAll(() => t?.close());

const steps = action.filter((step) => step.type !== 'rebuild');
const groups = (min: number, max: number) => fc.array(fc.array(steps, { minLength: 1, maxLength: 3 }), { minLength: min, maxLength: max });

/** Row counts of the tables readers see; projections here only ever add rows. */
async function counts(org: Tenant): Promise<{ directives: number; executions: number }> {
  const { sql } = t.app.deps;
  const [row] = await sql<{ directives: number; executions: number }[]>`
    select (select count(*)::int from ${sql(`${org.schema}.directives`)}) as directives,
           (select count(*)::int from ${sql(`${org.schema}.executions`)}) as executions`;
  return row!;
}

describe('a rebuild replay during live writes', () => {
  it('swaps in tables equal to live ones, and readers never see a partial table', async () => {
    let readsDuringRebuilds = 0;
    await fc.assert(
      fc.asyncProperty(groups(3, 6), groups(3, 8), async (before, during) => {
        const org = await t.createOrg(`rpl_prop_${++slugs}_${Math.random().toString(36).slice(2, 7)}`);
        await setFuzzPolicy(t, org, 0);
        for (const group of before) await Promise.all(group.map((step) => perform(t, org, step)));

        const replay = await request(t, org, { mode: 'rebuild' });
        let rebuilding = true;
        let seen = await counts(org);
        const reader = (async () => {
          while (rebuilding) {
            const now = await counts(org);
            expect(now.directives, 'directives read during the rebuild').toBeGreaterThanOrEqual(seen.directives);
            expect(now.executions, 'executions read during the rebuild').toBeGreaterThanOrEqual(seen.executions);
            seen = now;
            readsDuringRebuilds++;
          }
        })();
        try {
          for (const group of during) await Promise.all(group.map((step) => perform(t, org, step)));
          const done = await untilEnded(t, org, replay.id, 90_000);
          expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
          const report = done.report as any;
          // Under the swap's locks, live and rebuilt stood at the same point of the log: equal.
          expect(report.checksums_after, 'rebuilt vs live at the swap').toEqual(report.checksums_before);
          for (const [name, drift] of Object.entries(report.drift) as [string, any][]) {
            expect(drift, `drift of ${name}`).toMatchObject({ added: 0, removed: 0, changed: 0 });
          }
        } finally {
          rebuilding = false;
          await reader;
        }
        await waitQuiescent(t.app.deps.sql, org, { handlers: HANDLERS.length });
        expect(jobErrors(t, org), 'jobs that threw').toEqual([]);
        // Writes that waited for the swap landed in the new tables: a second rebuild finds nothing to repair.
        const live = await checksumProjections(t.app.deps.sql, org, t.app.deps.projections.projections);
        const again = await untilEnded(t, org, (await request(t, org, { mode: 'rebuild' })).id, 90_000);
        expect((again.report as any).checksums_after).toEqual(live);
        expect((again.report as any).checksums_before).toEqual(live);
      }),
      { numRuns: 6, plugins: [fc.interruptAfterTimeLimit(150_000, { failOnInterrupt: true })] },
    );
    expect(readsDuringRebuilds).toBeGreaterThan(0);
  }, 240_000);
});
