/**
 * The console's single directive and execution pages, the approvals
 * countdown running out, the main journeys walked with the keyboard alone,
 * and every view at 1280 px and at 375 px checked with axe-core and
 * screenshotted — in a real Chromium with the console's CSP in force.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import type { Tenant } from '../../src/core/tenant.ts';
import { checkPage, chromiumAvailable, consoleBrowser, pageFaults, screenshot, type ConsoleBrowser } from '../support/browser.ts';
import { alwaysFails, failedExecution, heldDirective, setPolicy } from '../support/fanout.ts';
import { createTestApp, listen, waitFor, type TestApp } from '../support/harness.ts';

let t: TestApp;
let server: Awaited<ReturnType<typeof listen>>;
let browser: ConsoleBrowser;
let acme: Tenant;
let keys: { viewer: string; operator: string; admin: string };
/** How far behind the wall clock the app's clock runs: set while proposing a directive that should expire soon. */
let clockShiftMs = 0;

const browserTests = chromiumAvailable();

/** `short` directives wait 60 s for approval (the least a rule may set); `hold` ones the default. */
const POLICY = {
  rules: [
    { id: 'hold-short', match: 'noop.record', when: 'has(params.short)', effect: 'require_approval', reason: 'held briefly', approval_ttl_seconds: 60 },
    { id: 'hold', match: 'noop.record', when: 'has(params.hold)', effect: 'require_approval', reason: 'held for review' },
    { id: 'allow-noop', match: 'noop.*', effect: 'allow' },
  ],
};

beforeAll(async () => {
  if (!browserTests) return;
  t = await createTestApp({ handlers: [alwaysFails], now: () => new Date(Date.now() - clockShiftMs) });
  server = await listen(t.app, t.config);
  browser = await consoleBrowser(server.url);
  acme = await t.createOrg('acme');
  keys = { viewer: await t.createKey(acme, 'viewer'), operator: await t.createKey(acme, 'operator'), admin: await t.createKey(acme, 'admin') };
  await setPolicy(t, acme, POLICY);
});
afterEach(async () => {
  await browser?.closePages();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await t?.close();
});

/** A directive whose approval window closes `inMs` from now (the app's clock is set back while it is proposed). */
async function expiringDirective(inMs: number) {
  clockShiftMs = 60_000 - inMs;
  try {
    return await heldDirective(t, acme, { params: { short: true } });
  } finally {
    clockShiftMs = 0;
  }
}

/**
 * Where focus is, read in one round trip: null when the body holds it; else
 * what has it (for a failure message), whether it shows a focus indicator
 * (an outline or a box shadow), and whether it matches `selector`.
 */
const focusOf = (selector: string) => `(() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const style = getComputedStyle(element);
  const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2;
  return {
    focused: element.tagName.toLowerCase() + ' ' + (element.getAttribute('name') ?? '') + ' ' + (element.textContent ?? '').trim().slice(0, 40)
      + ' (outline ' + style.outlineStyle + ' ' + style.outlineWidth + ') at ' + location.pathname + location.search,
    visible: outline || (style.boxShadow !== 'none' && style.boxShadow !== ''),
    matches: element.matches(${JSON.stringify(selector)}),
  };
})()`;

/** Tabs until the focused element matches `selector`, checking that every stop along the way shows its focus. */
async function tabTo(page: Page, selector: string, { max = 80, backwards = false } = {}): Promise<void> {
  const probe = focusOf(selector);
  for (let step = 0; step < max; step++) {
    await page.keyboard.press(backwards ? 'Shift+Tab' : 'Tab');
    const focus = (await page.evaluate(probe)) as { focused: string; visible: boolean; matches: boolean } | null;
    // Past the last control focus leaves the page (the body holds it) before wrapping around.
    if (!focus) continue;
    expect(focus.visible, `focus is visible on ${focus.focused}`).toBe(true);
    if (focus.matches) return;
  }
  throw new Error(`Tab never reached ${selector}`);
}

