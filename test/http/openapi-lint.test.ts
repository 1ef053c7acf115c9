/**
 * The OpenAPI document as generators read it: Spectral's `spectral:oas`
 * ruleset (the repository's `.spectral.yaml`) over the served /openapi.json
 * reports nothing, not even a warning; every operation has a unique
 * operationId and documents 429 with Retry-After, since every one is
 * rate-limited.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/harness.ts';

const root = resolve(import.meta.dirname, '../..');
let t: TestApp;
let document: { paths: Record<string, Record<string, { operationId?: string; responses: Record<string, { headers?: object }> }>> };

beforeAll(async () => {
  t = await createTestApp();
  const response = await t.request('GET', '/openapi.json');
  expect(response.status).toBe(200);
  document = response.body;
});
afterAll(() => t.close());

describe('the OpenAPI document', () => {
  it('passes spectral lint with the spectral:oas ruleset: no error, no warning', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbus-openapi-'));
    try {
      const file = join(dir, 'openapi.json');
      await writeFile(file, JSON.stringify(document));
      const spectral = join(root, 'node_modules/@stoplight/spectral-cli/dist/index.js');
      // Exit status 1 means results at or above the fail severity; the JSON lists them.
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [spectral, 'lint', '--ruleset', join(root, '.spectral.yaml'), '--format', 'json', '--fail-severity', 'hint', '--quiet', file],
        { cwd: root, maxBuffer: 16 * 1024 * 1024 },
      ).catch((error: { stdout?: string; stderr?: string }) => {
        if (!error.stdout) throw error;
        return { stdout: error.stdout };
      });
      const results = (JSON.parse(stdout) as Array<{ code: string; message: string; path: string[] }>).map(
        ({ code, message, path }) => `${code} at ${path.join('.')}: ${message}`,
      );
      expect(results).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('gives every operation a unique operationId and documents 429 with Retry-After', () => {
    const ids: string[] = [];
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        expect(operation.operationId, `${method} ${path}`).toMatch(/^[a-z][A-Za-z]+$/);
        ids.push(operation.operationId!);
        expect(operation.responses['429']?.headers, `${method} ${path}`).toHaveProperty('Retry-After');
      }
    }
    expect(ids.length).toBeGreaterThan(5);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
