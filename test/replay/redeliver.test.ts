/**
 * Redelivery after a handler fix, against a fake Stripe on loopback: what
 * was done is deduplicated and never called again; only the directives the
 * fixed handler now proposes are new, and they are held for approval though
 * the policy allows them. A dry run first leaves every table as it was,
 * calls nobody, and reports exactly what the real redelivery then does.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { planRedelivery, redeliver, type RedeliverInput } from '../../src/handlers/redeliver.ts';
import type { RedeliverReport } from '../../src/handlers/redeliver-report.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import { emit } from '../../src/signals/emit.ts';
import { startWorker } from '../../src/worker/runner.ts';
import { startStripeFake, type StripeFake } from '../fakes/stripe.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { waitQuiescent } from '../support/quiescent.ts';
import { writeSignalAt } from '../support/signal-at.ts';
import { tableChecksums } from '../support/table-checksums.ts';
import { request, untilEnded } from './support.ts';

const API_KEY = `sk_test_${randomBytes(12).toString('hex')}`;
const SUPPORT = { type: 'human' as const, id: 'support@signalbus.test' };
/** The bug: refunds over 100 were silently dropped. The fix handles them. */
let fixed = false;
/** A later change that alters what an already-made directive would hold. */
let altered = false;

const refunds: Handler = {
  id: 'test.refunds',
  on: ['order.refund_requested'],
  start: 'beginning',
  handle(signal, tools) {
    const { payment_intent, amount } = signal.payload as { payment_intent: string; amount: number };
    if (!fixed && amount > 100) return;
    tools.emit({ type: 'order.refund_noted', subject: signal.subject, payload: { amount }, key: 'noted' });
    tools.propose({ kind: 'stripe.refund.create', params: { payment_intent, amount: altered ? amount + 1 : amount }, key: 'refund' });
  },
};

let fake: StripeFake;
let t: TestApp;
let org: Tenant;
let dryRun: RedeliverReport;

const AMOUNTS = [50, 150, 70, 300, 20, 200];
const SELECTION = { types: ['order.refund_requested'] };
const REASON = 'INC-7: refunds over 100 were dropped';

const run = (input: RedeliverInput, options: Partial<Parameters<typeof redeliver>[1]> = {}) =>
  redeliver(t.app.deps.bus.runtime, { ctx: { tenant: org, actor: SUPPORT, source: 'api' }, input, ...options });

async function count(sql: string): Promise<number> {
  const [row] = await t.app.deps.sql.unsafe<{ n: number }[]>(sql);
  return row!.n;
}

const quiet = () => waitQuiescent(t.app.deps.sql, org, { handlers: 1 });
const newOnes = <T extends { new: boolean; id?: string }>(items: T[] | undefined) =>
  (items ?? []).filter((item) => item.new).map(({ id: _id, ...rest }) => rest);

beforeAll(async () => {
  fake = await startStripeFake({ apiKeys: [API_KEY] });
  t = await createTestApp({ handlers: [refunds], env: { SIGNALBUS_STRIPE_API_BASE: fake.url } });
  org = await t.createOrg('redeliver');
  await setPolicy(t, org, { rules: [{ id: 'allow-stripe', match: 'stripe.*', effect: 'allow' }] });
  await putSecret(t.app.deps.vault, { tenant: org, name: 'stripe_api_key', input: { value: API_KEY } });
  // Stopped before the dry run (its heartbeats write), so started apart from the harness's.
  const first = await startWorker(t.app.worker, { databaseUrl: t.database.url, concurrency: 4, heartbeatMs: 1000, staleAfterMs: 5000, pollIntervalMs: 50 });
  for (const [i, amount] of AMOUNTS.entries()) {
    await emit(t.app.deps.bus.emit, {
      ctx: { tenant: org, actor: { type: 'human', id: 'ana' }, source: 'api' },
      input: { type: 'order.refund_requested', subject: `order:${i}`, payload: { payment_intent: `pi_${i}`, amount } },
    });
  }
  await waitFor(async () => (await count(`select count(*)::int as n from org_redeliver.directives where status = 'succeeded'`)) === 3, 30_000, 'the first refunds');
  await quiet();
  expect(fake.effects).toHaveLength(3);
  await first.stop();
}, 60_000);

