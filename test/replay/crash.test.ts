/**
 * A replay survives its worker: SIGKILL the worker process mid-rebuild, a
 * new one takes the job over (once liveness frees it) and resumes from the
 * last checkpoint — no page folded twice, none skipped — ending with the
 * same totals and checksums as an uninterrupted run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { checksumProjections } from '../../src/projections/rebuild.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { seedLifecycles } from '../support/lifecycles.ts';
import { workerChildren, type WorkerChildren } from '../support/worker-children.ts';
import { request, untilEnded } from './support.ts';

let t: TestApp;
let workers: WorkerChildren;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('rpl_crash');
  await seedLifecycles(t, org, 400);
  await t.settle();
  workers = workerChildren({ DATABASE_URL: t.database.url, SIGNALBUS_REPLAY_PAGE_SIZE: '40' }, { spares: 1 });
}, 120_000);
afterAll(async () => {
  await workers?.killAll();
  await t?.close();
});

async function progressOf(id: string) {
  return t.app.deps.sql<{ type: string; processed: number | null }[]>`
    select type, (payload->>'processed')::int as processed from ${t.app.deps.sql(`${org.schema}.signals`)}
     where subject = ${`replay:${id}`} order by tx_id, seq`;
}

describe('a replay whose worker is killed', () => {
  it('resumes from its last checkpoint and ends with the same totals as an uninterrupted run', async () => {
    const live = await checksumProjections(t.app.deps.sql, org, t.app.deps.projections.projections);
    const [{ signals } = { signals: 0 }] = await t.app.deps.sql<{ signals: number }[]>`
      select count(*)::int as signals from ${t.app.deps.sql(`${org.schema}.signals`)} where type not like 'replay.%'`;

    // Held to 400 signals a second: about five seconds of work to kill it in.
    const interrupted = await request(t, org, { mode: 'rebuild', rate_per_s: 400 });
    const first = await workers.spawn();
    await waitFor(async () => {
      const row = await t.app.deps.sql<{ processed: number }[]>`
        select processed::int from ${t.app.deps.sql(`${org.schema}.replays`)} where id = ${interrupted.id}`;
      return row[0]!.processed >= 400;
    }, 60_000, 'the replay to get well under way');
    await workers.kill(first);
    const [{ processed: atKill } = { processed: 0 }] = await t.app.deps.sql<{ processed: number }[]>`
      select processed::int from ${t.app.deps.sql(`${org.schema}.replays`)} where id = ${interrupted.id}`;
    expect(atKill).toBeLessThan(signals);

    await workers.spawn();
    const resumed = await untilEnded(t, org, interrupted.id, 90_000);
    expect(resumed.status, JSON.stringify(resumed.error)).toBe('succeeded');

    const steps = await progressOf(interrupted.id);
    expect(steps.filter((step) => step.type === 'replay.started')).toHaveLength(1);
    // Checkpoints only ever advance: the new worker went on from the last one, not from the start.
    const counts = steps.filter((step) => step.type === 'replay.progress').map((step) => step.processed!);
    counts.slice(1).forEach((count, index) => expect(count, `checkpoint ${index + 1}`).toBeGreaterThan(counts[index]!));
    expect(counts).toContain(atKill);

    const uninterrupted = await untilEnded(t, org, (await request(t, org, { mode: 'rebuild' })).id, 90_000);
    expect(uninterrupted.status).toBe('succeeded');
    for (const replay of [resumed, uninterrupted]) {
      expect(replay.processed).toBe(signals);
      expect(replay.total).toBe(signals);
      expect((replay.report as any).checksums_after).toEqual(live);
      expect((replay.report as any).checksums_before).toEqual(live);
    }
    expect(await checksumProjections(t.app.deps.sql, org, t.app.deps.projections.projections)).toEqual(live);
  }, 240_000);
});
