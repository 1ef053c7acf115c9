/**
 * The console in a real Chromium: people's journeys through sign-in, the live
 * tail, payloads that must stay inert, the approvals inbox, a failed run
 * retried, a policy refused at its CEL error's position, role-limited pages,
 * sign-out — with the CSP in force, no CSP violation or script error on any
 * page, axe-core finding nothing serious, and a screenshot of each view.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { checkPage, chromiumAvailable, consoleBrowser, pageFaults, type ConsoleBrowser } from '../support/browser.ts';
import { alwaysFails, failedExecution, HOLD_POLICY, heldDirective, setPolicy } from '../support/fanout.ts';
import { createTestApp, listen, waitFor, type TestApp } from '../support/harness.ts';

let t: TestApp;
let server: Awaited<ReturnType<typeof listen>>;
let browser: ConsoleBrowser;
let acme: Tenant;
let keys: { viewer: string; operator: string; admin: string };
let worker: Promise<unknown> | undefined;

/** One worker for the tests that need jobs run, started by the first of them (earlier tests expect none). */
const ensureWorker = () => (worker ??= t.startWorker());

const browserTests = chromiumAvailable();

beforeAll(async () => {
  if (!browserTests) return;
  t = await createTestApp({ handlers: [alwaysFails] });
  server = await listen(t.app, t.config);
  browser = await consoleBrowser(server.url);
  acme = await t.createOrg('acme');
  keys = { viewer: await t.createKey(acme, 'viewer'), operator: await t.createKey(acme, 'operator'), admin: await t.createKey(acme, 'admin') };
  await setPolicy(t, acme, HOLD_POLICY);
});
afterEach(async () => {
  await browser?.closePages();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await t?.close();
});

