/**
 * A subscription added after the fact: from the beginning it runs over every
 * earlier signal, from now over none of them; both get what follows. And
 * emitting never touches subscriptions or jobs — fan-out is the dispatcher's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Handler } from '../../src/handlers/registry.ts';
import { subscribe } from '../../src/handlers/subscriptions.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const BEFORE = 500;
const AFTER = 20;

const handler = (id: string, extra: Partial<Handler> = {}): Handler => ({ id, on: ['bulk.item'], handle() {}, ...extra });
/** Each start declared on the handler, and each set by `subscribe` over the default. */
const handlers = [
  handler('backfill.declared', { start: 'beginning' }),
  handler('backfill.subscribed'),
  handler('live.declared'),
  handler('live.subscribed', { start: 'beginning' }),
];

let t: TestApp;

beforeAll(async () => {
  t = await createTestApp({ handlers });
});
afterAll(() => t.close());

const actor = { type: 'integration', id: 'importer' } as const;

async function emitItems(org: Tenant, from: number, count: number): Promise<string[]> {
  const ids: string[] = [];
  // Four writers at a time: the log, not arrival order, decides what a cursor sees.
  for (let start = from; start < from + count; start += 4) {
    const batch = Array.from({ length: Math.min(4, from + count - start) }, (_, i) => start + i);
    const results = await Promise.all(
      batch.map((n) =>
        emit(t.app.deps.bus.emit, { ctx: { tenant: org, actor, source: 'api' }, input: { type: 'bulk.item', subject: `item:${n}`, payload: { n } } }),
      ),
    );
    ids.push(...results.map((result) => result.signal.id));
  }
  return ids;
}

describe('emit and subscriptions', () => {
  it('emitting a handled type takes no lock on subscriptions or jobs', async () => {
    const org = await t.createOrg('emit_only');
    // Subscriptions exist for every handler, so a per-handler enqueue on emit would find work.
    for (const { id } of handlers) await subscribe(t.app.deps.sql, org, id, 'now');
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const holder = t.app.deps.sql.begin(async (tx) => {
      await tx`lock table ${tx(`${org.schema}.subscriptions`)} in access exclusive mode`;
      await tx`lock table graphile_worker._private_jobs in access exclusive mode`;
      locked();
      await held;
    });
    try {
      await Promise.race([lockTaken, holder]);
      const emitted = emit(t.app.deps.bus.emit, {
        ctx: { tenant: org, actor, source: 'api' },
        input: { type: 'bulk.item', subject: 'item:probe', payload: { n: -1 } },
      });
      let timer: NodeJS.Timeout | undefined;
      const blocked = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('emit waited on a lock held on subscriptions or jobs')), 10_000);
      });
      const { signal } = await Promise.race([emitted, blocked]).finally(() => clearTimeout(timer));
      expect(signal.type).toBe('bulk.item');
    } finally {
      release();
      await holder;
    }
    const [jobs] = await t.app.deps.sql<{ n: number }[]>`select count(*)::int as n from graphile_worker._private_jobs`;
    expect(jobs!.n).toBe(0);
  });

  it('backfills from the beginning over every earlier signal, and from now over none', async () => {
    const org = await t.createOrg('backfill');
    const sql = t.app.deps.sql;
    const earlier = await emitItems(org, 0, BEFORE);
    // Nothing older may still be open when "now" is taken, or it would count as new.
    await t.settle();

    await subscribe(sql, org, 'backfill.subscribed', 'beginning');
    await subscribe(sql, org, 'live.subscribed', 'now');
    // The two `.declared` handlers get their subscriptions from the worker, at their declared start.
    await t.startWorker({ concurrency: 4 });
    await waitFor(async () => {
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from ${sql(`${org.schema}.subscriptions`)}`;
      return row!.n === handlers.length;
    }, 20_000, 'every subscription to exist');

    const later = await emitItems(org, BEFORE, AFTER);

    const runsOf = async () => {
      const rows = await sql<{ handler: string; signal_id: string; status: string }[]>`
        select handler, signal_id, status from ${sql(`${org.schema}.executions`)}`;
      const by = new Map<string, string[]>(handlers.map(({ id }) => [id, []]));
      for (const row of rows) by.get(row.handler)!.push(`${row.signal_id}:${row.status}`);
      return by;
    };
    // Done when every checkpoint has passed the last signal and no job is left:
    // nothing more can run after that.
    await waitFor(async () => {
      const [row] = await sql<{ behind: number; jobs: number }[]>`
        select (select count(*) from ${sql(`${org.schema}.subscriptions`)} sub
                 where exists (select 1 from ${sql(`${org.schema}.signals`)} s
                                where s.type = 'bulk.item' and (s.tx_id, s.seq) > (sub.tx_id, sub.seq)))::int as behind,
               (select count(*) from graphile_worker._private_jobs)::int as jobs`;
      return row!.behind === 0 && row!.jobs === 0;
    }, 60_000, 'every checkpoint to pass the last signal and every job to finish');

    const by = await runsOf();
    const sorted = (ids: string[]) => [...ids].sort();
    const succeeded = (ids: string[]) => sorted(ids.map((id) => `${id}:succeeded`));
    const all = succeeded([...earlier, ...later]);
    expect(sorted(by.get('backfill.declared')!)).toEqual(all);
    expect(sorted(by.get('backfill.subscribed')!)).toEqual(all);
    expect(sorted(by.get('live.declared')!)).toEqual(succeeded(later));
    expect(sorted(by.get('live.subscribed')!)).toEqual(succeeded(later));
  });
});