afterAll(async () => {
  await t?.close();
  await fake?.close();
});

describe('redeliver after a handler fix', () => {
  it('dry run: every table unchanged, no provider call, and a report of what would happen', async () => {
    fixed = true;
    const calls = fake.calls.length;
    const before = await tableChecksums(t.app.deps.sql, [org.schema]);
    const { plan, report } = await run({ selection: SELECTION, dry_run: true, reason: REASON });
    expect(await tableChecksums(t.app.deps.sql, [org.schema])).toEqual(before);
    expect(fake.calls.length).toBe(calls);
    expect(plan).toMatchObject({ handlers: ['test.refunds'], total: 6 });
    expect(report).toMatchObject({
      dry_run: true,
      processed: 6,
      runs: 6,
      failed: 0,
      signals_new: 3,
      signals_deduplicated: 3,
      directives_new: 3,
      directives_deduplicated: 3,
      decisions: { require_approval: 3 },
    });
    const proposals = report.would_propose!.filter((item) => item.new);
    expect(proposals.map((item) => item.cause).sort()).toHaveLength(3);
    for (const item of proposals) {
      expect(item.decision).toMatchObject({ effect: 'require_approval', rule: 'replay.hold' });
      expect(item.policy).toMatchObject({ effect: 'allow', rule: 'allow-stripe' });
      expect(item.id).toBeUndefined();
    }
    // Deduplicated outputs name the rows that exist.
    expect(report.would_propose!.filter((item) => !item.new).every((item) => item.id?.startsWith('dir_'))).toBe(true);
    dryRun = report;
  });

  it('real run: the same report, only the new directives appear, held, and nothing already done is called again', async () => {
    await t.startWorker({ pollIntervalMs: 50 });
    const calls = fake.calls.length;
    const { report } = await run({ selection: SELECTION, reason: REASON });
    const { would_emit: _e, would_propose: _p, dry_run: _d, ...dryCounts } = dryRun;
    const { emitted, proposed, dry_run, ...counts } = report;
    expect(dry_run).toBe(false);
    expect(counts).toEqual(dryCounts);
    expect(newOnes(proposed)).toEqual(newOnes(dryRun.would_propose));
    expect(newOnes(emitted)).toEqual(newOnes(dryRun.would_emit));
    expect(proposed!.filter((item) => item.new).every((item) => item.id?.startsWith('dir_'))).toBe(true);

    await quiet();
    expect(fake.calls.length).toBe(calls);
    expect(fake.effects).toHaveLength(3);
    const rows = await t.app.deps.sql<{ status: string; rule: string; amount: number; reason: string }[]>`
      select status, decision->>'rule' as rule, (params->>'amount')::int as amount, decision->>'reason' as reason
        from org_redeliver.directives order by (params->>'amount')::int`;
    expect(rows.map((row) => [row.amount, row.status, row.rule])).toEqual([
      [20, 'succeeded', 'allow-stripe'],
      [50, 'succeeded', 'allow-stripe'],
      [70, 'succeeded', 'allow-stripe'],
      [150, 'awaiting_approval', 'replay.hold'],
      [200, 'awaiting_approval', 'replay.hold'],
      [300, 'awaiting_approval', 'replay.hold'],
    ]);
    expect(rows[3]!.reason).toContain('INC-7');
    // Each run with something new is an execution of the handler.
    expect(await count(`select count(*)::int as n from org_redeliver.executions where handler = 'test.refunds' and status = 'succeeded'`)).toBe(9);
  });

  it('run again: everything deduplicated, nothing written', async () => {
    const signals = await count('select count(*)::int as n from org_redeliver.signals');
    const { report } = await run({ selection: SELECTION });
    expect(report).toMatchObject({ runs: 6, signals_new: 0, directives_new: 0, signals_deduplicated: 6, directives_deduplicated: 6 });
    expect(await count('select count(*)::int as n from org_redeliver.signals')).toBe(signals);
  });

  it('"execute" sends new directives through policy: allowed, executed once', async () => {
    fixed = false;
    await emit(t.app.deps.bus.emit, {
      ctx: { tenant: org, actor: { type: 'human', id: 'ana' }, source: 'api' },
      input: { type: 'order.refund_requested', subject: 'order:big', payload: { payment_intent: 'pi_big', amount: 500 } },
    });
    await quiet();
    fixed = true;
    // The subject alone also selects the live run's execution signal, which the handler does not match.
    const { report } = await run({ selection: { subject: 'order:big' }, new_directives: 'execute' });
    expect(report).toMatchObject({ processed: 2, runs: 1, directives_new: 1, decisions: { allow: 1 } });
    await waitFor(() => fake.effects.length === 4, 20_000, 'the refund of 500');
    await quiet();
    expect(fake.effects).toHaveLength(4);
  });
});

