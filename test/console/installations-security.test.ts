/**
 * The console's installation forms over HTTP, in process: reconfigure,
 * secrets and upgrade (and the simple actions) need the admin role and the
 * session's CSRF token, another org's installation is 404, a refused config
 * or upgrade changes nothing and says what to change, and secret values are
 * never echoed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { signedIn, type ConsoleClient } from '../support/console.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { installationIn, RELAY_CONFIG, RELAY_SECRETS, registryWithRelayVersions } from '../support/installations.ts';

let t: TestApp;
let registry: Awaited<ReturnType<typeof registryWithRelayVersions>>;
let acme: Tenant;
let globex: Tenant;
let keys: { viewer: string; operator: string; admin: string; other: string };

beforeAll(async () => {
  registry = await registryWithRelayVersions();
  t = await createTestApp({ env: { SIGNALBUS_REGISTRY_DIR: registry.dir } });
  acme = await t.createOrg('acme');
  globex = await t.createOrg('globex');
  keys = {
    viewer: await t.createKey(acme, 'viewer'),
    operator: await t.createKey(acme, 'operator'),
    admin: await t.createKey(acme, 'admin'),
    other: await t.createKey(globex, 'admin'),
  };
});
afterAll(async () => {
  await t?.close();
  await registry?.cleanup();
});

const page = (id: string, rest = '') => `/console/orgs/acme/installations/${id}${rest}`;
const apiInstallation = async (id: string) => (await t.request('GET', `/v1/orgs/acme/installations/${id}`, { key: keys.admin })).body.installation;
const signalCount = async () => {
  const [row] = await t.app.deps.sql<{ n: number }[]>`select count(*)::int as n from ${t.app.deps.sql(`${acme.schema}.signals`)}`;
  return row!.n;
};

/** Every installation form, with a body each would accept from an admin. */
const FORMS: Array<[string, Record<string, string>]> = [
  ['/configure', { 'config.endpoint_url': 'https://changed.example.test/', 'config.forward_types': '' }],
  ['/secrets', { 'secret.inbound_hmac_secret': 'forged-secret-value' }],
  ['/upgrade', { version: '1.1.0' }],
  ['/disable', {}],
  ['/uninstall', {}],
];

async function refusesEveryForm(client: ConsoleClient, id: string, status: number, path = (rest: string) => page(id, rest), csrf?: string | null) {
  const before = { installation: await apiInstallation(id), signals: await signalCount() };
  for (const [rest, form] of FORMS) {
    const response = await client.post(path(rest), form, csrf === undefined ? {} : { csrf });
    expect(response.status, `${rest} answered ${response.status}`).toBe(status);
    expect(response.text).not.toContain('forged-secret-value');
  }
  expect(await apiInstallation(id)).toEqual(before.installation);
  expect(await signalCount()).toBe(before.signals);
}

describe('installation forms: who may post them', () => {
  it('refuses each form without the CSRF token, or with another session’s, and changes nothing', async () => {
    const id = await installationIn(t, acme, 'installed');
    const admin = await signedIn(t, keys.admin);
    const other = await signedIn(t, keys.admin);
    await other.get(page(id));
    await refusesEveryForm(admin, id, 403, undefined, null);
    await refusesEveryForm(admin, id, 403, undefined, other.lastCsrf!);
  });

  it('offers a viewer and an operator no form and answers their forged posts 403', async () => {
    const id = await installationIn(t, acme, 'installed');
    for (const key of [keys.viewer, keys.operator]) {
      const client = await signedIn(t, key);
      const detail = await client.get(page(id));
      expect(detail.status).toBe(200);
      expect(detail.text).toContain(`/v1/hooks/${id}`);
      for (const text of ['Reconfigure', '>Upgrade<', 'Store secrets', '>Disable<', '>Uninstall<', 'name="secret.']) expect(detail.text).not.toContain(text);
      expect((await client.get(page(id, '/configure'))).status).toBe(403);
      await refusesEveryForm(client, id, 403);
    }
  });

  it('answers 404 for another org’s installation, through the admin’s own org or the other org’s path', async () => {
    const id = await installationIn(t, acme, 'installed');
    const other = await signedIn(t, keys.other);
    await other.get('/console/orgs/globex/installations');
    for (const path of [page(id), page(id, '/configure'), page(id, '/state')]) expect((await other.get(path)).status).toBe(404);
    expect((await other.get(`/console/orgs/globex/installations/${id}/state`)).status).toBe(404);
    expect((await other.get(`/console/orgs/globex/installations/${id}/configure`)).status).toBe(404);
    await refusesEveryForm(other, id, 404, (rest) => `/console/orgs/globex/installations/${id}${rest}`);
    await refusesEveryForm(other, id, 404);
    expect((await other.get(`/console/orgs/globex/installations/ins_nope/configure`)).status).toBe(404);
  });
});

