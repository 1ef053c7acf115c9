/**
 * An emit inside a caller's transaction reads a cold payload-schema cache
 * through that transaction. Read through the pool instead, a handful of
 * concurrent audited writes (each holding its connection and the org's lock)
 * took every pooled connection and then waited for one more: a deadlock.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

let t: TestApp;
let org: Tenant;
let admin: string;

beforeAll(async () => {
  t = await createTestApp({ env: { SIGNALBUS_DB_POOL_SIZE: '2' } });
  org = await t.createOrg('pool_cold');
  admin = await t.createKey(org, 'admin');
});
afterAll(() => t?.close());

it('concurrent audited writes on a cold cache finish with a pool of two', async () => {
  const writes = Array.from({ length: 6 }, (_, index) =>
    t.request('PUT', `/v1/orgs/${org.slug}/secrets/token_${index}`, { key: admin, body: { value: `value-${index}` } }),
  );
  const timeout = new Promise<'stalled'>((resolve) => setTimeout(() => resolve('stalled'), 20_000).unref());
  const outcome = await Promise.race([Promise.all(writes), timeout]);
  expect(outcome).not.toBe('stalled');
  expect((outcome as Array<{ status: number }>).map((answer) => answer.status)).toEqual(Array(6).fill(200));
});
