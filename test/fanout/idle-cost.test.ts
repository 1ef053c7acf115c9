/**
 * The dispatcher's idle cost and start-up do not grow with the orgs that have
 * nothing new. With 1,000 orgs, 10 of them with an installed package whose
 * rule handler is subscribed, an idle dispatcher sends about as many
 * statements per second as with one such org, starts in under 2 s, and what an org with an installation
 * then commits is still handled by a worker. The idle orgs are provisioned
 * in bulk, many schemas per transaction.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/core/ids.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import postgres from 'postgres';
import type { Sql } from '../../src/db/client.ts';
import { createDispatcher } from '../../src/handlers/dispatcher.ts';
import { emit } from '../../src/signals/emit.ts';
import { createTenantSchema } from '../../src/tenancy/tenant-migrations.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { installedPackage, STRIPE_SECRETS } from '../support/installations.ts';

const ORGS = 1000;
const WITH_INSTALLATIONS = 10;
/** Short, so the sweep's cost shows against the dispatcher's other work. */
const SWEEP_MS = 500;
const WINDOW_MS = 6000;

let t: TestApp;

beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t?.close());

/**
 * Organizations rows, then their schemas, `perTx` orgs per transaction on
 * three connections (the DDL is CPU-bound in the server). A transaction holds
 * a lock per object it creates until it commits, so `perTx` stays well inside
 * the server's lock table.
 */
async function provisionMany(sql: Sql, slugs: string[], perTx = 25): Promise<Tenant[]> {
  const tenants = slugs.map((slug) => ({ id: newId('org'), slug, schema: `org_${slug}` }));
  const queue: Tenant[][] = [];
  for (let start = 0; start < tenants.length; start += perTx) queue.push(tenants.slice(start, start + perTx));
  const writer = async () => {
    for (let batch = queue.shift(); batch; batch = queue.shift()) {
      const orgs = batch;
      await sql.begin(async (tx) => {
        await tx`insert into public.organizations ${tx(orgs.map((org) => ({ id: org.id, slug: org.slug, name: org.slug, schema_name: org.schema })))}`;
        for (const org of orgs) await createTenantSchema(tx, org, t.app.deps.tenantMigrations);
      });
    }
  };
  await Promise.all([writer(), writer(), writer()]);
  return tenants;
}

/**
 * A dispatcher on a pool of its own, as a worker runs it, sweeping every
 * SWEEP_MS: how long its start took, and the statements per second its pool
 * sent while idle. Counted at the client, so only the dispatcher's own work
 * shows: pg_stat_database's commit count would also take in autovacuum,
 * which vacuums the catalogs for minutes after a thousand schemas, and
 * backends flush it seconds late.
 */
async function idleDispatcher(windowMs = WINDOW_MS): Promise<{ startMs: number; perSecond: number }> {
  let statements = 0;
  const sql = postgres(t.database.url, { max: 4, onnotice: () => {}, debug: () => void statements++ });
  const dispatcher = createDispatcher({
    sql,
    handlers: t.app.deps.bus.handlers,
    tenants: t.app.deps.tenants,
    notifier: t.app.deps.notifier,
    logger: t.app.deps.logger,
    sweepIntervalMs: SWEEP_MS,
    // Other databases' open transactions hold the cluster-wide horizon back
    // at random; the re-poll for signals behind it is left to the sweep, so
    // what is counted is the same work for one org and for a thousand.
    heldBackRetryMs: 60_000,
  });
  const started = performance.now();
  await dispatcher.start();
  const startMs = performance.now() - started;
  const before = statements;
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  const perSecond = (statements - before) / (windowMs / 1000);
  await dispatcher.stop();
  await sql.end({ timeout: 5 });
  return { startMs, perSecond };
}

/**
 * Waits until every signal of `tenants` is below the visibility horizon
 * (which any database's open transaction holds back): until then the
 * dispatcher rightly has work left, and idle is not idle.
 */
async function belowHorizon(tenants: Tenant[]): Promise<void> {
  const newest = tenants.map((tenant) => `(select max(tx_id) from ${tenant.schema}.signals)`).join(', ');
  await waitFor(async () => {
    const [row] = await t.app.deps.sql.unsafe<{ below: boolean }[]>(`select greatest(${newest}) < pg_snapshot_xmin(pg_current_snapshot()) as below`);
    return row!.below;
  }, 120_000, 'the installed orgs’ signals to be below the horizon');
}

const refundRequest = (tenant: Tenant, n: number) =>
  emit(t.app.deps.bus.emit, {
    ctx: { tenant, actor: { type: 'human', id: 'support@acme.test' }, source: 'api' },
    input: { type: 'stripe.refund.requested', payload: { payment_intent: `pi_${n}`, amount: n } },
  });

async function proposals(tenant: Tenant, installed: { id: string }): Promise<number> {
  const [row] = await t.app.deps.sql<{ n: number }[]>`
    select count(*)::int as n from ${t.app.deps.sql(`${tenant.schema}.directives`)} where installation_id = ${installed.id}`;
  return row!.n;
}

describe('the dispatcher with many idle orgs', () => {
  it('costs about what one org costs when idle, starts in under 2 s, and still delivers', async () => {
    const config = { refund_approval_above: 1000 };
    const first = await t.createOrg('idle_first');
    const installations = [{ tenant: first, installed: { id: await installedPackage(t, first, { package: 'stripe-revenue', config, secrets: STRIPE_SECRETS }) } }];
    // The first start subscribes the rule and dispatches the log; the measured one is a restart.
    await idleDispatcher(1000);
    await belowHorizon(installations.map((each) => each.tenant));
    const single = await idleDispatcher();

    for (let i = 1; i < WITH_INSTALLATIONS; i++) {
      const tenant = await t.createOrg(`idle_installed_${i}`);
      installations.push({ tenant, installed: { id: await installedPackage(t, tenant, { package: 'stripe-revenue', config, secrets: STRIPE_SECRETS }) } });
    }
    const provisioned = performance.now();
    await provisionMany(t.app.deps.sql, Array.from({ length: ORGS - WITH_INSTALLATIONS }, (_, i) => `idle_${i}`));
    const provisionMs = performance.now() - provisioned;
    await idleDispatcher(1000);
    await belowHorizon(installations.map((each) => each.tenant));
    const many = await idleDispatcher();

    console.log(
      `idle dispatcher sweeping every ${SWEEP_MS} ms: ${single.perSecond.toFixed(1)} statements/s with 1 org, ${many.perSecond.toFixed(1)} with ${ORGS} ` +
        `(${WITH_INSTALLATIONS} with installations); start ${single.startMs.toFixed(0)} ms and ${many.startMs.toFixed(0)} ms; ` +
        `${ORGS - WITH_INSTALLATIONS} idle orgs provisioned in ${(provisionMs / 1000).toFixed(1)} s`,
    );
    expect(many.startMs).toBeLessThan(2000);
    expect(many.perSecond).toBeLessThanOrEqual(2 * single.perSecond);

    // Idle is not asleep: a signal in an org with an installation is handled.
    await t.startWorker();
    const { tenant, installed } = installations.at(-1)!;
    await refundRequest(tenant, 42);
    await waitFor(async () => (await proposals(tenant, installed)) === 1, 20_000, 'the rule to propose');
  }, 420_000);
});
