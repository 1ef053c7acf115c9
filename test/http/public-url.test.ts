/**
 * SIGNALBUS_PUBLIC_URL: behind a proxy the request's origin is the proxy's
 * upstream, not what a provider can reach, so the hook URL an installation
 * shows (API and console) is built on the configured public URL instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/tenancy/tenant.ts';
import { signedIn } from '../support/console.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { RELAY_CONFIG, RELAY_SECRETS } from '../support/installations.ts';

const PUBLIC = 'https://bus.example.test/signalbus';

let t: TestApp;
let org: Tenant;
let admin: string;

beforeAll(async () => {
  t = await createTestApp({ env: { SIGNALBUS_PUBLIC_URL: `${PUBLIC}/` } });
  org = await t.createOrg('public_url');
  admin = await t.createKey(org, 'admin');
});
afterAll(async () => {
  await t?.close();
});

describe('SIGNALBUS_PUBLIC_URL', () => {
  it('is the base of webhook_url in install, get and list answers, and of the URL the console shows', async () => {
    const installed = await t.request('POST', `/v1/orgs/${org.slug}/installations`, {
      key: admin,
      body: { package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: RELAY_SECRETS },
    });
    expect(installed.status, installed.text).toBe(202);
    const id = installed.body.installation.id as string;
    const expected = `${PUBLIC}/v1/hooks/${id}`;
    expect(installed.body.installation.webhook_url).toBe(expected);
    expect((await t.request('GET', `/v1/orgs/${org.slug}/installations/${id}`, { key: admin })).body.installation.webhook_url).toBe(expected);
    const list = await t.request('GET', `/v1/orgs/${org.slug}/installations`, { key: admin });
    expect(list.body.data.map((row: { webhook_url: string }) => row.webhook_url)).toEqual([expected]);

    const console = await signedIn(t, admin);
    const page = await console.get(`/console/orgs/${org.slug}/installations/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain(`<code id="webhook-url">${expected}</code>`);
  });
});