describe.runIf(browserTests)('console pages in Chromium', () => {
  it('opens a directive from the inbox and approves it there; an execution from the trace and retries it', { timeout: 90_000 }, async () => {
    const directive = await heldDirective(t, acme, { params: { hold: true, note: '<em>ship</em>' } });
    const execution = await failedExecution(t, acme);
    const { page, problems } = await browser.as(keys.operator);

    await page.goto(`${server.url}/console/orgs/acme/approvals`);
    await page.locator('article', { hasText: directive.id }).getByRole('link', { name: 'noop.record' }).click();
    await page.waitForURL(new RegExp(`/directives/${directive.id}$`));
    const facts = page.locator('dl.facts');
    await expect(facts.textContent()).resolves.toMatch(/Decided by rule\s*hold/);
    await expect(facts.textContent()).resolves.toContain('held for review');
    await expect(page.locator('pre.json').first().textContent()).resolves.toContain('<em>ship</em>');
    await expect(page.getByRole('table', { name: 'Status history' }).textContent()).resolves.toContain('directive.proposed');
    await page.getByLabel('Reason').fill('INC-2: fine');
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByText('Directive approved.').waitFor();
    await expect(facts.textContent()).resolves.toContain('human: operator@acme.test — “INC-2: fine”');
    await expect(page.getByRole('table', { name: 'Status history' }).textContent()).resolves.toContain('directive.approved');
    await checkPage(page, 'directive');

    await page.goto(`${server.url}/console/orgs/acme/signals/${execution.signal_id}`);
    await page.locator('ul.trace').getByRole('link', { name: execution.id }).click();
    await page.waitForURL(new RegExp(`/executions/${execution.id}$`));
    await expect(page.getByRole('table', { name: 'Attempts' }).textContent()).resolves.toContain('this handler always fails');
    await checkPage(page, 'execution-failed');
    await page.getByRole('button', { name: `Retry ${execution.id}` }).click();
    await page.getByText('Execution queued for another attempt.').waitFor();
    await expect(page.getByRole('table', { name: 'Lifecycle signals' }).textContent()).resolves.toContain('execution.retry_requested');
    expect(problems).toEqual([]);
  });

  it('counts an approval down live and, past its expiry, shows it expired and offers no approval', { timeout: 90_000 }, async () => {
    const { page, problems } = await browser.as(keys.operator);
    // Signed in first: the window runs from the proposal, and a loaded machine is slow to open pages.
    const directive = await expiringDirective(10_000);
    await page.goto(`${server.url}/console/orgs/acme/approvals`);
    const card = page.locator('article', { hasText: directive.id });
    const countdown = card.locator('time.countdown');
    const first = await countdown.textContent();
    expect(first).toMatch(/^expires in 0 min \d{1,2} s$/);
    // The served script ticks it: the text changes within a couple of seconds without a reload.
    await waitFor(async () => (await countdown.textContent()) !== first, 3_000, 'the countdown to tick');
    await screenshot(page, 'approvals-countdown');
    await waitFor(async () => (await countdown.textContent()) === 'expired', 30_000, 'the countdown to reach expiry');
    expect(await card.getByRole('button', { name: 'Approve' }).isDisabled()).toBe(true);
    expect(await card.getByRole('button', { name: 'Reject' }).isDisabled()).toBe(true);
    await expect(card.locator('.expired-note').textContent()).resolves.toContain('can no longer be approved');
    await checkPage(page, 'approvals-expired');
    // Served again, the page itself says so, with no form.
    await page.reload();
    await expect(card.locator('time.countdown').textContent()).resolves.toBe('expired');
    expect(await card.getByRole('button', { name: 'Approve' }).count()).toBe(0);
    const api = await t.request('POST', `/v1/orgs/acme/directives/${directive.id}/approve`, { key: keys.operator, body: {} });
    expect(api.status).toBe(409);
    expect(problems).toEqual([]);
  });

  it('walks the journeys with the keyboard alone: skip link, landmarks, nav, filters, approve with a reason', { timeout: 120_000 }, async () => {
    const directive = await heldDirective(t, acme, { params: { hold: true, by: 'keyboard' } });
    const { page, problems } = await browser.open();
    await page.goto(`${server.url}/console`);

    // Sign in: the skip link first, then the key field, Enter submits.
    await tabTo(page, 'a.skip', { max: 1 });
    expect(await page.locator('a.skip').boundingBox()).toMatchObject({ x: expect.any(Number) });
    expect((await page.locator('a.skip').boundingBox())!.x).toBeGreaterThanOrEqual(0);
    await tabTo(page, 'input[name="api_key"]');
    await page.keyboard.type(keys.operator);
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/signals$/);

    // Landmarks, and the skip link moving focus into the main content.
    expect(await page.getByRole('banner').count()).toBe(1);
    expect(await page.getByRole('navigation', { name: 'Console' }).count()).toBe(1);
    expect(await page.getByRole('main').count()).toBe(1);
    await tabTo(page, 'a.skip', { max: 1 });
    await page.keyboard.press('Enter');
    expect(await page.evaluate('document.activeElement?.id')).toBe('main');

    // A filter on the signals page, typed and submitted with Enter.
    await tabTo(page, 'input[name="type"]');
    await page.keyboard.type('test.*');
    await page.keyboard.press('Enter');
    await page.waitForURL(/type=test\.\*/);
    expect(await page.locator('input[name="type"]').inputValue()).toBe('test.*');

    // The directives filter: a select changed with the arrow keys, the Filter button pressed with Space.
    await tabTo(page, 'nav a[href$="/directives"]');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/directives$/);
    await tabTo(page, 'select[name="status"]');
    await page.keyboard.press('ArrowDown');
    expect(await page.locator('select[name="status"]').inputValue()).toBe('awaiting_approval');
    await tabTo(page, 'form.filters button');
    await page.keyboard.press('Space');
    await page.waitForURL(/status=awaiting_approval/);
    // Into a directive's page with Enter on its link, and back to the inbox through the nav.
    await tabTo(page, `a[href$="/directives/${directive.id}"]`);
    await page.keyboard.press('Enter');
    await page.waitForURL(new RegExp(`/directives/${directive.id}$`));
    await tabTo(page, 'nav a[href$="/approvals"]', { backwards: true });
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/approvals$/);

    // Approve with a reason: type it, Tab to Approve, press Space.
    await tabTo(page, `#reason-${directive.id}`);
    await page.keyboard.type('INC-3: checked by keyboard');
    await tabTo(page, `form[action$="/${directive.id}/decide"] button[value="approve"]`, { max: 1 });
    await page.keyboard.press('Space');
    await page.getByText('Directive approved.').waitFor();
    const after = await t.request('GET', `/v1/orgs/acme/directives/${directive.id}`, { key: keys.admin });
    expect(after.body.directive.decided_by.id).toBe('operator@acme.test');
    expect(after.body.directive.decision_reason).toBe('INC-3: checked by keyboard');

    // A payload opened with the keyboard.
    await tabTo(page, 'nav a[href$="/signals"]', { backwards: true });
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/signals$/);
    // The log reads below the visibility horizon: reload until the approval's signals are listed.
    await waitFor(async () => (await page.reload(), (await page.locator('details summary').count()) > 0), 60_000, 'signals to be listed');
    await tabTo(page, 'details summary');
    await page.keyboard.press('Enter');
    expect(await page.locator('details').first().getAttribute('open')).not.toBeNull();
    expect(problems).toEqual([]);
  });

  it('passes axe-core at 1280 px and at 375 px on every view, without sideways scrolling on a phone', { timeout: 240_000 }, async () => {
    const directive = await heldDirective(t, acme, { params: { hold: true, body: 'x'.repeat(300) } });
    const execution = await failedExecution(t, acme, { long: 'y'.repeat(300) });
    const replay = await t.request('POST', '/v1/orgs/acme/replays', { key: keys.admin, body: { mode: 'rebuild', reason: 'INC-8: views', dry_run: true } });
    expect(replay.status).toBeLessThan(300);
    const org = '/console/orgs/acme';
    const views: Array<[string, string]> = [
      ['signals', `${org}/signals`],
      ['signal', `${org}/signals/${execution.signal_id}`],
      ['approvals', `${org}/approvals`],
      ['directives', `${org}/directives`],
      ['directive', `${org}/directives/${directive.id}`],
      ['executions', `${org}/executions`],
      ['execution', `${org}/executions/${execution.id}`],
      ['policies', `${org}/policies`],
      ['secrets', `${org}/secrets`],
      ['installations', `${org}/installations`],
      ['replays', `${org}/replays`],
      ['replay', `${org}/replays/${replay.body.replay.id}`],
    ];
    // Each view once, checked at 1280 px and then resized to 375 px.
    const failures: string[] = [];
    const admin = await browser.as(keys.admin);
    for (const [name, path] of views) {
      const response = await admin.page.goto(`${server.url}${path}`);
      expect(response!.status(), path).toBe(200);
      failures.push(...(await pageFaults(admin.page, `views/${name}-1280`, { phone: `views/${name}-375` })));
    }
    const platform = await browser.as(t.platformKey);
    await platform.page.goto(`${server.url}/console/orgs`);
    failures.push(...(await pageFaults(platform.page, 'views/orgs-1280', { phone: 'views/orgs-375' })));
    const anonymous = await browser.open();
    await anonymous.page.goto(`${server.url}/console/sign-in`);
    failures.push(...(await pageFaults(anonymous.page, 'views/sign-in-1280', { phone: 'views/sign-in-375' })));
    expect([...admin.problems, ...platform.problems, ...anonymous.problems]).toEqual([]);
    expect(failures).toEqual([]);
  });
});
