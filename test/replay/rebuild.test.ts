/**
 * The rebuild replay: requested as a signal, run by the worker into shadow
 * tables, swapped in with a report of checksums and drift; a reducer that
 * throws fails it with the signal's position and leaves live state as it
 * was; one replay per scope at a time; a cancel stops it and discards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/core/errors.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { keyedProjection } from '../../src/projections/keyed.ts';
import { checksumProjections } from '../../src/projections/rebuild.ts';
import { shadowSchemaOf } from '../../src/replay/shadow.ts';
import { cancelReplay } from '../../src/replay/verbs.ts';
import { emit } from '../../src/signals/emit.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { seedLifecycles } from '../support/lifecycles.ts';
import { projectionRows } from '../support/quiescent.ts';
import { ctxOf, request, schemaExists, untilEnded } from './support.ts';

/** A projection whose reducer a test can break, as a deploy with a bug would. */
const fragile = { broken: false };
const fragileProjection = keyedProjection<{ id: string; n: number }>({
  name: 'fragile',
  table: 'fragile',
  columns: ['id', 'n'],
  handles: (type) => type === 'fragile.counted',
  keyOf: (signal) => (signal as { subject?: string | null }).subject ?? null,
  evolve(row, signal) {
    const n = (signal.payload as { n: number }).n;
    if (fragile.broken && n === 13) throw new Error('thirteen is unlucky');
    return { id: row?.id ?? signal.subject!, n: (row?.n ?? 0) + n };
  },
});

let t: TestApp;
let slugs = 0;
async function newOrg(prefix: string): Promise<Tenant> {
  const org = await t.createOrg(`${prefix}_${++slugs}_${Math.random().toString(36).slice(2, 7)}`);
  await t.app.deps.sql.unsafe(`create table ${org.schema}.fragile (id text primary key, n integer not null)`);
  return org;
}

beforeAll(async () => {
  t = await createTestApp({ projections: [fragileProjection], env: { SIGNALBUS_REPLAY_PAGE_SIZE: '50' } });
  await t.startWorker({ concurrency: 2, pollIntervalMs: 50 });
});
afterAll(() => t?.close());

const live = (org: Tenant) => checksumProjections(t.app.deps.sql, org, t.app.deps.projections.projections);

async function count(org: Tenant, n: number, subject = 'c:1') {
  for (let i = 0; i < n; i++) await emit(t.app.deps.bus.emit, { ctx: ctxOf(org), input: { type: 'fragile.counted', subject, payload: { n: i } } });
}

