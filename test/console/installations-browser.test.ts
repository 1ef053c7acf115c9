/**
 * An installer's whole job in a real Chromium: install webhook-relay through
 * its generated config form (a worker runs the install), give the sender the
 * webhook URL the page shows, and see real signed and forged deliveries over
 * HTTP in the delivery log, the accepted one's signal in the signals view;
 * rotate the inbound secret; disable (the hook answers 404, and that
 * rejection is logged); an upgrade the new schema refuses and an invalid
 * reconfiguration show their errors and change nothing; a valid upgrade and
 * enabling open the hook again. Every installation page is checked with
 * axe-core at 1280 px and at phone width (375 px) and screenshotted.
 */
import { createHash, createHmac } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { checkPage as checkPageAt, chromiumAvailable, consoleBrowser, type ConsoleBrowser } from '../support/browser.ts';
import { createTestApp, listen, waitFor, type TestApp } from '../support/harness.ts';
import { RELAY_V2_SECRETS, registryWithRelayVersions } from '../support/installations.ts';

let t: TestApp;
let server: Awaited<ReturnType<typeof listen>>;
let browser: ConsoleBrowser;
let registry: Awaited<ReturnType<typeof registryWithRelayVersions>>;
let admin: string;
let held: Promise<void> | null = null;

/** Holds the next jobs until `release` (or 15 s: a job's transaction must not stay open long on a shared server). */
function holdJobs(): () => void {
  let release!: () => void;
  held = new Promise<void>((resolve) => {
    release = resolve;
    setTimeout(resolve, 15_000).unref();
  });
  return () => {
    held = null;
    release();
  };
}

const browserTests = chromiumAvailable();
const HMAC_KEY = 'relay-inbound-console-key';
const ROTATED_KEY = 'relay-inbound-rotated-key';

beforeAll(async () => {
  if (!browserTests) return;
  registry = await registryWithRelayVersions();
  t = await createTestApp({
    env: { SIGNALBUS_REGISTRY_DIR: registry.dir },
    // Holds a job at its first step while `held` is set, so the page is seen while the job runs.
    beforeInstallationStep: async (step) => {
      if (step === 'config' && held) await held;
    },
  });
  server = await listen(t.app, t.config);
  browser = await consoleBrowser(server.url);
  admin = await t.createKey(await t.createOrg('acme'), 'admin');
  await t.startWorker();
});
afterEach(async () => {
  await browser?.closePages();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await t?.close();
  await registry?.cleanup();
});

/** axe-core finds nothing serious at 1280 px nor at 375 px, where nothing but the tables scrolls sideways; a screenshot of each. */
async function checkPage(page: Page, name: string) {
  await checkPageAt(page, `installations-${name}`, { phone: `installations-${name}-phone` });
}

/** A delivery as the sender makes it: HMAC-SHA256 of the body, hex, in X-Signature-256. */
async function deliver(url: string, body: string, key: string | null): Promise<number> {
  const signature = createHmac('sha256', key ?? 'not-the-key').update(body).digest('hex');
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-signature-256': `sha256=${signature}` }, body });
  await response.arrayBuffer();
  return response.status;
}

const sha256 = (body: string) => createHash('sha256').update(body).digest('hex');
const event = (id: string) => JSON.stringify({ id, type: 'order.paid', data: { order: id, amount: 1200 } });

async function apiInstallation(id: string) {
  return (await t.request('GET', `/v1/orgs/acme/installations/${id}`, { key: admin })).body.installation;
}

/** Waits for the worker to finish the installation's job and the page to reload itself with the outcome. */
async function idle(page: Page, id: string, expected: Record<string, unknown>) {
  await waitFor(async () => {
    const row = await apiInstallation(id);
    return row.pending === null && Object.entries(expected).every(([name, value]) => row[name] === value);
  }, 30_000, `installation ${id} to be ${JSON.stringify(expected)}`);
  await page.locator('[data-installation-poll]').waitFor({ state: 'detached', timeout: 10_000 });
  await page.waitForLoadState();
}

const deliveryRow = (page: Page, sha: string) => page.locator('section[aria-labelledby="deliveries"] tr', { hasText: sha });