describe.runIf(browserTests)('console in Chromium', () => {
  it('signs in with a key into an HttpOnly, SameSite=Strict session and shows the role', async () => {
    const { page, problems, context } = await browser.signIn(keys.operator);
    const cookies = await context.cookies();
    const session = cookies.find((cookie) => cookie.name === 'sb_console')!;
    expect(session.httpOnly).toBe(true);
    expect(session.sameSite).toBe('Strict');
    expect(session.value).not.toContain(keys.operator.slice(4));
    expect(await page.evaluate('document.cookie')).toBe('');
    expect(await page.evaluate('JSON.stringify(localStorage) + JSON.stringify(sessionStorage)')).not.toContain('sbk_');
    expect(await page.getByText('(operator)').count()).toBe(1);
    expect(problems).toEqual([]);
  });

  it('shows a signal emitted through the API in the live tail', { timeout: 90_000 }, async () => {
    const { page, problems } = await browser.as(keys.operator);
    const response = await page.goto(`${server.url}/console/orgs/acme/signals`);
    const csp = response!.headers()['content-security-policy']!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    await page.getByRole('button', { name: 'Start live tail' }).click();
    await page.getByText('live', { exact: true }).waitFor();
    const emitted = await t.request('POST', '/v1/orgs/acme/signals', { key: keys.operator, body: { type: 'forum.post.created', subject: 'thread:42', payload: { body: 'hello' } } });
    expect(emitted.status).toBe(201);
    // Delivery waits for the visibility horizon, which other databases' open transactions on a shared server hold back.
    await page.locator('#tail-list li', { hasText: 'forum.post.created' }).waitFor({ timeout: 50_000 });
    await checkPage(page, 'signals');
    expect(problems).toEqual([]);
  });

  it('renders hostile payloads inert, in the list and on the signal page with its trace', { timeout: 90_000 }, async () => {
    const hostile = { body: '<script>window.owned=1</script>', attr: '"><img src=x onerror="window.owned=2">' };
    const emitted = await t.request('POST', '/v1/orgs/acme/signals', { key: keys.operator, body: { type: 'forum.post.created', subject: '"><b>x</b>', payload: hostile } });
    const id = emitted.body.signal.id as string;
    const { page, problems } = await browser.as(keys.viewer);
    await waitFor(async () => {
      await page.goto(`${server.url}/console/orgs/acme/signals?type=forum.*`);
      return (await page.locator(`a[href$="${id}"]`).count()) > 0;
    }, 75_000, 'the signal to be listed');
    await page.locator('details summary').last().click();
    await page.goto(`${server.url}/console/orgs/acme/signals/${id}`);
    await expect(page.locator('pre.json').textContent()).resolves.toContain('<script>window.owned=1</script>');
    expect(await page.evaluate('window.owned')).toBeUndefined();
    expect(await page.locator('main img, main script, main b').count()).toBe(0);
    await checkPage(page, 'signal-trace');
    expect(problems).toEqual([]);
  });

  it('retries a failed execution from the executions view', async () => {
    const execution = await failedExecution(t, acme);
    const { page, problems } = await browser.as(keys.operator);
    await page.goto(`${server.url}/console/orgs/acme/executions?status=failed`);
    await checkPage(page, 'executions');
    await page.getByRole('button', { name: `Retry ${execution.id}` }).click();
    await page.getByText('Execution queued for another attempt.').waitFor();
    const after = await t.request('GET', `/v1/orgs/acme/executions/${execution.id}`, { key: keys.admin });
    expect(after.body.execution.status).not.toBe('failed');
    expect(problems).toEqual([]);
  });

  it('approves a held directive in the inbox; it is executed and names its approver', async () => {
    const directive = await heldDirective(t, acme, { params: { note: '<em>ship it</em>' } });
    await ensureWorker();
    const { page, problems } = await browser.as(keys.operator);
    await page.goto(`${server.url}/console/orgs/acme/approvals`);
    const card = page.locator('article', { hasText: directive.id });
    await expect(card.locator('pre.json').textContent()).resolves.toContain('<em>ship it</em>');
    await expect(card.locator('time.countdown').textContent()).resolves.toMatch(/expires in|no expiry/);
    expect(await card.textContent()).toContain('require_approval by hold');
    await checkPage(page, 'approvals');
    await card.getByLabel('Reason').fill('INC-1: looks right');
    await card.getByRole('button', { name: 'Approve' }).click();
    await page.getByText('Directive approved.').waitFor();
    const done = await waitFor(async () => {
      const response = await t.request('GET', `/v1/orgs/acme/directives/${directive.id}`, { key: keys.admin });
      return response.body.directive.status === 'succeeded' ? response.body.directive : undefined;
    }, 30_000, 'the approved directive to be executed');
    expect(done.decided_by.id).toBe('operator@acme.test');
    await page.goto(`${server.url}/console/orgs/acme/directives?status=succeeded`);
    await expect(page.locator('tr', { hasText: directive.id }).textContent()).resolves.toContain('by operator@acme.test');
    await checkPage(page, 'directives');
    expect(problems).toEqual([]);
  });

  it('starts a rebuild replay whose progress bar reaches 100 % and shows its report', async () => {
    const { page, problems } = await browser.as(keys.admin);
    await page.goto(`${server.url}/console/orgs/acme/replays`);
    await page.getByLabel('Mode').selectOption('rebuild');
    await page.getByLabel('Reason (incident or ticket)').fill('INC-7: check projections');
    await page.getByRole('button', { name: 'Start replay' }).click();
    await page.waitForURL(/\/replays\/rpl_/);
    await page.locator('.status.succeeded').waitFor({ timeout: 60_000 });
    expect(await page.locator('progress').getAttribute('value')).toBe('100');
    await expect(page.locator('pre.json').last().textContent()).resolves.toContain('checksums');
    await checkPage(page, 'replay');
    await page.goto(`${server.url}/console/orgs/acme/replays`);
    await checkPage(page, 'replays');
    expect(problems).toEqual([]);
  });

  it('refuses a policy with a CEL error, showing its position, and saves nothing', async () => {
    const { page, problems } = await browser.as(keys.admin);
    await page.goto(`${server.url}/console/orgs/acme/policies`);
    const before = await t.request('GET', '/v1/orgs/acme/policies', { key: keys.admin });
    const document = { rules: [{ id: 'bad', match: 'noop.*', when: 'params.amount >', effect: 'allow' }] };
    await page.getByLabel('Policy document').fill(JSON.stringify(document, null, 2));
    await page.getByRole('button', { name: 'Check' }).click();
    const alert = page.locator('section.error');
    await expect(alert.textContent()).resolves.toMatch(/rules\.0\.when.*line 1, column \d+/s);
    await expect(page.locator('pre.caret').textContent()).resolves.toMatch(/params\.amount >\n\s*\^/);
    await checkPage(page, 'policies-error');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('pre.caret').waitFor();
    const after = await t.request('GET', '/v1/orgs/acme/policies', { key: keys.admin });
    expect(after.body.version).toBe(before.body.version);
    await page.getByLabel('Kind').fill('noop.record');
    await page.getByLabel('Params (JSON)').fill('{"hold": true}');
    await page.getByRole('button', { name: 'Simulate' }).click();
    await expect(page.locator('dd.decision').textContent()).resolves.toBe('require_approval');
    expect(problems).toEqual([]);
  });

  it('stores and lists a secret as an admin, showing only its fingerprint and last four', async () => {
    const { page, problems } = await browser.as(keys.admin);
    await page.goto(`${server.url}/console/orgs/acme/secrets`);
    await page.getByLabel('Name').fill('stripe_api_key');
    await page.getByLabel('Value').fill('sk_test_console_1234');
    await page.getByRole('button', { name: 'Store' }).click();
    await page.getByText('Secret stored.').waitFor();
    expect(await page.content()).not.toContain('sk_test_console_1234');
    await expect(page.locator('tr', { hasText: 'stripe_api_key' }).textContent()).resolves.toContain('1234');
    await checkPage(page, 'secrets');
    expect(problems).toEqual([]);
  });

  it('installs a package through its generated config form and shows the installation with its delivery log', async () => {
    const { page, problems } = await browser.as(keys.admin);
    await page.goto(`${server.url}/console/orgs/acme/installations`);
    await page.getByRole('link', { name: 'Install webhook-relay 1.0.1', exact: true }).click();
    await page.getByLabel('endpoint_url').fill('https://relay.example.test/hook');
    await page.getByLabel('Secret inbound_hmac_secret').fill('relay-inbound-hmac-value');
    await page.getByLabel('Secret webhook_signing_secret').fill('whsec_cmVsYXktc2lnbmluZy1zZWNyZXQ=');
    await checkPage(page, 'install-form');
    await page.getByRole('button', { name: 'Install' }).click();
    await page.waitForURL(/\/installations\/ins_/);
    // The page reloads itself when the install job ends: wait for that before checking it.
    await ensureWorker();
    await page.locator('.facts .status', { hasText: /^installed$/ }).waitFor({ timeout: 30_000 });
    await page.getByRole('heading', { name: 'Inbound deliveries' }).waitFor();
    expect(await page.content()).not.toContain('relay-inbound-hmac-value');
    await checkPage(page, 'installation');
    await page.goto(`${server.url}/console/orgs/acme/installations`);
    await checkPage(page, 'installations');
    expect(problems).toEqual([]);
  });

  it('offers a viewer no approve button and no secrets, and its forged approval is refused', async () => {
    const directive = await heldDirective(t, acme);
    const { page, problems } = await browser.as(keys.viewer);
    await page.goto(`${server.url}/console/orgs/acme/approvals`);
    await page.locator('article', { hasText: directive.id }).waitFor();
    expect(await page.getByRole('button', { name: 'Approve' }).count()).toBe(0);
    expect(await page.getByRole('link', { name: 'Secrets' }).count()).toBe(0);
    const csrf = await page.locator('input[name="_csrf"]').first().getAttribute('value');
    const status = await page.evaluate(async ({ id, token }) => {
      const response = await fetch(`/console/orgs/acme/directives/${id}/decide`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _csrf: token, action: 'approve' }).toString(),
      });
      return response.status;
    }, { id: directive.id, token: csrf! });
    expect(status).toBe(403);
    expect(problems).toEqual([]);
  });

  it('lists orgs with migration status for a platform admin, at phone width too', async () => {
    const { page, problems } = await browser.as(t.platformKey, { width: 390, height: 844 });
    await page.goto(`${server.url}/console/orgs`);
    await expect(page.locator('tr', { hasText: 'acme' }).textContent()).resolves.toMatch(/current \(v\d+\)/);
    expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth + 1')).toBe(true);
    await checkPage(page, 'orgs-phone');
    expect(problems).toEqual([]);
  });

  it('the accessibility check finds a serious violation when there is one', async () => {
    const { page } = await browser.open();
    await page.setContent('<!doctype html><html lang="en"><title>t</title><main><img src="data:,"><input type="text"></main></html>');
    // Through the same check every page passes, so a check that quietly ran nothing would fail here.
    expect((await pageFaults(page, 'accessibility-self-check')).join('\n')).toMatch(/image-alt.*\n.*label|label.*\n.*image-alt/);
  });

  it('signs out: the page goes back to sign-in and the old session opens nothing', async () => {
    const { page, context, problems } = await browser.signIn(keys.operator);
    const token = (await context.cookies()).find((cookie) => cookie.name === 'sb_console')!.value;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByText('Signed out.').waitFor();
    await checkPage(page, 'sign-in');
    const replay = await fetch(`${server.url}/console/orgs/acme/signals`, { headers: { cookie: `sb_console=${token}` }, redirect: 'manual' });
    expect(replay.status).toBe(303);
    expect(replay.headers.get('location')).toBe('/console/sign-in');
    expect(problems).toEqual([]);
  });
});
