/**
 * `signalbus packages list`, `install`, `upgrade` and `installations list` as
 * processes against a test database: JSON on stdout, secrets never printed,
 * an invalid config refused with its JSON pointers and nothing written.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { getInstallation } from '../../src/packages/installation-read.ts';
import { installPackage } from '../../src/packages/installations.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { cliScript, exitWithin, spawnCollected, stopChildren } from '../support/cli-process.ts';
import { createTestApp, TEST_MASTER_KEYS, type TestApp } from '../support/harness.ts';
import { registryWithRelayVersions, RELAY_CONFIG, RELAY_SECRETS, RELAY_V2_SECRETS, runPendingJob } from '../support/installations.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let CLI: string;

let t: TestApp;
let org: Tenant;
let dir: string;
let registry: Awaited<ReturnType<typeof registryWithRelayVersions>>;

async function cli(args: string[]) {
  const spawned = spawnCollected(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, SIGNALBUS_REGISTRY_DIR: registry.dir, DATABASE_URL: t.database.url, SIGNALBUS_ENCRYPTION_KEYS: TEST_MASTER_KEYS, LOG_LEVEL: 'info' },
  });
  const { code } = await exitWithin(spawned, 60_000);
  return { code, stdout: spawned.stdout, stderr: spawned.stderr };
}

const V2_CONFIG = { endpoint_url: RELAY_CONFIG.endpoint_url, forward_types: [], timeout_ms: 500 };

const rows = async () => {
  const [row] = await t.app.deps.sql`select count(*)::int as n from ${t.app.deps.sql(`${org.schema}.installations`)}`;
  return row!.n as number;
};

beforeAll(async () => {
  CLI = await cliScript();
  dir = await mkdtemp(path.join(tmpdir(), 'signalbus-cli-install-'));
  registry = await registryWithRelayVersions();
  t = await createTestApp({ env: { SIGNALBUS_REGISTRY_DIR: registry.dir } });
  org = await t.createOrg('cli_installs');
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(RELAY_CONFIG));
  await writeFile(path.join(dir, 'bad.json'), JSON.stringify({ ...RELAY_CONFIG, endpoint_url: 7 }));
  await writeFile(path.join(dir, 'secrets.json'), JSON.stringify(RELAY_SECRETS));
  await writeFile(path.join(dir, 'v2.json'), JSON.stringify(V2_CONFIG));
  await writeFile(path.join(dir, 'v2-secrets.json'), JSON.stringify(RELAY_V2_SECRETS));
});
afterAll(async () => {
  await stopChildren();
  await t?.close();
  await rm(dir, { recursive: true, force: true });
  await registry?.cleanup();
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

  it('upgrade takes the config for the new version from --config; without it, reports what must change', async () => {
    const other = await t.createOrg('cli_installs_up');
    const ctx = { tenant: other, actor: PLATFORM_ACTOR, source: 'cli' as const };
    const input = { package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: RELAY_SECRETS };
    const id = (await installPackage(t.app.deps.bus.installations, { ctx, input })).installation.id;
    await runPendingJob(t, other, id);
    const refused = await cli(['upgrade', id, '2.0.0', '--org', other.slug, '--json']);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout).error.errors).toEqual(expect.arrayContaining([expect.objectContaining({ path: '/config/timeout_ms' })]));
    const upgraded = await cli(['upgrade', id, '2.0.0', '--org', other.slug, '--config', path.join(dir, 'v2.json'), '--secrets', path.join(dir, 'v2-secrets.json'), '--json']);
    expect(upgraded.code, upgraded.stderr).toBe(0);
    expect(JSON.parse(upgraded.stdout).installation).toMatchObject({ id, version: '1.0.1', pending: { operation: 'upgrade', version: '2.0.0', config: V2_CONFIG } });
    expect(upgraded.stdout + upgraded.stderr).not.toContain(RELAY_V2_SECRETS.relay_api_token);
    await runPendingJob(t, other, id);
    expect(await getInstallation(t.app.deps.bus.installations, { ctx, input: { id } })).toMatchObject({ version: '2.0.0', config: V2_CONFIG, status: 'installed' });
  }, 180_000);
});
