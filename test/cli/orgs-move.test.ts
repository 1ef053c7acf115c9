/**
 * `signalbus orgs export <slug> > org.ndjson` and `signalbus orgs import
 * <file> --as <slug>` as processes, from one database to another: the
 * export on stdout is the whole file (logs go to stderr), the import names
 * the secrets to enter again, and a damaged file exits 1 with nothing written.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { checksumProjections } from '../../src/projections/rebuild.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import { emit } from '../../src/signals/emit.ts';
import { cliScript, exitWithin, spawnCollected, stopChildren } from '../support/cli-process.ts';
import { heldDirective, setPolicy } from '../support/fanout.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let CLI: string;

let source: TestApp;
let target: TestApp;
let org: Tenant;
let dir: string;

async function cli(databaseUrl: string, args: string[]) {
  const spawned = spawnCollected(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'info' },
  });
  const { code } = await exitWithin(spawned, 60_000);
  return { code, stdout: spawned.stdout, stderr: spawned.stderr };
}

beforeAll(async () => {
  CLI = await cliScript();
  dir = await mkdtemp(path.join(tmpdir(), 'signalbus-cli-move-'));
  source = await createTestApp();
  target = await createTestApp();
  org = await source.createOrg('cli_moving', 'CLI Moving');
  await setPolicy(source, org);
  await heldDirective(source, org, { params: { n: 1 } });
  await putSecret(source.app.deps.vault, { tenant: org, name: 'openai_api_key', input: { value: 'sk-never-exported' } });
  for (let i = 0; i < 5; i++) {
    await emit(source.app.deps.bus.emit, {
      ctx: { tenant: org, actor: { type: 'human', id: 'ana' }, source: 'api' },
      input: { type: 'shop.order.placed', payload: { i } },
    });
  }
  await source.settle();
}, 60_000);

afterAll(async () => {
  await stopChildren();
  await source?.close();
  await target?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('signalbus orgs export | import', () => {
  it('moves the org to another database with equal projections and names the secrets to enter again', async () => {
    const exported = await cli(source.database.url, ['orgs', 'export', 'cli_moving']);
    expect(exported.code).toBe(0);
    expect(exported.stderr).toMatch(/exported \d+ signals of cli_moving/);
    const lines = exported.stdout.trimEnd().split('\n');
    expect(JSON.parse(lines[0]!).format).toBe('signalbus.org-export');
    expect(JSON.parse(lines.at(-1)!).count).toBe(lines.length - 2);
    const file = path.join(dir, 'org.ndjson');
    await writeFile(file, exported.stdout);

    const imported = await cli(target.database.url, ['orgs', 'import', file, '--as', 'cli_moved', '--json']);
    expect(imported.code).toBe(0);
    const report = JSON.parse(imported.stdout);
    expect(report.org.slug).toBe('cli_moved');
    expect(report.secrets_to_reenter).toEqual([{ owner: 'org', name: 'openai_api_key' }]);
    const moved = (await target.app.deps.tenants.find('cli_moved'))!;
    const projections = source.app.deps.projections.projections;
    expect(await checksumProjections(target.app.deps.sql, moved, projections)).toEqual(
      await checksumProjections(source.app.deps.sql, org, projections),
    );

    const human = await cli(target.database.url, ['orgs', 'import', file, '--as', 'cli_moved_again']);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('secrets to enter again (values are never exported):\n  openai_api_key');
  });

  it('exits 1 on a damaged file and writes nothing', async () => {
    const exported = await cli(source.database.url, ['orgs', 'export', 'cli_moving']);
    const file = path.join(dir, 'damaged.ndjson');
    await writeFile(file, exported.stdout.replace('"i": 3', '"i": 4'));
    const result = await cli(target.database.url, ['orgs', 'import', file, '--as', 'cli_damaged']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/import refused, nothing written: .*sha256 does not match/);
    expect(await target.app.deps.tenants.find('cli_damaged')).toBeUndefined();
  });
});
