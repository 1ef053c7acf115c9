/**
 * The entities projection: stripe-revenue's manifest `projections` fold its
 * signals into customers and payments while it is installed (not before, not
 * after uninstall), the HTTP routes read them, and a rebuild — of this
 * projection alone or of all — gives the same checksum.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { checksumProjections, rebuildProjections } from '../../src/projections/rebuild.ts';
import { withTransaction } from '../../src/db/transaction.ts';
import { emit } from '../../src/signals/emit.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { changeInstallation, installedPackage, STRIPE_REVENUE_INSTALL } from '../support/installations.ts';

let t: TestApp;
let org: Tenant;
let viewer: string;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('entities_a');
  viewer = await t.createKey(org, 'viewer');
});

afterAll(async () => {
  await t?.close();
});

const signal = async (type: string, payload: Record<string, unknown>) =>
  (await emit(t.app.deps.bus.emit, { ctx: { tenant: org, actor: { type: 'human', id: 'ops@entities.test' }, source: 'api' }, input: { type, payload } })).signal;
const get = (path: string) => t.request('GET', `/v1/orgs/${org.slug}${path}`, { key: viewer });

describe('entities projected from stripe-revenue', () => {
  it('folds customers and payments while installed, serves them, and rebuilds to the same checksum', async () => {
    await signal('stripe.customer.created', { id: 'cus_before', email: 'early@x.test' });
    const installation = await installedPackage(t, org, STRIPE_REVENUE_INSTALL);

    await signal('stripe.customer.created', { id: 'cus_a', email: 'a@x.test', name: 'Ada' });
    const updated = await signal('stripe.customer.updated', { id: 'cus_a', email: 'ada@x.test' });
    await signal('stripe.customer.created', { id: 'cus_b', email: 'b@x.test', name: 'Bo' });
    const deleted = await signal('stripe.customer.deleted', { id: 'cus_b' });
    await signal('stripe.charge.succeeded', { id: 'ch_1', amount: 1200, currency: 'eur', customer: 'cus_a' });
    await signal('stripe.charge.refunded', { id: 'ch_1', amount: 1200, amount_refunded: 200, currency: 'eur', customer: 'cus_a' });

    const ada = await get('/entities/stripe.customer/cus_a');
    expect(ada.status, ada.text).toBe(200);
    // The update named no `name`: the field keeps its value.
    expect(ada.body).toEqual({
      type: 'stripe.customer',
      key: 'cus_a',
      fields: { email: 'ada@x.test', name: 'Ada' },
      version: 2,
      tombstone: false,
      updated_position: updated.position,
    });
    const bo = await get('/entities/stripe.customer/cus_b');
    expect(bo.body).toMatchObject({ tombstone: true, version: 2, updated_position: deleted.position, fields: { email: 'b@x.test', name: 'Bo' } });
    const payment = await get('/entities/stripe.payment/ch_1');
    expect(payment.body).toMatchObject({
      version: 2,
      fields: { amount: 1200, amount_refunded: 200, currency: 'eur', customer: 'cus_a', refunded: true },
    });
    expect((await get('/entities/stripe.customer/cus_before')).status).toBe(404);

    // Uninstalled: its rules no longer run.
    await changeInstallation(t, org, installation, 'uninstall');
    await signal('stripe.customer.created', { id: 'cus_after', email: 'late@x.test' });
    expect((await get('/entities/stripe.customer/cus_after')).status).toBe(404);

    const first = await get('/entities?type=stripe.customer&limit=1');
    expect(first.status, first.text).toBe(200);
    expect(first.body.data.map((entity: { key: string }) => entity.key)).toEqual(['cus_a']);
    const second = await get(`/entities?type=stripe.customer&limit=1&after=${encodeURIComponent(first.body.next_cursor)}`);
    expect(second.body).toMatchObject({ data: [{ key: 'cus_b' }], next_cursor: null });
    const all = await get('/entities');
    expect(all.body.data.map((entity: { type: string; key: string }) => `${entity.type}/${entity.key}`)).toEqual([
      'stripe.customer/cus_a',
      'stripe.customer/cus_b',
      'stripe.payment/ch_1',
    ]);

    const live = await checksumProjections(t.app.deps.sql, org, t.app.deps.projections.projections);
    expect(live.entities!.rows).toBeGreaterThan(3);
    const alone = await rebuildProjections(t.app.deps.sql, org, t.app.deps.projections, { names: ['entities'] });
    expect(alone.after.entities).toEqual(live.entities);
    const everything = await rebuildProjections(t.app.deps.sql, org, t.app.deps.projections);
    expect(everything.after).toEqual(live);
  });

  it('folds concurrent transactions on one entity without losing an update, and does not queue different entities behind each other', { timeout: 60_000 }, async () => {
    const sql = t.app.deps.sql;
    const inTransaction = (type: string, payload: Record<string, unknown>, hold?: Promise<void>) =>
      withTransaction(sql, undefined, async (tx) => {
        await emit(t.app.deps.bus.emit, { ctx: { tenant: org, actor: { type: 'human', id: 'ops@entities.test' }, source: 'api', tx }, input: { type, payload } });
        await hold;
      });
    // The first test uninstalled the package; install it again.
    await installedPackage(t, org, STRIPE_REVENUE_INSTALL);
    await signal('stripe.customer.created', { id: 'cus_busy', email: 'busy@x.test' });

    // Thirty transactions at once on a customer: every one is folded.
    await Promise.all(Array.from({ length: 30 }, (_, i) => inTransaction('stripe.customer.updated', { id: 'cus_busy', email: `busy${i}@x.test` })));
    expect((await get('/entities/stripe.customer/cus_busy')).body).toMatchObject({ version: 31 });
    // Two transactions creating one new customer both count.
    await Promise.all([0, 1].map((i) => inTransaction('stripe.customer.updated', { id: 'cus_new', name: `n${i}` })));
    expect((await get('/entities/stripe.customer/cus_new')).body).toMatchObject({ version: 2 });

    // An open transaction on one customer does not hold back another's.
    let release!: () => void;
    const held = inTransaction('stripe.customer.updated', { id: 'cus_busy', email: 'held@x.test' }, new Promise<void>((resolve) => (release = resolve)));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const other = await Promise.race([
      inTransaction('stripe.customer.created', { id: 'cus_free', email: 'free@x.test' }).then(() => 'committed'),
      new Promise((resolve) => setTimeout(() => resolve('blocked'), 10_000)),
    ]);
    release();
    await held;
    expect(other).toBe('committed');
    expect((await get('/entities/stripe.customer/cus_busy')).body).toMatchObject({ version: 32, fields: { email: 'held@x.test' } });
  });

  it('answers 404 for an entity that does not exist and 422 for a malformed type', async () => {
    expect((await get('/entities/stripe.customer/cus_nobody')).body).toMatchObject({ code: 'not_found' });
    expect((await get('/entities/Not%20A%20Type/x')).status).toBe(422);
  });
});