describe('redelivery selection, pace and cancel', () => {
  it('selects by position and time; an empty window runs nothing', async () => {
    const all = await run({ selection: SELECTION, dry_run: true });
    const first = all.report.would_propose!.find((item) => item.cause)!.cause;
    const [row] = await t.app.deps.sql<{ position: string }[]>`
      select lpad(to_hex((tx_id::text)::bigint), 16, '0') || lpad(to_hex(seq), 16, '0') as position from org_redeliver.signals where id = ${first}`;
    const after = await run({ selection: { ...SELECTION, after: row!.position }, dry_run: true });
    expect(after.plan.total).toBe(all.plan.total - 1);
    const future = await run({ selection: { since: new Date(Date.now() + 3_600_000).toISOString() }, dry_run: true });
    expect(future.report).toMatchObject({ processed: 0, runs: 0 });
  });

  it('keeps to rate_per_s, reports progress, and stops when cancelled', async () => {
    const progress: number[] = [];
    const started = performance.now();
    const paced = await run({ selection: SELECTION, dry_run: true, rate_per_s: 3 }, { hooks: { onProgress: ({ processed }) => void progress.push(processed) } });
    expect(paced.report.processed).toBe(7);
    // 7 signals at 3/s: pages of 3, the third page waits until 2 s have passed.
    expect(performance.now() - started).toBeGreaterThanOrEqual(1900);
    expect(progress).toEqual([3, 6, 7]);
    let pages = 0;
    const cancelled = await run(
      { selection: SELECTION, dry_run: true, rate_per_s: 2 },
      { hooks: { onProgress: () => void pages++, cancelled: () => pages >= 1 } },
    );
    expect(cancelled.report).toMatchObject({ cancelled: true, processed: 2 });
  });

  it('a change that alters a done output is a conflict, reported and never overwritten', async () => {
    altered = true;
    try {
      const { report } = await run({ selection: SELECTION });
      expect(report).toMatchObject({ runs: 7, failed: 7, directives_new: 0, directives_deduplicated: 0 });
      expect(new Set(report.errors.map((error) => error.code))).toEqual(new Set(['idempotency_conflict']));
    } finally {
      altered = false;
    }
    const [changed] = await t.app.deps.sql<{ n: number }[]>`
      select count(*)::int as n from org_redeliver.directives where (params->>'amount')::int % 10 <> 0`;
    expect(changed!.n).toBe(0);
  });

  it('refuses an unknown handler', async () => {
    await expect(run({ handlers: ['test.nobody'] })).rejects.toMatchObject({ code: 'validation_failed' });
  });
});

