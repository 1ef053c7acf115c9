import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/harness.ts';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('operational routes', () => {
  it('answers /healthz and /readyz with the database reachable and migrations current', async () => {
    expect((await t.request('GET', '/healthz')).status).toBe(200);
    const ready = await t.request('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', database: 'ok', migrations: 'current' });
  });

  it('is not ready when the public migrations are behind', async () => {
    await t.app.deps.sql`alter table drizzle.__drizzle_migrations rename to __drizzle_migrations_away`;
    try {
      const ready = await t.request('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.status).toBe('not_ready');
    } finally {
      await t.app.deps.sql`alter table drizzle.__drizzle_migrations_away rename to __drizzle_migrations`;
    }
  });

  it('documents every registered /v1 operation in /openapi.json, generated from the zod schemas', async () => {
    const response = await t.request('GET', '/openapi.json');
    expect(response.status).toBe(200);
    const documented = new Set<string>();
    for (const [path, operations] of Object.entries(response.body.paths as Record<string, object>)) {
      for (const method of Object.keys(operations)) documented.add(`${method.toUpperCase()} ${path}`);
    }
    const registered = t.app.http.routes
      .filter((route) => route.path.startsWith('/v1/') && route.method !== 'ALL')
      .map((route) => `${route.method} ${route.path.replace(/:([a-z_]+)/g, '{$1}')}`);
    expect(registered.length).toBeGreaterThan(5);
    for (const operation of registered) expect(documented).toContain(operation);
    const emitBody = response.body.paths['/v1/orgs/{org}/signals'].post.requestBody.content['application/json'].schema;
    expect(emitBody.required).toEqual(expect.arrayContaining(['type', 'payload']));
  });

  it('serves the interactive reference at /docs from its own origin, under a CSP without inline scripts', async () => {
    const response = await t.request('GET', '/docs');
    expect(response.status).toBe(200);
    const csp = response.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/script-src[^;]*unsafe-inline/);
    // Every script, style and icon the page loads is a path on this server, and each is served.
    const loads = [...response.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1]!);
    expect(loads.length).toBeGreaterThanOrEqual(3);
    expect(response.text).not.toMatch(/<script>/);
    for (const load of loads) {
      expect(load, load).toMatch(/^\/docs\/assets\//);
      const asset = await t.request('GET', load);
      expect(asset.status, load).toBe(200);
    }
    const initializer = await t.request('GET', '/docs/assets/reference.js');
    expect(initializer.text).toContain("'/openapi.json'");
    const bundle = await t.request('GET', '/docs/assets/swagger-ui-bundle.js');
    expect(bundle.headers.get('content-type')).toContain('javascript');
    expect(bundle.text.length).toBeGreaterThan(100_000);
  });

  it('serves nothing else from the reference package', async () => {
    for (const name of ['package.json', 'index.html', '..%2F..%2Fpackage.json', 'swagger-ui-bundle.js.map']) {
      const response = await t.request('GET', `/docs/assets/${name}`);
      expect(response.status, name).toBe(404);
    }
  });

  it('answers an unknown route with a 404 problem and a request id', async () => {
    const response = await t.request('GET', '/v1/nothing-here');
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
    expect(response.body.code).toBe('not_found');
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
  });

  it('echoes a well-formed x-request-id and replaces a malformed one', async () => {
    const kept = await t.request('GET', '/healthz', { headers: { 'x-request-id': 'trace-abc.123' } });
    expect(kept.headers.get('x-request-id')).toBe('trace-abc.123');
    const replaced = await t.request('GET', '/healthz', { headers: { 'x-request-id': 'bad id\twith spaces' } });
    expect(replaced.headers.get('x-request-id')).toMatch(/^req_/);
  });
});
