import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emit, emitBatch } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

let t: TestApp;
let org: Tenant;
const actor = { type: 'human' as const, id: 'batcher@test' };

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('batcher');
  // A database-level failure that validation cannot see: the row is refused on insert.
  await t.app.deps.sql.unsafe(`
    create function org_batcher.refuse_poison() returns trigger language plpgsql as $$
    begin raise exception 'poisoned row'; end $$;
    create trigger refuse_poison before insert on org_batcher.signals
      for each row when (new.type = 'test.poison') execute function org_batcher.refuse_poison();`);
});
afterAll(() => t.close());

const emitOne = (type: string, n: number, dedupe?: string) =>
  emit(t.app.deps, {
    ctx: { tenant: org, actor, source: 'api' },
    input: { type, payload: { n }, ...(dedupe ? { dedupe_key: dedupe } : {}) },
  });

describe('append batcher (group commit)', () => {
  it('commits concurrent emits of one tenant together, each in its own position', async () => {
    const results = await Promise.all(Array.from({ length: 40 }, (_, n) => emitOne('test.burst', n)));
    const positions = results.map((result) => result.signal.position);
    expect(new Set(positions).size).toBe(40);
    // Signals appended by one statement share its transaction id (the first half of the position).
    const transactions = new Set(positions.map((position) => position.slice(0, 16)));
    expect(transactions.size).toBeLessThan(40);
    const [row] = await t.app.deps.sql`select count(*)::int as n from org_batcher.signals where type = 'test.burst'`;
    expect(row!.n).toBe(40);
  });

  it('resolves one key emitted concurrently to one row, whichever statement carries it', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => emitOne('test.same', 1, 'same-key')));
    expect(results.filter((result) => !result.deduplicated)).toHaveLength(1);
    expect(new Set(results.map((result) => result.signal.id)).size).toBe(1);
  });

  it('fails only the submission the database refuses; its neighbours commit', async () => {
    const outcomes = await Promise.allSettled([
      ...Array.from({ length: 15 }, (_, n) => emitOne('test.neighbour', n)),
      emitOne('test.poison', 99),
      ...Array.from({ length: 15 }, (_, n) => emitOne('test.neighbour', 100 + n)),
    ]);
    const rejected = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(rejected).toHaveLength(1);
    expect(String((rejected[0] as PromiseRejectedResult).reason)).toContain('poisoned row');
    const [row] = await t.app.deps.sql`
      select count(*) filter (where type = 'test.neighbour')::int as neighbours,
             count(*) filter (where type = 'test.poison')::int as poison
        from org_batcher.signals`;
    expect(row).toEqual({ neighbours: 30, poison: 0 });
  });

  it('keeps an explicit batch atomic when it shares a statement with others', async () => {
    const batch = emitBatch(t.app.deps, {
      ctx: { tenant: org, actor, source: 'api' },
      inputs: [
        { type: 'test.batched', payload: { n: 1 } },
        { type: 'test.poison', payload: {} },
        { type: 'test.batched', payload: { n: 2 } },
      ],
    });
    const alongside = Array.from({ length: 10 }, (_, n) => emitOne('test.alongside', n));
    const settled = await Promise.allSettled([batch, ...alongside]);
    expect(settled[0]!.status).toBe('rejected');
    expect(settled.slice(1).every((outcome) => outcome.status === 'fulfilled')).toBe(true);
    const [row] = await t.app.deps.sql`
      select count(*) filter (where type = 'test.batched')::int as batched,
             count(*) filter (where type = 'test.alongside')::int as alongside
        from org_batcher.signals`;
    expect(row).toEqual({ batched: 0, alongside: 10 });
  });

  it('stores each merged signal with its own actor, source and trace', async () => {
    const origins = Array.from({ length: 12 }, (_, n) => ({
      actor: { type: 'agent' as const, id: `agent-${n % 3}` },
      source: n % 2 ? 'api' : 'webhook:test',
      traceparent: `00-${String(n).padStart(32, 'a')}-00f067aa0ba902b7-01`,
    }));
    const results = await Promise.all(
      origins.map((origin, n) =>
        emit(t.app.deps, { ctx: { tenant: org, ...origin }, input: { type: 'test.origin', payload: { n } } }),
      ),
    );
    const stored = await t.app.deps.sql<{ id: string; actor: unknown; source: string; trace: string }[]>`
      select id, actor, source, trace from org_batcher.signals where type = 'test.origin'`;
    const byId = new Map(stored.map((row) => [row.id, row]));
    results.forEach((result, n) => {
      expect(byId.get(result.signal.id)).toEqual({
        id: result.signal.id,
        actor: origins[n]!.actor,
        source: origins[n]!.source,
        trace: origins[n]!.traceparent,
      });
    });
    const [wrong] = await t.app.deps.sql`
      select count(*)::int as n from org_batcher.signals where jsonb_typeof(actor) <> 'object'`;
    expect(wrong!.n).toBe(0);
  });

  it('sends big batches of one tenant as parallel statements of at most 1,000 rows, each batch in one of them', async () => {
    const batches = await Promise.all(
      Array.from({ length: 8 }, (_, b) =>
        emitBatch(t.app.deps, {
          ctx: { tenant: org, actor, source: 'api' },
          inputs: Array.from({ length: 500 }, (_, n) => ({ type: 'test.big', payload: { b, n } })),
        }),
      ),
    );
    const transactionOf = (result: (typeof batches)[number][number]) => ('signal' in result ? result.signal.position.slice(0, 16) : 'missing');
    // All eight were waiting when the first statement went out: four statements of two batches each.
    for (const batch of batches) expect(new Set(batch.map(transactionOf)).size).toBe(1);
    const transactions = new Set(batches.map((batch) => transactionOf(batch[0]!)));
    expect(transactions.size).toBe(4);
    const [row] = await t.app.deps.sql`select count(*)::int as n from org_batcher.signals where type = 'test.big'`;
    expect(row!.n).toBe(4000);
  });
});
