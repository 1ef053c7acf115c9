/**
 * The layer rules of ARCHITECTURE.md (.dependency-cruiser.cjs): domain code
 * never imports http, cli, console or worker; policy is pure; executors know
 * no tables; routes never import the database. A violation fails the suite.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');

it('src follows the layer rules', async () => {
  const run = promisify(execFile)(process.execPath, [path.join(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs'), 'src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'], {
    cwd: root,
    maxBuffer: 16 * 1024 * 1024,
  });
  const outcome = await run.then(
    ({ stdout }) => ({ ok: true, report: stdout }),
    (error: { stdout?: string; stderr?: string }) => ({ ok: false, report: `${error.stdout ?? ''}${error.stderr ?? ''}` }),
  );
  expect(outcome.report, 'dependency violations').not.toMatch(/error /);
  expect(outcome.ok, outcome.report).toBe(true);
}, 120_000);
