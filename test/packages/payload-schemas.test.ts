/**
 * Payload schemas at emit: while a package is installed, a signal of a type
 * it declares must match the declared schema — 422 `validation_failed` with
 * the schema's errors and nothing written (in a batch: that item invalid,
 * the others created). Types nobody declares, other orgs, and the same type
 * after an uninstall are accepted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { changeInstallation, installedPackage, STRIPE_SECRETS } from '../support/installations.ts';

let t: TestApp;
let org: Tenant;
let other: Tenant;
let key: string;
let otherKey: string;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('schemas');
  other = await t.createOrg('schemas_other');
  key = await t.createKey(org, 'operator');
  otherKey = await t.createKey(other, 'operator');
});
afterAll(() => t?.close());

const INVALID = { type: 'stripe.refund.requested', payload: { payment_intent: 'ch_not_a_payment_intent', amount: 0, note: 'extra' } };
const VALID = { type: 'stripe.refund.requested', payload: { payment_intent: 'pi_123', amount: 500 } };

async function stored(tenant: Tenant, type: string): Promise<number> {
  const [row] = await t.app.deps.sql<{ n: number }[]>`select count(*)::int as n from ${t.app.deps.sql(`${tenant.schema}.signals`)} where type = ${type}`;
  return row!.n;
}

describe('payload schemas of installed packages', () => {
  it('refuses an invalid payload of a declared type with the schema errors and writes nothing; accepts it after uninstall', async () => {
    const installed = { id: await installedPackage(t, org, { package: 'stripe-revenue', config: { refund_approval_above: 1000 }, secrets: STRIPE_SECRETS }) };

    const refused = await t.request('POST', `/v1/orgs/${org.slug}/signals`, { key, body: INVALID });
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe('validation_failed');
    expect(refused.body.detail).toContain('stripe.refund.requested');
    const paths = refused.body.errors.map((error: { path: string }) => error.path).sort();
    expect(paths).toEqual(['payload', 'payload.amount', 'payload.payment_intent']);
    expect(await stored(org, 'stripe.refund.requested')).toBe(0);

    expect((await t.request('POST', `/v1/orgs/${org.slug}/signals`, { key, body: VALID })).status).toBe(201);
    // Undeclared types and other orgs are not the package's business.
    expect((await t.request('POST', `/v1/orgs/${org.slug}/signals`, { key, body: { type: 'acme.refund.requested', payload: INVALID.payload } })).status).toBe(201);
    expect((await t.request('POST', `/v1/orgs/${other.slug}/signals`, { key: otherKey, body: INVALID })).status).toBe(201);

    const batch = await t.request('POST', `/v1/orgs/${org.slug}/signals/batch`, { key, body: { signals: [INVALID, { ...VALID, payload: { payment_intent: 'pi_456' } }] } });
    expect(batch.status).toBe(200);
    expect(batch.body.results.map((result: { status: string }) => result.status)).toEqual(['invalid', 'created']);
    expect(batch.body.results[0].error).toMatchObject({ code: 'validation_failed', errors: expect.arrayContaining([{ path: 'payload.amount', message: expect.any(String) }]) });
    expect(await stored(org, 'stripe.refund.requested')).toBe(2);

    await changeInstallation(t, org, installed.id, 'uninstall');
    const accepted = await t.request('POST', `/v1/orgs/${org.slug}/signals`, { key, body: INVALID });
    expect(accepted.status).toBe(201);
    expect(await stored(org, 'stripe.refund.requested')).toBe(3);
  });

  it('checks from memory: after the first, an emit reads no installations', async () => {
    const tenant = await t.createOrg('schemas_cached');
    const operator = await t.createKey(tenant, 'operator');
    await installedPackage(t, tenant, { package: 'stripe-revenue', config: { refund_approval_above: 1000 }, secrets: STRIPE_SECRETS });
    expect((await t.request('POST', `/v1/orgs/${tenant.slug}/signals`, { key: operator, body: VALID })).status).toBe(201);
    // With the installations table locked, an emit that read it would wait.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const holder = t.app.deps.sql.begin(async (tx) => {
      await tx`lock table ${tx(`${tenant.schema}.installations`)} in access exclusive mode`;
      locked();
      await held;
    });
    try {
      await Promise.race([lockTaken, holder]);
      let timer: NodeJS.Timeout | undefined;
      const blocked = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('an emit waited on the installations table')), 10_000);
      });
      const emits = (async () => {
        for (let i = 0; i < 20; i++) {
          expect((await t.request('POST', `/v1/orgs/${tenant.slug}/signals`, { key: operator, body: { ...VALID, payload: { payment_intent: `pi_${i}` } } })).status).toBe(201);
        }
        expect((await t.request('POST', `/v1/orgs/${tenant.slug}/signals`, { key: operator, body: INVALID })).status).toBe(422);
      })();
      await Promise.race([emits, blocked]).finally(() => clearTimeout(timer));
    } finally {
      release();
      await holder;
    }
  });
});
