import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { readSecret } from '../../src/secrets/vault.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

const canary = `sk_test_canary_${Math.random().toString(36).slice(2)}_z9Q1`;
let t: TestApp;
let org: Tenant;
let admin: string;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('secrets_http');
  admin = await t.createKey(org, 'admin', 'ops@secrets.test');
});
afterAll(() => t.close());

const auditSignals = () => t.app.deps.sql<{ type: string; subject: string; actor: { id: string }; payload: Record<string, unknown> }[]>`
  select type, subject, actor, payload from org_secrets_http.signals where type like 'secret.%' order by tx_id, seq`;

describe('the secrets API', () => {
  it('stores a value, answers with a fingerprint and last four only, and audits the write without the value', async () => {
    const put = await t.request('PUT', '/v1/orgs/secrets_http/secrets/stripe_api_key', { key: admin, body: { value: canary } });
    expect(put.status).toBe(200);
    expect(put.body.secret).toEqual({ name: 'stripe_api_key', fingerprint: expect.stringMatching(/^hmac-sha256:/), last4: 'z9Q1', updated_at: expect.any(String) });
    expect(put.text).not.toContain(canary);
    expect(await readSecret(t.app.deps.vault, { tenant: org, name: 'stripe_api_key' })).toBe(canary);

    const listed = await t.request('GET', '/v1/orgs/secrets_http/secrets', { key: admin });
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual({ data: [put.body.secret], next_cursor: null });

    const audit = await auditSignals();
    expect(audit).toEqual([
      {
        type: 'secret.updated',
        subject: 'secret:org/stripe_api_key',
        actor: expect.objectContaining({ id: 'ops@secrets.test' }),
        payload: { name: 'stripe_api_key', owner: 'org', fingerprint: put.body.secret.fingerprint, last4: 'z9Q1' },
      },
    ]);
    expect(JSON.stringify(audit)).not.toContain(canary);
  });

  it('replaces a value under the same name with a new fingerprint', async () => {
    const first = await t.request('PUT', '/v1/orgs/secrets_http/secrets/openai_api_key', { key: admin, body: { value: 'sk-first-value-0001' } });
    const second = await t.request('PUT', '/v1/orgs/secrets_http/secrets/openai_api_key', { key: admin, body: { value: 'sk-second-value-0002' } });
    expect(second.status).toBe(200);
    expect(second.body.secret.fingerprint).not.toBe(first.body.secret.fingerprint);
    expect(second.body.secret.last4).toBe('0002');
    expect(await readSecret(t.app.deps.vault, { tenant: org, name: 'openai_api_key' })).toBe('sk-second-value-0002');
  });

  it('deletes a secret once; a second delete is 404 and the value is gone', async () => {
    await t.request('PUT', '/v1/orgs/secrets_http/secrets/gone_soon', { key: admin, body: { value: 'short' } });
    const deleted = await t.request('DELETE', '/v1/orgs/secrets_http/secrets/gone_soon', { key: admin });
    expect(deleted.status).toBe(200);
    expect(deleted.body.secret).toMatchObject({ name: 'gone_soon', deleted: true, last4: '' });
    expect(await readSecret(t.app.deps.vault, { tenant: org, name: 'gone_soon' })).toBeUndefined();
    const again = await t.request('DELETE', '/v1/orgs/secrets_http/secrets/gone_soon', { key: admin });
    expect(again.status).toBe(404);
    expect(again.body.code).toBe('not_found');
    expect((await auditSignals()).filter((signal) => signal.type === 'secret.deleted').map((signal) => signal.subject)).toEqual(['secret:org/gone_soon']);
  });

  it('refuses a bad name or value with 422 and writes nothing', async () => {
    const before = await auditSignals();
    for (const [name, body] of [
      ['Bad-Name', { value: 'x' }],
      ['ok_name', { value: '' }],
      ['ok_name', { value: 'has\u0000nul' }],
      ['ok_name', { value: 'x', extra: true }],
      ['ok_name', { value: 42 }],
    ] as const) {
      const response = await t.request('PUT', `/v1/orgs/secrets_http/secrets/${encodeURIComponent(name)}`, { key: admin, body });
      expect(response.status, `${name} ${JSON.stringify(body)}`).toBe(422);
      expect(response.body.code).toBe('validation_failed');
    }
    expect(await auditSignals()).toEqual(before);
  });

  it('is for admins: an operator is refused', async () => {
    const operator = await t.createKey(org, 'operator');
    const put = await t.request('PUT', '/v1/orgs/secrets_http/secrets/sneaky', { key: operator, body: { value: 'nope-nope' } });
    expect(put.status).toBe(403);
    expect((await t.request('GET', '/v1/orgs/secrets_http/secrets', { key: operator })).status).toBe(403);
  });
});
