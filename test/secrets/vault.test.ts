import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/db/migrate.ts';
import { generateMasterKeys, parseMasterKeys } from '../../src/secrets/keys.ts';
import { VaultIntegrityError } from '../../src/secrets/envelope.ts';
import { deleteSecret, listSecrets, putSecret, readSecret, rotateEncryption, type VaultDeps } from '../../src/secrets/vault.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import postgres from 'postgres';
import { credentialsFor } from '../../src/directives/credentials.ts';
import { createTestApp, TEST_MASTER_KEYS, type TestApp } from '../support/harness.ts';

const canary = `sk_live_canary_${Math.random().toString(36).slice(2)}_end`;
let t: TestApp;
let acme: Tenant;
let other: Tenant;
let vault: VaultDeps;

beforeAll(async () => {
  t = await createTestApp();
  acme = await t.createOrg('vault_acme');
  other = await t.createOrg('vault_other');
  vault = t.app.deps.vault;
});
afterAll(() => t.close());

describe('the credentials vault', () => {
  it('stores a sealed value, lists only a fingerprint and last four, and gives the value back to readSecret alone', async () => {
    const view = await putSecret(vault, { tenant: acme, name: 'stripe_api_key', input: { value: canary } });
    expect(view).toMatchObject({ name: 'stripe_api_key', last4: '_end' });
    expect(view.fingerprint).toMatch(/^hmac-sha256:[0-9a-f]{16}$/);
    expect(JSON.stringify(view)).not.toContain(canary);
    expect(JSON.stringify(await listSecrets(t.app.deps.sql, acme))).not.toContain(canary);
    expect(await readSecret(vault, { tenant: acme, name: 'stripe_api_key' })).toBe(canary);
    // Another org has its own namespace: nothing of acme's is found there.
    expect(await readSecret(vault, { tenant: other, name: 'stripe_api_key' })).toBeUndefined();
    // The value is in no table as text and in no log line.
    const [dump] = await t.app.deps.sql<{ text: string }[]>`
      select string_agg(s::text, ' ') as text from (
        select to_jsonb(x)::text as s from org_vault_acme.secrets x
        union all select encode(ciphertext, 'escape') from org_vault_acme.secrets
        union all select to_jsonb(x)::text from org_vault_acme.signals x) all_rows`;
    expect(dump!.text).not.toContain(canary);
    expect(t.logs.join('\n')).not.toContain(canary);
  });

  it('replaces a value in place, and deletes it (404 for a missing one)', async () => {
    const first = await putSecret(vault, { tenant: acme, name: 'openai_api_key', input: { value: 'sk-first-value-000001' } });
    const second = await putSecret(vault, { tenant: acme, name: 'openai_api_key', input: { value: 'sk-second-value-000002' } });
    expect(second.fingerprint).not.toBe(first.fingerprint);
    expect(await readSecret(vault, { tenant: acme, name: 'openai_api_key' })).toBe('sk-second-value-000002');
    await deleteSecret(t.app.deps.sql, { tenant: acme, name: 'openai_api_key' });
    expect(await readSecret(vault, { tenant: acme, name: 'openai_api_key' })).toBeUndefined();
    await expect(deleteSecret(t.app.deps.sql, { tenant: acme, name: 'openai_api_key' })).rejects.toMatchObject({ code: 'not_found' });
  });

  it('refuses bad names and values with validation_failed, writing nothing', async () => {
    for (const [name, input] of [
      ['Bad Name', { value: 'x' }],
      ['ok_name', { value: '' }],
      ['ok_name', { value: 1 }],
      ['ok_name', { value: 'x', extra: true }],
    ] as const) {
      await expect(putSecret(vault, { tenant: acme, name, input })).rejects.toMatchObject({ code: 'validation_failed' });
    }
    expect((await listSecrets(t.app.deps.sql, acme)).map((secret) => secret.name)).toEqual(['stripe_api_key']);
  });

  it("prefers an installation's own secret, then falls back to the org's", async () => {
    await putSecret(vault, { tenant: acme, name: 'webhook_signing_secret', input: { value: 'whsec_org_level_secret' } });
    await putSecret(vault, { tenant: acme, name: 'webhook_signing_secret', owner: 'ins_01example', input: { value: 'whsec_installation_secret' } });
    expect(await readSecret(vault, { tenant: acme, name: 'webhook_signing_secret', installationId: 'ins_01example' })).toBe('whsec_installation_secret');
    expect(await readSecret(vault, { tenant: acme, name: 'webhook_signing_secret', installationId: 'ins_02other' })).toBe('whsec_org_level_secret');
  });

  it('fails loudly on a tampered row, and on a row moved to another name', async () => {
    await putSecret(vault, { tenant: acme, name: 'tampered', input: { value: 'value-to-tamper-with-01' } });
    await t.app.deps.sql`
      update org_vault_acme.secrets set ciphertext = set_byte(ciphertext, 19, get_byte(ciphertext, 19) # 1) where name = 'tampered'`;
    await expect(readSecret(vault, { tenant: acme, name: 'tampered' })).rejects.toBeInstanceOf(VaultIntegrityError);
    await putSecret(vault, { tenant: acme, name: 'moved_from', input: { value: 'value-that-gets-moved-01' } });
    await t.app.deps.sql`update org_vault_acme.secrets set name = 'moved_to' where name = 'moved_from'`;
    await expect(readSecret(vault, { tenant: acme, name: 'moved_to' })).rejects.toBeInstanceOf(VaultIntegrityError);
    await t.app.deps.sql`delete from org_vault_acme.secrets where name in ('tampered', 'moved_to')`;
  });

  it('rotate-encryption re-wraps every secret under the new first key; the old key can then be retired', async () => {
    await putSecret(vault, { tenant: other, name: 'gmail_oauth', input: { value: '{"refresh_token":"1//rt-canary-value"}' } });
    const newKeys = `${generateMasterKeys('rotated')},${TEST_MASTER_KEYS}`;
    const rotatedVault: VaultDeps = { sql: t.app.deps.sql, keys: parseMasterKeys(newKeys) };
    const report = await rotateEncryption(rotatedVault);
    expect(report.current_kid).toBe('rotated');
    expect(report.rewrapped).toBeGreaterThanOrEqual(4);
    const kids = await t.app.deps.sql<{ kid: string }[]>`
      select kid from org_vault_acme.secrets union select kid from org_vault_other.secrets`;
    expect(kids.map((row) => row.kid)).toEqual(['rotated']);
    const retired: VaultDeps = { sql: t.app.deps.sql, keys: parseMasterKeys(newKeys.split(',')[0]!) };
    expect(await readSecret(retired, { tenant: acme, name: 'stripe_api_key' })).toBe(canary);
    expect(await readSecret(retired, { tenant: other, name: 'gmail_oauth' })).toBe('{"refresh_token":"1//rt-canary-value"}');
    // Running it again has nothing left to do.
    expect((await rotateEncryption(rotatedVault)).rewrapped).toBe(0);
  });

  it('answers unavailable when no master key is configured', async () => {
    const keyless: VaultDeps = { sql: t.app.deps.sql, keys: undefined };
    await expect(readSecret(keyless, { tenant: acme, name: 'stripe_api_key' })).rejects.toMatchObject({ code: 'unavailable' });
    await expect(putSecret(keyless, { tenant: acme, name: 'x_key', input: { value: 'v' } })).rejects.toMatchObject({ code: 'unavailable' });
  });
});