describe('rebuild', () => {
  it('refolds every projection into shadow tables, swaps them in and reports no drift', async () => {
    const org = await newOrg('rpl_ok');
    await seedLifecycles(t, org, 120);
    await count(org, 20);
    const before = await live(org);
    const rowsBefore = await projectionRows(t.app.deps.sql, org, t.app.deps.projections.projections);
    const indexes = () => t.app.deps.sql`select indexname from pg_indexes where schemaname = ${org.schema} order by 1`;
    const indexesBefore = await indexes();
    // The seeded log below the visibility horizon, so the rebuild pages it rather than catching it all up under lock.
    await t.settle();

    const requested = await request(t, org, { mode: 'rebuild' });
    expect(requested).toMatchObject({ mode: 'rebuild', status: 'queued', processed: 0 });
    expect(requested.id).toMatch(/^rpl_/);
    const done = await untilEnded(t, org, requested.id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const [{ signals } = { signals: 0 }] = await t.app.deps.sql<{ signals: number }[]>`
      select count(*)::int as signals from ${t.app.deps.sql(`${org.schema}.signals`)} where type not like 'replay.%'`;
    expect(done.processed).toBeGreaterThanOrEqual(signals);
    expect(done.total).toBe(done.processed);
    expect(done.rate_per_s).toBeGreaterThan(0);
    expect(done.eta_s).toBe(0);
    const report = done.report as any;
    expect(report.checksums_before).toEqual(before);
    expect(report.checksums_after).toEqual(before);
    for (const drift of Object.values(report.drift) as any[]) expect(drift).toMatchObject({ added: 0, removed: 0, changed: 0 });
    expect(await live(org)).toEqual(before);
    expect(await projectionRows(t.app.deps.sql, org, t.app.deps.projections.projections)).toEqual(rowsBefore);
    // The swapped-in tables carry the index names migrations know.
    expect(await indexes()).toEqual(indexesBefore);
    expect(await schemaExists(t, shadowSchemaOf(done.id, 'rebuild'))).toBe(false);

    // The replay is in the log, attributed to the actor who asked.
    const lifecycle = await t.app.deps.sql<{ type: string; actor: { id: string } }[]>`
      select type, actor from ${t.app.deps.sql(`${org.schema}.signals`)} where subject = ${`replay:${done.id}`} order by tx_id, seq`;
    expect(lifecycle.map((signal) => signal.type)).toEqual([
      'replay.requested', 'replay.started', ...Array(lifecycle.length - 3).fill('replay.progress'), 'replay.completed',
    ]);
    expect(lifecycle.length).toBeGreaterThan(10);
    expect(new Set(lifecycle.map((signal) => signal.actor.id))).toEqual(new Set(['sam@support.test']));
  });

  it('reports drift — keys added, removed and changed, with samples — and repairs it', async () => {
    const org = await newOrg('rpl_drift');
    await seedLifecycles(t, org, 30);
    await count(org, 3, 'c:1');
    await count(org, 2, 'c:2');
    const repaired = await live(org);
    const { sql } = t.app.deps;
    // A bug's marks on live state: a changed row, a lost row, a stray row.
    await sql`update ${sql(`${org.schema}.fragile`)} set n = 999 where id = 'c:1'`;
    await sql`delete from ${sql(`${org.schema}.fragile`)} where id = 'c:2'`;
    await sql`insert into ${sql(`${org.schema}.fragile`)} (id, n) values ('c:stray', 1)`;
    const damaged = await live(org);

    const done = await untilEnded(t, org, (await request(t, org, { mode: 'rebuild', projections: ['fragile'] })).id);
    expect(done.status).toBe('succeeded');
    const report = done.report as any;
    expect(report.projections).toEqual(['fragile']);
    expect(report.checksums_before).toEqual({ fragile: damaged.fragile });
    expect(report.checksums_after).toEqual({ fragile: repaired.fragile });
    expect(report.drift.fragile).toMatchObject({ added: 1, removed: 1, changed: 1 });
    expect(report.drift.fragile.samples.changed).toEqual([{ id: 'c:1', live: { id: 'c:1', n: 999 }, rebuilt: { id: 'c:1', n: 3 } }]);
    expect(report.drift.fragile.samples.added).toEqual([{ id: 'c:2', live: null, rebuilt: { id: 'c:2', n: 1 } }]);
    expect(report.drift.fragile.samples.removed).toEqual([{ id: 'c:stray', live: { id: 'c:stray', n: 1 }, rebuilt: null }]);
    expect(await live(org)).toEqual(repaired);
  });

  it('a reducer that throws fails the replay at that signal and leaves live state untouched', async () => {
    const org = await newOrg('rpl_throw');
    await seedLifecycles(t, org, 40);
    await count(org, 20);
    const before = await live(org);
    const [culprit] = await t.app.deps.sql<{ id: string }[]>`
      select id from ${t.app.deps.sql(`${org.schema}.signals`)} where type = 'fragile.counted' and (payload->>'n')::int = 13`;
    fragile.broken = true;
    try {
      const done = await untilEnded(t, org, (await request(t, org, { mode: 'rebuild' })).id);
      expect(done.status).toBe('failed');
      expect(done.error).toMatchObject({ code: 'reducer_failed', signal_id: culprit!.id });
      expect(done.error!.message).toContain('thirteen is unlucky');
      expect(done.error!.position).toMatch(/^[0-9a-f]{32}$/);
      await waitFor(async () => !(await schemaExists(t, shadowSchemaOf(done.id, 'rebuild'))), 20_000, 'the shadow tables to be discarded');
    } finally {
      fragile.broken = false;
    }
    expect(await live(org)).toEqual(before);
  });

  it('one replay per scope at a time: a concurrent request is 409 replay_in_progress; a cancel stops and discards', async () => {
    const org = await newOrg('rpl_409');
    await seedLifecycles(t, org, 100);
    const before = await live(org);
    // Slow: 50 signals a second, so it is still running when cancelled.
    const attempts = await Promise.allSettled([0, 1, 2].map(() => request(t, org, { mode: 'rebuild', rate_per_s: 50 })));
    const accepted = attempts.filter((attempt) => attempt.status === 'fulfilled');
    const refused = attempts.filter((attempt) => attempt.status === 'rejected').map((attempt) => (attempt as PromiseRejectedResult).reason);
    expect(accepted).toHaveLength(1);
    expect(refused.map((error) => (error as DomainError).code)).toEqual(['replay_in_progress', 'replay_in_progress']);
    const { id } = (accepted[0] as PromiseFulfilledResult<{ id: string }>).value;
    // Another mode, or projections outside its scope, are not in its way... but a named one inside it is.
    await expect(request(t, org, { mode: 'rebuild', projections: ['directives'] })).rejects.toMatchObject({ code: 'replay_in_progress' });

    const shadow = shadowSchemaOf(id, 'rebuild');
    await waitFor(() => schemaExists(t, shadow), 20_000, 'the shadow tables');
    const cancelled = await cancelReplay(t.app.deps.bus.replays, { ctx: ctxOf(org), input: { id, role: 'support', reason: 'changed my mind' } });
    expect(cancelled.status).toBe('cancelled');
    await waitFor(async () => !(await schemaExists(t, shadow)), 20_000, 'the shadow tables to be discarded');
    expect(await live(org)).toEqual(before);
    await expect(cancelReplay(t.app.deps.bus.replays, { ctx: ctxOf(org), input: { id, role: 'support' } })).rejects.toMatchObject({ code: 'invalid_transition' });
    // Free again.
    const next = await untilEnded(t, org, (await request(t, org, { mode: 'rebuild', projections: ['fragile'] })).id);
    expect(next.status).toBe('succeeded');
  });
});
