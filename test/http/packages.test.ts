/**
 * The registry routes over a copy of the shipped registry with one more
 * version published and then yanked: any key reads, unknown names and
 * versions are 404 problems, and a served manifest hashes to its pin.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinExecutors } from '../../src/executors/builtin.ts';
import { createExecutorRegistry } from '../../src/executors/registry.ts';
import { manifestDigest, REGISTRY_DIR } from '../../src/packages/registry-files.ts';
import { publishVersion, yankVersion } from '../../src/packages/registry.ts';
import type { Tenant } from '../../src/tenancy/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

let t: TestApp;
let dir: string;
let org: Tenant;
let viewerKey: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'signalbus-registry-'));
  await cp(REGISTRY_DIR, dir, { recursive: true });
  const source = await mkdtemp(path.join(tmpdir(), 'signalbus-src-'));
  const manifest = JSON.parse(await readFile(path.join(dir, 'webhook-relay', '1.0.1', 'manifest.json'), 'utf8'));
  await writeFile(path.join(source, 'manifest.json'), JSON.stringify({ ...manifest, version: '1.0.2' }));
  const context = { executors: createExecutorRegistry(builtinExecutors({ allowPrivateTargets: false })), now: () => new Date('2026-12-01T00:00:00Z') };
  await publishVersion(dir, source, context);
  await yankVersion(dir, { name: 'webhook-relay', version: '1.0.2', reason: 'forwards twice' }, context);
  await rm(source, { recursive: true, force: true });

  t = await createTestApp({ env: { SIGNALBUS_REGISTRY_DIR: dir } });
  org = await t.createOrg('pkg_reader');
  viewerKey = await t.createKey(org, 'viewer');
});
afterAll(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('GET /v1/packages', () => {
  it('lists every package for an org viewer and a platform key alike', async () => {
    for (const key of [viewerKey, t.platformKey]) {
      const response = await t.request('GET', '/v1/packages', { key });
      expect(response.status, response.text).toBe(200);
      expect(response.body).toEqual({
        data: [
          { name: 'stripe-revenue', description: expect.stringContaining('Stripe events become signals'), latest: '1.1.0', versions: ['1.0.0', '1.1.0'] },
          { name: 'webhook-relay', description: expect.stringContaining('Relays'), latest: '1.0.1', versions: ['1.0.0', '1.0.1', '1.0.2'] },
        ],
        next_cursor: null,
      });
    }
  });

  it('answers 401 without a key', async () => {
    const response = await t.request('GET', '/v1/packages');
    expect(response.status).toBe(401);
    expect(response.body.code).toBe('unauthorized');
  });
});

describe('GET /v1/packages/:name', () => {
  it('shows versions with the yanked ones marked; latest skips them', async () => {
    const response = await t.request('GET', '/v1/packages/webhook-relay', { key: viewerKey });
    expect(response.status, response.text).toBe(200);
    expect(response.body.package.latest).toBe('1.0.1');
    expect(response.body.package.versions).toEqual([
      {
        version: '1.0.0', sha256: expect.stringMatching(/^[0-9a-f]{64}$/), published_at: expect.any(String),
        yanked: true, yanked_at: expect.any(String), yank_reason: expect.stringContaining('every relay installation'),
      },
      { version: '1.0.1', sha256: expect.stringMatching(/^[0-9a-f]{64}$/), published_at: expect.any(String), yanked: false },
      { version: '1.0.2', sha256: expect.any(String), published_at: '2026-12-01T00:00:00.000Z', yanked: true, yanked_at: '2026-12-01T00:00:00.000Z', yank_reason: 'forwards twice' },
    ]);
  });

  it('answers an unknown package with a 404 problem', async () => {
    const response = await t.request('GET', '/v1/packages/no-such-package', { key: viewerKey });
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
    expect(response.body).toMatchObject({ code: 'not_found', detail: 'package no-such-package not found' });
  });
});

describe('GET /v1/packages/:name/:version', () => {
  it('serves the manifest as published: its canonical JSON hashes to the pinned sha256', async () => {
    const response = await t.request('GET', '/v1/packages/stripe-revenue/1.0.0', { key: viewerKey });
    expect(response.status, response.text).toBe(200);
    const onDisk = JSON.parse(await readFile(path.join(dir, 'stripe-revenue', '1.0.0', 'manifest.json'), 'utf8'));
    expect(response.body.manifest).toEqual(onDisk);
    expect(manifestDigest(response.body.manifest)).toBe(response.body.release.sha256);
    expect(response.body.release).toMatchObject({ version: '1.0.0', yanked: false });
  });

  it('keeps a yanked version readable', async () => {
    const response = await t.request('GET', '/v1/packages/webhook-relay/1.0.2', { key: viewerKey });
    expect(response.status).toBe(200);
    expect(response.body.release).toMatchObject({ version: '1.0.2', yanked: true });
    expect(response.body.manifest.version).toBe('1.0.2');
  });

  it('answers an unknown version, or one of an unknown package, with a 404 problem', async () => {
    for (const [route, detail] of [
      ['/v1/packages/webhook-relay/9.9.9', 'version 9.9.9 of webhook-relay not found'],
      ['/v1/packages/webhook-relay/not-semver', 'version not-semver of webhook-relay not found'],
      ['/v1/packages/ghost/1.0.0', 'package ghost not found'],
    ] as const) {
      const response = await t.request('GET', route, { key: viewerKey });
      expect(response.status, route).toBe(404);
      expect(response.body, route).toMatchObject({ code: 'not_found', detail });
    }
  });
});

it('documents the three operations in /openapi.json', async () => {
  const response = await t.request('GET', '/openapi.json');
  const operations = Object.values(response.body.paths as Record<string, Record<string, { operationId?: string }>>)
    .flatMap((methods) => Object.values(methods).map((operation) => operation.operationId))
    .filter((id) => id?.includes('Package'));
  expect(operations.sort()).toEqual(['getPackage', 'getPackageVersion', 'listPackages']);
});