describe.runIf(browserTests)('installations in Chromium', () => {
  it('installs, receives signed and forged deliveries, rotates, disables, refuses bad changes and upgrades', { timeout: 240_000 }, async () => {
    const { page, problems } = await browser.as(admin);

    // Install 1.0.1 (1.0.0 is yanked) through the form generated from its config schema.
    await page.goto(`${server.url}/console/orgs/acme/installations`);
    await checkPage(page, 'list-empty');
    await page.getByRole('link', { name: 'Install webhook-relay 1.0.1', exact: true }).click();
    await page.getByLabel('endpoint_url').fill('https://relay.example.test/hook');
    await page.getByLabel('Secret inbound_hmac_secret').fill(HMAC_KEY);
    await page.getByLabel('Secret webhook_signing_secret').fill('whsec_cmVsYXktc2lnbmluZy1zZWNyZXQ=');
    await checkPage(page, 'install-form');
    const release = holdJobs();
    await page.getByRole('button', { name: 'Install' }).click();
    await page.waitForURL(/\/installations\/ins_/);
    const id = /installations\/(ins_[A-Za-z0-9]+)/.exec(page.url())![1]!;
    // While the job runs the page says so, and reloads itself when it ends.
    await page.getByText('install to 1.0.1 running (attempt 1); the page reloads when it ends').waitFor();
    await expect(page.locator('.facts .status').textContent()).resolves.toBe('installing');
    await checkPage(page, 'installing');
    release();
    await page.locator('.facts .status', { hasText: /^installed$/ }).waitFor({ timeout: 30_000 });
    expect(await page.content()).not.toContain(HMAC_KEY);

    // The sender gets the URL the page shows, and delivers over HTTP: one signed, one forged.
    const hookUrl = (await page.locator('#webhook-url').textContent())!;
    expect(hookUrl).toBe(`${server.url}/v1/hooks/${id}`);
    const signed = event('evt_console_1');
    const forged = event('evt_console_forged');
    expect(await deliver(hookUrl, signed, HMAC_KEY)).toBe(200);
    expect(await deliver(hookUrl, forged, null)).toBe(401);
    await page.reload();
    const accepted = deliveryRow(page, sha256(signed));
    await expect(accepted.locator('td').nth(1).textContent()).resolves.toBe('200');
    await expect(accepted.locator('td').nth(2).textContent()).resolves.toBe('accepted');
    await expect(accepted.textContent()).resolves.toContain('evt_console_1');
    const rejected = deliveryRow(page, sha256(forged));
    await expect(rejected.locator('td').nth(1).textContent()).resolves.toBe('401');
    await expect(rejected.locator('td').nth(3).textContent()).resolves.toMatch(/^invalid_signature/);
    await checkPage(page, 'installed');

    // The accepted delivery's signal: its page, and the signals view once it is below the horizon.
    const signalId = (await accepted.getByRole('link').textContent())!;
    await accepted.getByRole('link').click();
    await expect(page.locator('main').textContent()).resolves.toContain('relay.event.received');
    await waitFor(async () => {
      await page.goto(`${server.url}/console/orgs/acme/signals?type=relay.*`);
      return (await page.locator(`a[href$="${signalId}"]`).count()) > 0;
    }, 75_000, 'the delivered signal in the signals view');

    // Rotate: the new and the old key both verify until the old one is dropped.
    await page.goto(`${server.url}/console/orgs/acme/installations/${id}`);
    await page.getByLabel('Secret inbound_hmac_secret').fill(`${ROTATED_KEY} ${HMAC_KEY}`);
    await page.getByRole('button', { name: 'Store secrets' }).click();
    await page.getByText('Secrets stored.').waitFor();
    expect(await page.content()).not.toContain(ROTATED_KEY);
    expect(await deliver(hookUrl, event('evt_console_2'), ROTATED_KEY)).toBe(200);
    expect(await deliver(hookUrl, event('evt_console_3'), HMAC_KEY)).toBe(200);

    // Disable: the hook answers 404, and the log shows that rejection.
    await page.getByRole('button', { name: 'Disable' }).click();
    await page.getByText('Installation updated.').waitFor();
    await expect(page.locator('.facts .status').textContent()).resolves.toBe('disabled');
    const late = event('evt_console_late');
    expect(await deliver(hookUrl, late, ROTATED_KEY)).toBe(404);
    await page.reload();
    // Refused before its body is read: no hash, the newest row.
    const closed = page.locator('section[aria-labelledby="deliveries"] tbody tr').first();
    await expect(closed.locator('td').nth(1).textContent()).resolves.toBe('404');
    await expect(closed.locator('td').nth(3).textContent()).resolves.toBe('not_found: the installation is disabled');
    await checkPage(page, 'disabled');

    // An upgrade the new version's schema refuses: the report of what to change, nothing changed.
    const before = await apiInstallation(id);
    await page.getByLabel('Version').selectOption('2.0.0');
    await page.getByRole('button', { name: 'Upgrade' }).click();
    const report = page.locator('section[aria-labelledby="upgrade-refused"]');
    await expect(report.textContent()).resolves.toMatch(/\/config\/timeout_ms: must have required property 'timeout_ms'.*\/config\/send_test_ping: not in the config schema of 2\.0\.0/s);
    // Each error links to its field where the new form has one; a dropped property has none to link to.
    await expect(report.getByRole('link', { name: '/config/timeout_ms' }).getAttribute('href')).resolves.toBe('#config-timeout_ms');
    await expect(report.getByRole('link', { name: '/config/send_test_ping' }).count()).resolves.toBe(0);
    // The new version's form, filled with what still fits, and the secret it adds.
    await expect(page.getByLabel('endpoint_url').inputValue()).resolves.toBe('https://relay.example.test/hook');
    await expect(page.getByLabel('Secret relay_api_token').inputValue()).resolves.toBe('');
    await checkPage(page, 'upgrade-refused');
    expect(await apiInstallation(id)).toEqual(before);
    await page.getByRole('link', { name: 'Back to the installation' }).click();

    // An invalid reconfiguration: the error at its field, nothing changed.
    await page.getByRole('link', { name: 'Reconfigure' }).first().click();
    const endpoint = page.getByLabel('endpoint_url');
    await expect(endpoint.inputValue()).resolves.toBe('https://relay.example.test/hook');
    await endpoint.fill('ftp://relay.example.test/hook');
    await page.getByRole('button', { name: 'Save config' }).click();
    await expect(page.getByLabel('endpoint_url').getAttribute('aria-invalid')).resolves.toBe('true');
    await expect(page.locator('#config-endpoint_url-error').textContent()).resolves.toMatch(/must match pattern/);
    await expect(page.getByRole('link', { name: '/config/endpoint_url' }).getAttribute('href')).resolves.toBe('#config-endpoint_url');
    await checkPage(page, 'reconfigure-refused');
    expect(await apiInstallation(id)).toEqual(before);

    // A version the config fits, then enable: the hook answers again.
    await page.goto(`${server.url}/console/orgs/acme/installations/${id}`);
    await page.getByLabel('Version').selectOption('1.1.0');
    await page.getByRole('button', { name: 'Upgrade' }).click();
    await page.getByText('Upgrade requested; it runs in the background.').waitFor();
    await idle(page, id, { version: '1.1.0' });
    await page.getByRole('button', { name: 'Enable' }).click();
    await page.getByText('Installation updated.').waitFor();
    expect(await deliver(hookUrl, event('evt_console_4'), ROTATED_KEY)).toBe(200);
    expect((await apiInstallation(id)).config).toEqual(before.config);

    // 2.0.0 in one step: its form with the config it needs and the secret it adds.
    await page.goto(`${server.url}/console/orgs/acme/installations/${id}`);
    await page.getByLabel('Version').selectOption('2.0.0');
    await page.getByRole('button', { name: 'Upgrade' }).click();
    await page.getByLabel('timeout_ms').fill('50');
    await page.getByRole('button', { name: 'Upgrade to 2.0.0' }).click();
    await expect(page.locator('#config-timeout_ms-error').textContent()).resolves.toMatch(/must be >= 100/);
    await expect(page.getByLabel('timeout_ms').inputValue()).resolves.toBe('50');
    await page.getByLabel('timeout_ms').fill('2500');
    await page.getByRole('button', { name: 'Upgrade to 2.0.0' }).click();
    await expect(page.locator('#secret-relay_api_token-error').textContent()).resolves.toMatch(/required by 2\.0\.0/);
    await checkPage(page, 'upgrade-needs-secret');
    expect((await apiInstallation(id)).version).toBe('1.1.0');
    await page.getByLabel('Secret relay_api_token').fill(RELAY_V2_SECRETS.relay_api_token);
    await page.getByRole('button', { name: 'Upgrade to 2.0.0' }).click();
    await page.getByText('Upgrade requested; it runs in the background.').waitFor();
    await idle(page, id, { version: '2.0.0' });
    const upgraded = await apiInstallation(id);
    expect(upgraded.config).toMatchObject({ endpoint_url: 'https://relay.example.test/hook', timeout_ms: 2500 });
    expect(upgraded.config).not.toHaveProperty('send_test_ping');
    expect(upgraded.secrets).toContain('relay_api_token');

    await page.goto(`${server.url}/console/orgs/acme/installations`);
    await checkPage(page, 'list');
    expect(problems).toEqual([]);
  });

  it('shows a failed install’s failing step and retries it from the page', { timeout: 120_000 }, async () => {
    const { page, problems } = await browser.as(admin);
    await page.goto(`${server.url}/console/orgs/acme/installations/new?package=webhook-relay&version=1.0.1`);
    await page.getByLabel('endpoint_url').fill('https://relay.example.test/other');
    await page.getByRole('button', { name: 'Install' }).click();
    await page.waitForURL(/\/installations\/ins_/);
    const id = /installations\/(ins_[A-Za-z0-9]+)/.exec(page.url())![1]!;
    await idle(page, id, { status: 'failed' });
    const report = page.locator('section[aria-labelledby="install-error"]');
    await expect(report.textContent()).resolves.toMatch(/The install to 1\.0\.1 \(attempt 1\) failed at step secrets/);
    await checkPage(page, 'failed');
    await page.getByLabel('Secret inbound_hmac_secret').fill(HMAC_KEY);
    await page.getByLabel('Secret webhook_signing_secret').fill('whsec_cmVsYXktc2lnbmluZy1zZWNyZXQ=');
    await page.getByRole('button', { name: 'Store secrets' }).click();
    await page.getByText('Secrets stored.').waitFor();
    await page.getByRole('button', { name: 'Retry' }).click();
    await page.getByText('Installation updated.').waitFor();
    await idle(page, id, { status: 'installed' });
    await expect(page.locator('.facts .status').textContent()).resolves.toBe('installed');
    expect(problems).toEqual([]);
  });
});