describe('credentials for executors', () => {
  it('serve overlapping reads of one secret from one query, and a read after a change sees the change', async () => {
    const statements: string[] = [];
    const counted = postgres(t.database.url, { max: 4, onnotice: () => {}, debug: (_connection, query) => void statements.push(query) });
    try {
      const deps = { ...t.app.deps.bus.directives, vault: { sql: counted, keys: vault.keys } };
      await putSecret(vault, { tenant: acme, name: 'shared_key', input: { value: 'first-value' } });
      const reads = await Promise.all(Array.from({ length: 8 }, () => credentialsFor(deps, acme, null).get('shared_key')));
      expect(reads).toEqual(Array(8).fill('first-value'));
      expect(statements.filter((text) => text.includes('secrets'))).toHaveLength(1);

      await putSecret(vault, { tenant: acme, name: 'shared_key', input: { value: 'second-value' } });
      expect(await credentialsFor(deps, acme, null).get('shared_key')).toBe('second-value');
      // Another org's secret of the same name is another read.
      await putSecret(vault, { tenant: other, name: 'shared_key', input: { value: 'other-value' } });
      const [mine, theirs] = await Promise.all([credentialsFor(deps, acme, null).get('shared_key'), credentialsFor(deps, other, null).get('shared_key')]);
      expect([mine, theirs]).toEqual(['second-value', 'other-value']);
    } finally {
      await counted.end({ timeout: 5 });
    }
  });
});

describe('starting a server without master keys', () => {
  it('is refused outside the embedded database, naming the variable', async () => {
    const env = { ...process.env, DATABASE_URL: t.database.url, PORT: '0' } as Record<string, string | undefined>;
    delete env.SIGNALBUS_ENCRYPTION_KEYS;
    const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin/signalbus.js'), 'serve'], { cwd: PROJECT_ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(stderr).toContain('SIGNALBUS_ENCRYPTION_KEYS');
  }, 60_000);
});
