/**
 * Worker liveness must not mistake a live worker for a dead one: a job that
 * runs longer than the stale window on a healthy process keeps its lock (and
 * an ordered job its queue), so it runs once — the sweeper frees only the
 * jobs of processes whose heartbeat stopped (crash.test.ts covers those).
 */
import { setTimeout as pause } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Handler } from '../../src/handlers/registry.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const STALE_AFTER_MS = 2000;
/** Each run outlasts the stale window more than twice over. */
const RUN_MS = 5000;

const calls = new Map<string, number>();
let inFlight = 0;
const slow = (id: string, ordered: boolean): Handler => ({
  id,
  on: ['liveness.slow'],
  ordered,
  start: 'beginning',
  async handle() {
    calls.set(id, (calls.get(id) ?? 0) + 1);
    inFlight++;
    try {
      await pause(RUN_MS);
    } finally {
      inFlight--;
    }
  },
});
const handlers = [slow('liveness.plain', false), slow('liveness.ordered', true)];

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp({ handlers });
  org = await t.createOrg('liveness');
  await t.startWorker({ heartbeatMs: 200, staleAfterMs: STALE_AFTER_MS });
});
afterAll(() => t?.close());

describe('worker liveness', () => {
  it('leaves the jobs of a live worker alone however long they run', async () => {
    const sql = t.app.deps.sql;
    await emit(t.app.deps.bus.emit, {
      ctx: { tenant: org, actor: { type: 'integration', id: 'liveness' }, source: 'api' },
      input: { type: 'liveness.slow', subject: 'thing:1', payload: {} },
    });
    // Done: both runs recorded, no job left, and no run (a duplicate included) still going.
    await waitFor(async () => {
      const [row] = await sql<{ succeeded: number; jobs: number }[]>`
        select (select count(*) from ${sql(`${org.schema}.executions`)} where status = 'succeeded')::int as succeeded,
               (select count(*) from graphile_worker._private_jobs)::int as jobs`;
      return row!.succeeded === handlers.length && row!.jobs === 0 && inFlight === 0;
    }, RUN_MS * 4, 'both slow runs to finish');

    const released = t.logs.filter((line) => line.includes('released the jobs of workers whose heartbeat stopped'));
    const heartbeats = await sql<{ worker_id: string }[]>`select worker_id from public.worker_heartbeats order by worker_id`;
    const why = `released: ${JSON.stringify(released)}; heartbeats: ${JSON.stringify(heartbeats.map((row) => row.worker_id))}`;
    expect(Object.fromEntries(calls), `a live worker's job was released and run again; ${why}`).toEqual({
      'liveness.plain': 1,
      'liveness.ordered': 1,
    });
    expect(released, why).toEqual([]);
    const [failed] = await sql<{ n: number }[]>`
      select count(*)::int as n from ${sql(`${org.schema}.signals`)} where type = 'execution.failed'`;
    expect(failed!.n, `execution.failed signals; ${why}`).toBe(0);
  });
});