describe('installation forms: what an admin gets', () => {
  it('prefills the config form from the schema and shows a refused config’s errors at their fields, changing nothing', async () => {
    const id = await installationIn(t, acme, 'installed');
    const admin = await signedIn(t, keys.admin);
    const form = await admin.get(page(id, '/configure'));
    expect(form.status).toBe(200);
    expect(form.text).toContain(`name="config.endpoint_url" aria-describedby="config-endpoint_url-hint" type="text" value="${RELAY_CONFIG.endpoint_url}"`);
    expect(form.text).toMatch(/type="checkbox" id="config-send_test_ping" name="config.send_test_ping"(?! checked)/);
    const before = { installation: await apiInstallation(id), signals: await signalCount() };
    const refused = await admin.post(page(id, '/configure'), { 'config.endpoint_url': 'ftp://nope', 'config.forward_types': 'a, a' });
    expect(refused.status).toBe(422);
    expect(refused.text).toContain('href="#config-endpoint_url"');
    expect(refused.text).toMatch(/id="config-endpoint_url" name="config.endpoint_url" aria-invalid="true" aria-describedby="config-endpoint_url-error config-endpoint_url-hint"[^>]*value="ftp:\/\/nope"/);
    expect(refused.text).toMatch(/<span class="field-error" id="config-endpoint_url-error">must match pattern/);
    expect(refused.text).toMatch(/<span class="field-error" id="config-forward_types-error">must NOT have duplicate items/);
    expect(await apiInstallation(id)).toEqual(before.installation);
    expect(await signalCount()).toBe(before.signals);

    const saved = await admin.post(page(id, '/configure'), { 'config.endpoint_url': 'https://new.example.test/hook', 'config.forward_types': 'a.b, c.d', 'config.send_test_ping': 'on' });
    expect(saved.status).toBe(303);
    expect(saved.headers.get('location')).toBe(`${page(id)}?notice=installation_configured`);
    expect((await apiInstallation(id)).config).toEqual({ endpoint_url: 'https://new.example.test/hook', forward_types: ['a.b', 'c.d'], send_test_ping: true });
    expect((await admin.get(saved.headers.get('location')!)).text).toContain('Config saved.');
  });

  it('stores secrets without echoing them; an all-empty secrets form is refused', async () => {
    const id = await installationIn(t, acme, 'installed');
    const admin = await signedIn(t, keys.admin);
    const detail = await admin.get(page(id));
    expect(detail.text).toMatch(/name="secret.inbound_hmac_secret" type="password" autocomplete="off"/);
    expect(detail.text).not.toContain(RELAY_SECRETS.inbound_hmac_secret);
    const stored = await admin.post(page(id, '/secrets'), { 'secret.inbound_hmac_secret': 'rotated-new-value rotated-old-value', 'secret.webhook_signing_secret': '' });
    expect(stored.status).toBe(303);
    const after = await admin.get(stored.headers.get('location')!);
    expect(after.text).toContain('Secrets stored.');
    expect(after.text).not.toContain('rotated-new-value');
    const signals = await t.app.deps.sql<{ payload: unknown }[]>`
      select payload from ${t.app.deps.sql(`${acme.schema}.signals`)} where type = 'installation.configured' and subject = ${`installation:${id}`}`;
    expect(signals).toHaveLength(1);
    expect(JSON.stringify(signals)).not.toContain('rotated-new-value');
    const before = await signalCount();
    const empty = await admin.post(page(id, '/secrets'), { 'secret.inbound_hmac_secret': '', 'secret.webhook_signing_secret': '' });
    expect(empty.status).toBe(422);
    expect(await signalCount()).toBe(before);
  });

  it('refuses an upgrade whose schema refuses the config with the report of what to change, and upgrades to a version it fits', async () => {
    const id = await installationIn(t, acme, 'installed');
    const admin = await signedIn(t, keys.admin);
    const detail = await admin.get(page(id));
    expect(detail.text).toMatch(/<option value="1.1.0">1.1.0<\/option><option value="2.0.0">2.0.0<\/option><\/select>/);
    expect(detail.text).not.toContain('value="1.0.2"'); // yanked
    expect(detail.text).not.toContain('value="1.0.0"'); // yanked
    const before = { installation: await apiInstallation(id), signals: await signalCount() };
    const refused = await admin.post(page(id, '/upgrade'), { version: '2.0.0' });
    expect(refused.status).toBe(422);
    expect(refused.text).toContain('Upgrade to 2.0.0 refused: the config must change first');
    expect(refused.text).toContain('<a href="#config-timeout_ms"><code>/config/timeout_ms</code></a>: must have required property &#39;timeout_ms&#39;');
    // The new version's form, to upgrade with a config it fits.
    expect(refused.text).toContain('<button type="submit">Upgrade to 2.0.0</button>');
    expect(refused.text).toMatch(/<code>\/config\/send_test_ping<\/code>(<\/a>)?: not in the config schema of 2\.0\.0: remove it/);
    expect(await apiInstallation(id)).toEqual(before.installation);
    expect(await signalCount()).toBe(before.signals);
    expect((await admin.post(page(id, '/upgrade'), { version: '1.0.2' })).status).toBe(422);
    expect((await admin.post(page(id, '/upgrade'), { version: '9.9.9' })).status).toBe(404);
    expect(await apiInstallation(id)).toEqual(before.installation);

    const upgrading = await admin.post(page(id, '/upgrade'), { version: '1.1.0' });
    expect(upgrading.status).toBe(303);
    expect((await apiInstallation(id)).pending).toMatchObject({ operation: 'upgrade', version: '1.1.0' });
    const busy = await admin.get(page(id));
    expect(busy.text).toContain(`data-installation-poll="${page(id, '/state')}"> — upgrade to 1.1.0 running (attempt 1)`);
    expect(JSON.parse((await admin.get(page(id, '/state'))).text)).toEqual({ status: 'installed', version: '1.0.1', pending: true });
    expect(busy.text).not.toContain('>Upgrade<');
  });

  it('shows a failed install’s step and offers retry', async () => {
    const id = await installationIn(t, acme, 'install_failed');
    const admin = await signedIn(t, keys.admin);
    const detail = await admin.get(page(id));
    expect(detail.text).toMatch(/The install to 1\.0\.1 \(attempt 1\) failed at step <strong>secrets<\/strong>/);
    expect(detail.text).toContain('>Retry<');
    const retried = await admin.post(page(id, '/retry'), {});
    expect(retried.status).toBe(303);
    expect((await apiInstallation(id)).pending).toMatchObject({ operation: 'install', attempt: 2 });
  });
});