describe('planning a redelivery', () => {
  it('ends the selection at its last position by number: transaction ids across a power of ten', async () => {
    const digits = await t.createOrg('redeliver_digits');
    // Signals of the transactions 9 and 10, as the oldest of a log: as text, '9' sorts after '10'.
    await writeSignalAt(t.app.deps.sql, digits, '9', { type: 'digits.probe', subject: 'probe:0' });
    const { position: last } = await writeSignalAt(t.app.deps.sql, digits, '10', { type: 'digits.probe', subject: 'probe:1' });
    const plan = await planRedelivery(t.app.deps.bus.runtime, {
      ctx: { tenant: digits, actor: SUPPORT, source: 'api' },
      input: { selection: { types: ['digits.probe'], until: last }, handlers: [refunds.id] },
    });
    expect(plan).toMatchObject({ until: last, total: 2 });
  });
});

describe('redeliver as a replay', () => {
  it('runs as a replay job: a dry run reports, support holds, only an admin may execute', async () => {
    fixed = false;
    await emit(t.app.deps.bus.emit, {
      ctx: { tenant: org, actor: { type: 'human', id: 'ana' }, source: 'api' },
      input: { type: 'order.refund_requested', subject: 'order:replayed', payload: { payment_intent: 'pi_replayed', amount: 260 } },
    });
    await quiet();
    fixed = true;
    const selection = { types: ['order.refund_requested'], subject: 'order:replayed' };
    const checksums = await tableChecksums(t.app.deps.sql, [org.schema]);
    const signalsBefore = await count('select count(*)::int as n from org_redeliver.signals');

    const dry = await untilEnded(t, org, (await request(t, org, { mode: 'redeliver', dry_run: true, selection })).id);
    expect(dry).toMatchObject({ status: 'succeeded', processed: 1, total: 1 });
    expect(dry.report).toMatchObject({ dry_run: true, runs: 1, directives_new: 1, signals_new: 1, decisions: { require_approval: 1 } });
    expect((dry.report!.would_propose as Array<{ new: boolean }>).filter((item) => item.new)).toHaveLength(1);
    // Only the replay's own bookkeeping moved (its replay.* signals, its row, and the running worker's own tables).
    const after = await tableChecksums(t.app.deps.sql, [org.schema]);
    const moved = Object.keys(after).filter((table) => after[table] !== checksums[table]);
    const bookkeeping = ['org_redeliver.replays', 'org_redeliver.signals', 'org_redeliver.subscriptions', 'public.worker_heartbeats', 'graphile_worker._private_jobs'];
    expect(moved.filter((table) => !bookkeeping.includes(table))).toEqual([]);
    expect(moved).toContain('org_redeliver.replays');
    const [added] = await t.app.deps.sql<{ n: number; replay: number }[]>`
      select count(*)::int as n, count(*) filter (where type like 'replay.%')::int as replay
        from (select type from org_redeliver.signals order by tx_id desc, seq desc limit ${(await count('select count(*)::int as n from org_redeliver.signals')) - signalsBefore}) s`;
    expect(added!.replay).toBe(added!.n);

    await expect(request(t, org, { mode: 'redeliver', new_directives: 'execute', selection }, 'support')).rejects.toMatchObject({ code: 'forbidden' });

    const calls = fake.calls.length;
    const held = await untilEnded(t, org, (await request(t, org, { mode: 'redeliver', selection }, 'support')).id);
    expect(held).toMatchObject({ status: 'succeeded', processed: 1 });
    expect(held.report).toMatchObject({ dry_run: false, directives_new: 1, decisions: { require_approval: 1 } });
    const [directive] = await t.app.deps.sql<{ status: string; reason: string }[]>`
      select status, decision->>'reason' as reason from org_redeliver.directives where params->>'payment_intent' = 'pi_replayed'`;
    expect(directive!.status).toBe('awaiting_approval');
    expect(directive!.reason).toContain(`replay ${held.id}: INC-1`);
    await quiet();
    expect(fake.calls.length).toBe(calls);
  });
});
