/**
 * The console's guarantees over HTTP, in process: sessions (cookie flags,
 * server-side sign-out, revoked keys), CSRF on every form, roles enforced by
 * the server whatever the page shows, other orgs' paths 404, escaping and
 * the CSP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { consoleClient, signedIn } from '../support/console.ts';
import { alwaysFails, failedExecution, HOLD_POLICY, heldDirective, setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { RELAY_CONFIG, RELAY_SECRETS } from '../support/installations.ts';

let t: TestApp;
let acme: Tenant;
let globex: Tenant;
let keys: { viewer: string; operator: string; admin: string; other: string };

beforeAll(async () => {
  t = await createTestApp({ handlers: [alwaysFails] });
  acme = await t.createOrg('acme');
  globex = await t.createOrg('globex');
  keys = {
    viewer: await t.createKey(acme, 'viewer'),
    operator: await t.createKey(acme, 'operator'),
    admin: await t.createKey(acme, 'admin'),
    other: await t.createKey(globex, 'admin'),
  };
  await setPolicy(t, acme, HOLD_POLICY);
});
afterAll(async () => {
  await t?.close();
});

describe('console sessions', () => {
  it('exchanges a key for an HttpOnly, SameSite=Strict session cookie that holds no key', async () => {
    const client = consoleClient(t);
    await client.get('/console/sign-in');
    const response = await client.post('/console/sign-in', { api_key: keys.viewer });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(`/console/orgs/${acme.id}/signals`);
    const cookie = response.headers.getSetCookie().find((line) => line.startsWith('sb_console='))!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).toMatch(/Path=\/console/);
    expect(cookie).not.toMatch(/Secure/);
    expect(cookie).not.toContain(keys.viewer);
    const page = await client.get(`/console/orgs/acme/signals`);
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(keys.viewer);
  });

  it('marks the cookie Secure on https', async () => {
    const client = consoleClient(t);
    await client.get('/console/sign-in');
    const response = await client.post('/console/sign-in', { api_key: keys.viewer }, { headers: { 'x-forwarded-proto': 'https' } });
    expect(response.headers.getSetCookie().find((line) => line.startsWith('sb_console='))).toMatch(/Secure/);
  });

  it('refuses an invalid key and sends anonymous visitors to sign in', async () => {
    const client = consoleClient(t);
    expect((await client.get('/console/orgs/acme/signals')).headers.get('location')).toBe('/console/sign-in');
    await client.get('/console/sign-in');
    const response = await client.post('/console/sign-in', { api_key: 'sbk_nope' });
    expect(response.status).toBe(401);
    expect(response.text).toContain('not valid');
  });

  it('ends the session on the server at sign-out: the old cookie opens nothing', async () => {
    const client = await signedIn(t, keys.viewer);
    const token = client.cookies.get('sb_console')!;
    await client.get('/console/orgs/acme/signals');
    expect((await client.post('/console/sign-out', {})).status).toBe(303);
    const replay = consoleClient(t);
    replay.cookies.set('sb_console', token);
    const response = await replay.get('/console/orgs/acme/signals');
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/console/sign-in');
  });
});

describe('console CSRF and roles', () => {
  it('answers 403 to a form without the CSRF token, or with another session’s', async () => {
    const client = await signedIn(t, keys.operator);
    const other = await signedIn(t, keys.admin);
    await other.get('/console/orgs/acme/approvals');
    const directive = await heldDirective(t, acme);
    const missing = await client.post(`/console/orgs/acme/directives/${directive.id}/decide`, { action: 'approve' }, { csrf: null });
    expect(missing.status).toBe(403);
    const foreign = await client.post(`/console/orgs/acme/directives/${directive.id}/decide`, { action: 'approve' }, { csrf: other.lastCsrf! });
    expect(foreign.status).toBe(403);
    const signIn = consoleClient(t);
    expect((await signIn.post('/console/sign-in', { api_key: keys.admin }, { csrf: 'x'.repeat(32) })).status).toBe(403);
  });

  it('refuses a cross-origin post even with a token', async () => {
    const client = await signedIn(t, keys.operator);
    await client.get('/console/orgs/acme/approvals');
    const directive = await heldDirective(t, acme);
    const response = await client.post(`/console/orgs/acme/directives/${directive.id}/decide`, { action: 'approve' }, { headers: { origin: 'https://evil.test' } });
    expect(response.status).toBe(403);
  });

  it('shows a viewer no approve button, and refuses a forged approval with 403', async () => {
    const directive = await heldDirective(t, acme);
    const client = await signedIn(t, keys.viewer);
    const inbox = await client.get('/console/orgs/acme/approvals');
    expect(inbox.text).toContain(directive.id);
    expect(inbox.text).not.toContain('>Approve<');
    expect(inbox.text).not.toContain('/secrets');
    const forged = await client.post(`/console/orgs/acme/directives/${directive.id}/decide`, { action: 'approve' });
    expect(forged.status).toBe(403);
    expect((await client.get('/console/orgs/acme/secrets')).status).toBe(403);
    expect((await client.post('/console/orgs/acme/secrets', { name: 'x_key', value: 'v' })).status).toBe(403);
    expect((await client.post('/console/orgs/acme/policies', { intent: 'save', document: '{"rules":[]}' })).status).toBe(403);
    expect((await client.post('/console/orgs', { slug: 'sneaky', name: 'Sneaky' })).status).toBe(403);
    const replays = await client.get('/console/orgs/acme/replays');
    expect(replays.text).not.toContain('Start replay');
    expect((await client.post('/console/orgs/acme/replays', { mode: 'rebuild', reason: 'INC-9: forged' })).status).toBe(403);
    const after = await t.request('GET', `/v1/orgs/acme/directives/${directive.id}`, { key: keys.admin });
    expect(after.body.directive.status).toBe('awaiting_approval');
  });

  it('answers 404 for another org in the path, by slug or id', async () => {
    const client = await signedIn(t, keys.other);
    expect((await client.get('/console/orgs/acme/signals')).status).toBe(404);
    expect((await client.get(`/console/orgs/${acme.id}/approvals`)).status).toBe(404);
    expect((await client.get('/console/orgs/globex/signals')).status).toBe(200);
    const directive = await heldDirective(t, acme);
    expect((await client.get(`/console/orgs/globex/signals/sig_${'0'.repeat(20)}`)).status).toBe(404);
    expect((await client.post(`/console/orgs/acme/directives/${directive.id}/decide`, { action: 'approve' })).status).toBe(404);
    expect((await client.post(`/console/orgs/globex/directives/${directive.id}/decide`, { action: 'approve' })).status).toBe(404);
    expect((await client.get('/console/orgs')).status).toBe(403);
  });

  it('answers 404 for another org’s directive and execution pages, and for their actions', async () => {
    const directive = await heldDirective(t, acme);
    const execution = await failedExecution(t, acme);
    const own = await signedIn(t, keys.operator);
    expect((await own.get(`/console/orgs/acme/directives/${directive.id}`)).status).toBe(200);
    expect((await own.get(`/console/orgs/acme/executions/${execution.id}`)).status).toBe(200);
    const other = await signedIn(t, keys.other);
    for (const path of [
      `/console/orgs/globex/directives/${directive.id}`,
      `/console/orgs/acme/directives/${directive.id}`,
      `/console/orgs/globex/executions/${execution.id}`,
      `/console/orgs/acme/executions/${execution.id}`,
      `/console/orgs/globex/directives/not-an-id`,
    ]) {
      const response = await other.get(path);
      expect(response.status, path).toBe(404);
      expect(response.text).not.toContain('noop.record');
      expect(response.text).not.toContain('always fails');
    }
    expect((await other.post(`/console/orgs/globex/executions/${execution.id}/retry`, {})).status).toBe(404);
    expect((await other.post(`/console/orgs/acme/executions/${execution.id}/retry`, {})).status).toBe(404);
    const after = await t.request('GET', `/v1/orgs/acme/executions/${execution.id}`, { key: keys.admin });
    expect(after.body.execution.status).toBe('failed');
  });

  it('lets a platform admin list orgs with their migration status and create one', async () => {
    const client = await signedIn(t, t.platformKey);
    const list = await client.get('/console/orgs');
    expect(list.status).toBe(200);
    expect(list.text).toContain('acme');
    expect(list.text).toMatch(/current \(v\d+\)/);
    const created = await client.post('/console/orgs', { slug: 'initech', name: 'Initech <b>' });
    expect(created.status).toBe(303);
    const after = await client.get('/console/orgs');
    expect(after.text).toContain('Initech &lt;b&gt;');
  });
});

describe('console directive and execution pages', () => {
  it('shows a directive’s kind, params, decision with its rule, approver, expiry, status history and executions', async () => {
    const directive = await heldDirective(t, acme, { params: { note: '<b>bold</b>' } });
    const operator = await signedIn(t, keys.operator);
    const waiting = await operator.get(`/console/orgs/acme/directives/${directive.id}`);
    expect(waiting.status).toBe(200);
    expect(waiting.text).toContain('noop.record');
    expect(waiting.text).toContain('&lt;b&gt;bold&lt;/b&gt;');
    expect(waiting.text).toContain('<code>hold</code>');
    expect(waiting.text).toContain('held for review');
    expect(waiting.text).toContain(`datetime="${directive.expires_at}"`);
    expect(waiting.text).toContain('directive.proposed');
    expect(waiting.text).toContain('>Approve<');
    const inbox = await operator.get('/console/orgs/acme/approvals');
    expect(inbox.text).toContain(`href="/console/orgs/acme/directives/${directive.id}"`);
    const decided = await operator.post(`/console/orgs/acme/directives/${directive.id}/decide`, { action: 'reject', reason: 'INC-4: not now', back: 'directive' });
    expect(decided.status).toBe(303);
    expect(decided.headers.get('location')).toBe(`/console/orgs/acme/directives/${directive.id}?notice=rejected`);
    const page = await operator.get(`/console/orgs/acme/directives/${directive.id}?notice=rejected`);
    expect(page.text).toContain('Directive rejected.');
    expect(page.text).toContain('human: operator@acme.test');
    expect(page.text).toContain('INC-4: not now');
    expect(page.text).toMatch(/directive\.proposed[\s\S]*directive\.rejected/);
    expect(page.text).not.toContain('>Approve<');
    const viewer = await signedIn(t, keys.viewer);
    const list = await viewer.get('/console/orgs/acme/directives');
    expect(list.text).toContain(`href="/console/orgs/acme/directives/${directive.id}"`);
  });

  it('does not offer an expired directive for approval, and the server refuses one', async () => {
    let shift = 0;
    const clock = await createTestApp({ now: () => new Date(Date.now() - shift) });
    try {
      const org = await clock.createOrg('acme');
      const operator = await clock.createKey(org, 'operator');
      await setPolicy(clock, org, { rules: [{ id: 'hold', match: 'noop.*', effect: 'require_approval', approval_ttl_seconds: 60 }] });
      // Proposed "61 s ago": its window closed a second before now.
      shift = 61_000;
      const directive = await heldDirective(clock, org);
      shift = 0;
      const client = await signedIn(clock, operator);
      const inbox = await client.get('/console/orgs/acme/approvals');
      expect(inbox.text).toContain(directive.id);
      expect(inbox.text).toMatch(/class="countdown expired"[^>]*>expired</);
      expect(inbox.text).toContain('can no longer be approved');
      expect(inbox.text).not.toContain('>Approve<');
      const page = await client.get(`/console/orgs/acme/directives/${directive.id}`);
      expect(page.text).toContain('no longer approvable');
      expect(page.text).not.toContain('>Approve<');
      const forced = await client.post(`/console/orgs/acme/directives/${directive.id}/decide`, { action: 'approve' });
      expect(forced.status).toBe(409);
    } finally {
      await clock.close();
    }
  });

  it('shows a failed execution’s attempts and error with a retry for an operator, not for a viewer', async () => {
    const execution = await failedExecution(t, acme);
    const viewer = await signedIn(t, keys.viewer);
    const seen = await viewer.get(`/console/orgs/acme/executions/${execution.id}`);
    expect(seen.status).toBe(200);
    expect(seen.text).toContain('test.always_fails');
    expect(seen.text).toContain('this handler always fails');
    expect(seen.text).toContain('execution.failed');
    expect(seen.text).toMatch(/<td>1<\/td>[\s\S]*failed/);
    expect(seen.text).not.toContain(`Retry ${execution.id}`);
    expect((await viewer.post(`/console/orgs/acme/executions/${execution.id}/retry`, { back: 'execution' })).status).toBe(403);
    const list = await viewer.get('/console/orgs/acme/executions');
    expect(list.text).toContain(`href="/console/orgs/acme/executions/${execution.id}"`);
    const operator = await signedIn(t, keys.operator);
    const page = await operator.get(`/console/orgs/acme/executions/${execution.id}`);
    expect(page.text).toContain(`Retry ${execution.id}`);
    const retried = await operator.post(`/console/orgs/acme/executions/${execution.id}/retry`, { back: 'execution' });
    expect(retried.status).toBe(303);
    expect(retried.headers.get('location')).toBe(`/console/orgs/acme/executions/${execution.id}?notice=retried`);
    const after = await operator.get(`/console/orgs/acme/executions/${execution.id}?notice=retried`);
    expect(after.text).toContain('execution.retry_requested');
    expect(after.text).toContain('Execution queued for another attempt.');
  });
});

describe('console installations', () => {
  it('lists an installation for every role; only an admin gets its actions and deliveries, and a viewer’s forged action is 403', async () => {
    const installed = await t.request('POST', '/v1/orgs/acme/installations', { key: keys.admin, body: { package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: RELAY_SECRETS } });
    expect(installed.status).toBe(202);
    const id = installed.body.installation.id as string;
    const viewer = await signedIn(t, keys.viewer);
    expect((await viewer.get('/console/orgs/acme/installations')).text).toContain(id);
    const page = await viewer.get(`/console/orgs/acme/installations/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('webhook-relay');
    expect(page.text).not.toContain('Inbound deliveries');
    expect(page.text).not.toContain(RELAY_SECRETS.inbound_hmac_secret);
    expect((await viewer.post(`/console/orgs/acme/installations/${id}/disable`, {})).status).toBe(403);
    const admin = await signedIn(t, keys.admin);
    const detail = await admin.get(`/console/orgs/acme/installations/${id}`);
    expect(detail.text).toContain('Inbound deliveries');
    expect(detail.text).not.toContain(RELAY_SECRETS.inbound_hmac_secret);
    const other = await signedIn(t, keys.other);
    expect((await other.get(`/console/orgs/globex/installations/${id}`)).status).toBe(404);
  });

  it('installs a package through a form generated from its config schema, with the schema’s errors when it does not fit', async () => {
    const admin = await signedIn(t, keys.admin);
    const list = await admin.get('/console/orgs/globex/installations');
    expect(list.status).toBe(404);
    const other = await signedIn(t, keys.other);
    const form = await other.get('/console/orgs/globex/installations/new?package=webhook-relay&version=1.0.1');
    expect(form.status).toBe(200);
    expect(form.text).toContain('name="config.endpoint_url"');
    expect(form.text).toContain('name="config.send_test_ping"');
    expect(form.text).toContain('name="secret.inbound_hmac_secret"');
    const refused = await other.post('/console/orgs/globex/installations/new?package=webhook-relay&version=1.0.1', { 'config.endpoint_url': 'ftp://nope' });
    expect(refused.status).toBe(422);
    expect(refused.text).toContain('/config/endpoint_url');
    const installed = await other.post('/console/orgs/globex/installations/new?package=webhook-relay&version=1.0.1', {
      'config.endpoint_url': RELAY_CONFIG.endpoint_url,
      'config.forward_types': 'a.b, c.d',
      'secret.inbound_hmac_secret': RELAY_SECRETS.inbound_hmac_secret,
      'secret.webhook_signing_secret': RELAY_SECRETS.webhook_signing_secret,
    });
    expect(installed.status).toBe(303);
    const id = /installations\/(ins_[A-Za-z0-9]+)/.exec(installed.headers.get('location')!)![1]!;
    const api = await t.request('GET', `/v1/orgs/globex/installations/${id}`, { key: keys.other });
    expect(api.body.installation.config).toEqual({ endpoint_url: RELAY_CONFIG.endpoint_url, forward_types: ['a.b', 'c.d'], send_test_ping: false });
    const viewer = await signedIn(t, keys.viewer);
    expect((await viewer.get('/console/orgs/acme/installations/new?package=webhook-relay&version=1.0.1')).status).toBe(403);
  });
});

describe('console rendering', () => {
  it('escapes payloads and sets a CSP without inline scripts that forbids framing', { timeout: 90_000 }, async () => {
    const hostile = { body: '<script>window.owned=1</script>', attr: '"><img src=x onerror=alert(1)>' };
    const emitted = await t.request('POST', '/v1/orgs/acme/signals', { key: keys.operator, body: { type: 'forum.post.created', subject: '<i>s</i>', payload: hostile } });
    expect(emitted.status).toBe(201);
    const client = await signedIn(t, keys.viewer);
    // The list reads below the visibility horizon: wait for the signal to be listed.
    await waitFor(async () => (await client.get('/console/orgs/acme/signals?type=forum.*')).text.includes(emitted.body.signal.id), 75_000, 'the signal to be listed');
    for (const path of ['/console/orgs/acme/signals', `/console/orgs/acme/signals/${emitted.body.signal.id}`]) {
      const page = await client.get(path);
      expect(page.status).toBe(200);
      expect(page.text).not.toContain('<script>window.owned');
      expect(page.text).not.toContain('<img src=x');
      expect(page.text).toContain('&lt;script&gt;window.owned=1&lt;/script&gt;');
      const csp = page.headers.get('content-security-policy')!;
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).toContain("frame-ancestors 'none'");
      expect(page.headers.get('cache-control')).toBe('no-store');
      expect(page.text).not.toMatch(/<script>(?!<\/script>)|<script(?![^>]*\bsrc=)[^>]*>/);
    }
  });
});
