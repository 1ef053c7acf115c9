/**
 * Headers every answer carries, on every route of the route table and the
 * operational routes: `X-Content-Type-Options: nosniff` everywhere, and
 * `Cache-Control: no-store` on every /v1 answer — successes (key creation's
 * secret among them), problems and event streams alike.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/tenancy/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { callRoute, fillPath, V1_ROUTES } from '../support/routes.ts';

let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('headers');
});
afterAll(() => t.close());

function expectApiHeaders(headers: Headers, context: string) {
  expect(headers.get('x-content-type-options'), context).toBe('nosniff');
  expect(headers.get('cache-control'), context).toBe('no-store');
}

describe('headers', () => {
  it('on every /v1 route, with and without a key', async () => {
    for (const route of V1_ROUTES) {
      const path = fillPath(route.path, { org: org.slug, id: 'sig_00000000000000000000000000' });
      const anonymous = await callRoute(t.app, route.method, path, route.body ? { body: route.body('anon') } : {});
      expectApiHeaders(anonymous.headers, `${route.method} ${route.path} without a key → ${anonymous.status}`);
      const answered = await callRoute(t.app, route.method, path, {
        key: t.platformKey,
        ...(route.body ? { body: route.body(`h${V1_ROUTES.indexOf(route)}`) } : {}),
      });
      expectApiHeaders(answered.headers, `${route.method} ${route.path} → ${answered.status}`);
    }
  });

  it('on key creation, whose answer holds the secret', async () => {
    const created = await t.request('POST', `/v1/orgs/${org.slug}/api-keys`, {
      key: t.platformKey,
      body: { name: 'ci', role: 'viewer', actor: { type: 'agent', id: 'ci' } },
    });
    expect(created.status).toBe(201);
    expectApiHeaders(created.headers, 'POST api-keys');
  });

  it('nosniff on the operational routes and unknown paths', async () => {
    for (const path of ['/healthz', '/readyz', '/openapi.json', '/docs', '/nowhere', '/v1/nowhere']) {
      const response = await t.app.http.request(path);
      await response.arrayBuffer();
      expect(response.headers.get('x-content-type-options'), path).toBe('nosniff');
    }
  });
});
