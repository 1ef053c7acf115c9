/**
 * The policy operations over HTTP: reading the current document, replacing
 * it (one version up, recorded as the admin's `policy.updated` signal), and
 * refusing an invalid one — a bad CEL condition names `rules.N.when` and its
 * position — without writing. Per route a happy, an error and a security case.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createApiKey } from '../../src/auth/api-keys.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp, type TestResponse } from '../support/harness.ts';

let t: TestApp;
let org: Tenant;
let other: Tenant;
const keys = {} as Record<'viewer' | 'operator' | 'admin' | 'otherAdmin' | 'support', string>;

const call = (method: string, rest: string, key: string, body?: unknown, tenant = org) =>
  t.request(method, `/v1/orgs/${tenant.slug}${rest}`, { key, ...(body !== undefined ? { body } : {}) });

function expectProblem(response: TestResponse, status: number, code: string) {
  expect(response.status, response.text).toBe(status);
  expect(response.headers.get('content-type')).toContain('application/problem+json');
  expect(response.body.code).toBe(code);
}

const ALLOW_NOOP = { id: 'allow-noop', match: 'noop.*', effect: 'allow' };

async function policySignals(tenant: Tenant): Promise<number> {
  const [row] = await t.app.deps.sql<{ n: number }[]>`
    select count(*)::int as n from ${t.app.deps.sql(`${tenant.schema}.signals`)} where type = 'policy.updated'`;
  return row!.n;
}

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('pol_a');
  other = await t.createOrg('pol_b');
  keys.viewer = await t.createKey(org, 'viewer');
  keys.operator = await t.createKey(org, 'operator');
  keys.admin = await t.createKey(org, 'admin');
  keys.otherAdmin = await t.createKey(other, 'admin');
  keys.support = (
    await createApiKey(t.app.deps, {
      tenant: null,
      input: { name: 'support', role: 'support', actor: { type: 'human', id: 'support@signalbus.test' } },
      by: PLATFORM_ACTOR,
    })
  ).secret;
});
afterAll(() => t.close());

describe('GET /v1/orgs/{org}/policies', () => {
  it('answers version 0 with no rules before the first update: everything is denied', async () => {
    const fresh = await call('GET', '/policies', keys.otherAdmin, undefined, other);
    expect(fresh.status).toBe(200);
    expect(fresh.body).toEqual({ version: 0, rules: [], guards: { rate_limits: [], budgets: [], lists: [] }, updated_at: null });
  });

  it('is readable by every org role and by support', async () => {
    for (const key of [keys.viewer, keys.operator, keys.admin, keys.support, t.platformKey]) {
      const response = await call('GET', '/policies', key);
      expect(response.status).toBe(200);
      expect(typeof response.body.version).toBe('number');
    }
  });

  it("answers another org's key 404", async () => {
    expectProblem(await call('GET', '/policies', keys.otherAdmin), 404, 'not_found');
  });
});

describe('PUT /v1/orgs/{org}/policies', () => {
  it('replaces the policy one version up, echoes it, and GET returns the same', async () => {
    const before = (await call('GET', '/policies', keys.viewer)).body.version;
    const document = {
      rules: [
        { id: 'big-refunds', match: 'stripe.refund.*', when: 'params.amount > 10000', effect: 'require_approval', reason: 'large refund' },
        ALLOW_NOOP,
      ],
      guards: { rate_limits: [{ match: 'gmail.*', limit: 100, window_seconds: 3600 }] },
    };
    const first = await call('PUT', '/policies', keys.admin, document);
    expect(first.status, first.text).toBe(200);
    expect(first.body).toMatchObject({
      version: before + 1,
      rules: document.rules,
      guards: { rate_limits: document.guards.rate_limits, budgets: [], lists: [] },
    });
    expect(first.body.updated_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect((await call('GET', '/policies', keys.viewer)).body).toEqual(first.body);

    const second = await call('PUT', '/policies', t.platformKey, { rules: [ALLOW_NOOP] });
    expect(second.status).toBe(200);
    expect(second.body).toMatchObject({ version: before + 2, rules: [ALLOW_NOOP], guards: { rate_limits: [], budgets: [], lists: [] } });

    const updates = await waitFor(async () => {
      const page = await call('GET', '/signals?type=policy.updated&limit=1000', keys.viewer);
      return page.body.data.length >= 2 && page.body.data;
    }, 10_000, 'the policy updates below the horizon');
    expect(updates.at(-2)).toMatchObject({ actor: { type: 'human', id: 'admin@pol_a.test' }, source: 'api', payload: { version: before + 1 } });
    expect(updates.at(-1)).toMatchObject({ actor: { type: 'human', id: 'root@signalbus.test' }, payload: { version: before + 2 } });
  });

  it('takes effect for the next decision', async () => {
    await call('PUT', '/policies', keys.admin, { rules: [ALLOW_NOOP] });
    const allowed = await call('POST', '/directives/simulate', keys.operator, { kind: 'noop.record', params: {} });
    expect(allowed.body).toMatchObject({ decision: 'allow', rule: 'allow-noop' });
    await call('PUT', '/policies', keys.admin, { rules: [ALLOW_NOOP, { id: 'freeze', match: '*', effect: 'deny', reason: 'frozen' }] });
    const denied = await call('POST', '/directives/simulate', keys.operator, { kind: 'noop.record', params: {} });
    expect(denied.body).toMatchObject({ decision: 'deny', rule: 'freeze', reason: 'frozen' });
  });

  it('answers an invalid CEL condition 422 at rules.N.when with its position, and writes nothing', async () => {
    const before = await call('GET', '/policies', keys.viewer);
    const signals = await policySignals(org);
    const response = await call('PUT', '/policies', keys.admin, {
      rules: [ALLOW_NOOP, { id: 'broken', match: 'noop.*', when: 'params.amount >', effect: 'deny' }, { id: 'typo', match: '*', when: 'parms.x == 1', effect: 'deny' }],
    });
    expectProblem(response, 422, 'validation_failed');
    expect(response.body.errors).toEqual([
      { path: 'rules.1.when', message: expect.stringMatching(/at line 1, column \d+ \(offset \d+\)$/) },
      { path: 'rules.2.when', message: 'Unknown variable: parms at line 1, column 1 (offset 0)' },
    ]);
    expect(await call('GET', '/policies', keys.viewer)).toMatchObject({ body: before.body });
    expect(await policySignals(org)).toBe(signals);
  });

  it('answers a malformed document 422 naming each bad field', async () => {
    const signals = await policySignals(org);
    const effect = await call('PUT', '/policies', keys.admin, { rules: [{ id: 'r', match: 'noop.*', effect: 'maybe' }] });
    expectProblem(effect, 422, 'validation_failed');
    expect(effect.body.errors.map((error: { path: string }) => error.path)).toEqual(['rules.0.effect']);
    const duplicate = await call('PUT', '/policies', keys.admin, { rules: [ALLOW_NOOP, ALLOW_NOOP] });
    expectProblem(duplicate, 422, 'validation_failed');
    expect(duplicate.body.errors.map((error: { path: string }) => error.path)).toEqual(['rules.1.id']);
    const unknownField = await call('PUT', '/policies', keys.admin, { rules: [], extra: true });
    expectProblem(unknownField, 422, 'validation_failed');
    expectProblem(await call('PUT', '/policies', keys.admin, { guards: {} }), 422, 'validation_failed');
    expect(await policySignals(org)).toBe(signals);
  });

  it('refuses operators, viewers and support (403) and other orgs (404), writing nothing', async () => {
    const signals = await policySignals(org);
    const body = { rules: [{ id: 'everything', match: '*', effect: 'allow' }] };
    for (const key of [keys.operator, keys.viewer, keys.support]) expectProblem(await call('PUT', '/policies', key, body), 403, 'forbidden');
    expectProblem(await call('PUT', '/policies', keys.otherAdmin, body), 404, 'not_found');
    expect(await policySignals(org)).toBe(signals);
  });
});
