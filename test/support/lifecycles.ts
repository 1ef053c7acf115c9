/**
 * Directive lifecycles written straight to a tenant's log through the one way
 * in (`emitBatch`, as the bus itself), for suites that need a long stream of
 * `directive.*` signals without running the pipeline that would produce it.
 */
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { newId } from '../../src/core/ids.ts';
import { emitBatch } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import type { TestApp } from './harness.ts';

/**
 * Lifecycles of `count` directives written straight to the log, round by
 * round (every directive's first signal, then every second…), so pages of a
 * rebuild hold many directives. Five signals each, some of them transitions
 * the reducer must ignore.
 */
export async function seedLifecycles(t: TestApp, org: Tenant, count: number, { straddleXidDigits = false } = {}): Promise<void> {
  const decision = (effect: string) => ({ effect, rule: `seed-${effect}`, reason: `seeded ${effect}`, guards: [] });
  const lifecycle = (id: string, i: number) => {
    const on = (type: string, payload: Record<string, unknown> = {}) => ({ type, payload: { directive_id: id, ...payload } });
    const proposed = (effect: string) =>
      on('directive.proposed', {
        kind: 'seed.act', params: { n: i, note: 'ünïcode ✓' }, idempotency_key: `seed:${id}`, installation_id: null,
        decision: decision(effect), estimated_cost_usd: i / 7, expires_at: effect === 'require_approval' ? '2030-01-01T00:00:00.000Z' : null,
      });
    const decided = (type: string, reason: string | null = `${type} ${i}`) => on(type, { reason });
    const executing = (attempt: number) => on('directive.executing', { execution_id: `exe_seed${i}`, attempt });
    const succeeded = on('directive.succeeded', { execution_id: `exe_seed${i}`, result: { n: i, ok: true }, cost_usd: i * 0.01 });
    const failed = on('directive.failed', { execution_id: `exe_seed${i}`, error: { code: 'refused', message: `no ${i}` } });
    switch (i % 6) {
      case 0: return [proposed('require_approval'), decided('directive.approved'), executing(1), executing(2), succeeded];
      case 1: return [proposed('require_approval'), decided('directive.rejected'), decided('directive.approved'), decided('directive.cancelled'), on('directive.expired')];
      case 2: return [proposed('allow'), executing(1), failed, succeeded, proposed('deny')];
      case 3: return [proposed('require_approval'), decided('directive.cancelled', null), decided('directive.approved'), executing(1), failed];
      case 4: return [proposed('require_approval'), on('directive.expired'), decided('directive.approved'), decided('directive.rejected'), executing(1)];
      default: return [proposed('deny'), decided('directive.approved'), executing(1), succeeded, decided('directive.cancelled')];
    }
  };
  const lifecycles = Array.from({ length: count }, (_, i) => lifecycle(newId('directive'), i));
  const ctx = { tenant: org, actor: PLATFORM_ACTOR, source: 'system', system: true };
  for (let round = 0; round < 5; round++) {
    const inputs = lifecycles.map((signals, i) => ({ ...signals[round]!, dedupe_key: `seed:${i}:${round}` }));
    for (let start = 0; start < inputs.length; start += 250) {
      const results = await emitBatch(t.app.deps.bus.emit, { ctx, inputs: inputs.slice(start, start + 250) });
      const refused = results.find((result) => result.status !== 'created');
      if (refused) throw new Error(`seeding refused a signal: ${JSON.stringify(refused)}`);
      if (round === 0 && start === 0 && straddleXidDigits) await passNextPowerOfTen(t, org);
    }
  }
}

/**
 * Moves the cluster's transaction counter past the next power of ten above
 * the org's last xid, so the org's log holds xids of two lengths: ordering
 * them as text ('10000' < '9999') instead of as xid8 loses or reorders
 * signals. Subtransactions draw from the same counter, so one statement
 * advances it. On a long-lived server far from the next power, it stays put.
 */
async function passNextPowerOfTen(t: TestApp, org: Tenant): Promise<void> {
  const { sql } = t.app.deps;
  const [row] = await sql<{ last: string }[]>`select max(tx_id)::text as last from ${sql(`${org.schema}.signals`)}`;
  const target = 10n ** BigInt(row!.last.length);
  const [current] = await sql<{ xid: string }[]>`select pg_current_xact_id()::text as xid`;
  const gap = target - BigInt(current!.xid);
  if (gap > 500_000n) return;
  if (gap > 0n) {
    await sql.begin(async (tx) => {
      await tx`create temporary table xid_burner (n int) on commit drop`;
      await tx.unsafe(`do $$ begin for i in 1..${gap} loop begin insert into xid_burner values (i); exception when others then null; end; end loop; end $$`);
    });
  }
}
