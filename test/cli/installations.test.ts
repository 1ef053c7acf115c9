/**
 * `signalbus packages list`, `install` and `installations list` as
 * processes against a test database: JSON on stdout, secrets never printed,
 * an invalid config refused with its JSON pointers and nothing written.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { exitWithin, spawnCollected, stopChildren } from '../support/cli-process.ts';
import { createTestApp, TEST_MASTER_KEYS, type TestApp } from '../support/harness.ts';
import { RELAY_CONFIG, RELAY_SECRETS } from '../support/installations.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'bin/signalbus.js');

let t: TestApp;
let org: Tenant;
let dir: string;

async function cli(args: string[]) {
  const spawned = spawnCollected(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: t.database.url, SIGNALBUS_ENCRYPTION_KEYS: TEST_MASTER_KEYS, LOG_LEVEL: 'info' },
  });
  const { code } = await exitWithin(spawned, 60_000);
  return { code, stdout: spawned.stdout, stderr: spawned.stderr };
}

const rows = async () => {
  const [row] = await t.app.deps.sql`select count(*)::int as n from ${t.app.deps.sql(`${org.schema}.installations`)}`;
  return row!.n as number;
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'signalbus-cli-install-'));
  t = await createTestApp();
  org = await t.createOrg('cli_installs');
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(RELAY_CONFIG));
  await writeFile(path.join(dir, 'bad.json'), JSON.stringify({ ...RELAY_CONFIG, endpoint_url: 7 }));
  await writeFile(path.join(dir, 'secrets.json'), JSON.stringify(RELAY_SECRETS));
});
afterAll(async () => {
  await stopChildren();
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the installation commands', () => {
  it('packages list prints the registry', async () => {
    const { code, stdout } = await cli(['packages', 'list', '--json']);
    expect(code).toBe(0);
    const names = JSON.parse(stdout).data.map((entry: { name: string }) => entry.name);
    expect(names).toEqual(expect.arrayContaining(['stripe-revenue', 'webhook-relay']));
  });

  it('install refuses a config that does not fit, naming its JSON pointer, and writes nothing', async () => {
    const { code, stdout } = await cli(['install', 'webhook-relay@1.0.1', '--org', org.slug, '--config', path.join(dir, 'bad.json'), '--json']);
    expect(code).toBe(1);
    const { error } = JSON.parse(stdout);
    expect(error.code).toBe('validation_failed');
    expect(error.errors.map((item: { path: string }) => item.path)).toEqual(['/config/endpoint_url']);
    expect(await rows()).toBe(0);
    expect((await cli(['install', 'webhook-relay', '--org', org.slug])).code).toBe(2);
  });

  it('install requests an installation without printing its secrets, and installations list shows it', async () => {
    const installed = await cli(['install', 'webhook-relay@1.0.1', '--org', org.slug, '--config', path.join(dir, 'config.json'), '--secrets', path.join(dir, 'secrets.json'), '--json']);
    expect(installed.code, installed.stderr).toBe(0);
    const { installation, created } = JSON.parse(installed.stdout);
    expect(created).toBe(true);
    expect(installation).toMatchObject({ package: 'webhook-relay', version: '1.0.1', status: 'installing', secrets: ['inbound_hmac_secret', 'webhook_signing_secret'] });
    for (const value of Object.values(RELAY_SECRETS)) expect(installed.stdout + installed.stderr).not.toContain(value);

    const listed = await cli(['installations', 'list', '--org', org.slug, '--json']);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).data.map((row: { id: string }) => row.id)).toEqual([installation.id]);
    const human = await cli(['installations', 'list', '--org', org.slug]);
    expect(human.stdout).toContain(`${installation.id}\twebhook-relay@1.0.1\tinstalling`);
  });
});
