/**
 * A real Chromium for the console's browser tests: Debian's `chromium`
 * package at /usr/bin/chromium (`.ci/run` installs it). Without one,
 * `npm test` says plainly that it skipped them — unless
 * SIGNALBUS_REQUIRE_CHROMIUM=1 (set by `.ci/run`), where a missing browser
 * fails the suite. Screenshots go under
 * test-output/console/. axe-core is evaluated through the DevTools protocol,
 * which the page's CSP does not govern, so the page keeps its real CSP.
 *
 * One Chromium per test file and a fresh context per page: a context is
 * cheap, a browser launch is not. A role signs in through the form once per
 * file; its later pages start from that session's cookies.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { expect } from 'vitest';

export const CHROMIUM = process.env.SIGNALBUS_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOTS = path.resolve('test-output/console');

export interface Viewport {
  width: number;
  height: number;
}
export const WIDE: Viewport = { width: 1280, height: 900 };
export const PHONE: Viewport = { width: 375, height: 812 };

/** Whether the browser tests run here; says why not when they do not. */
export function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.SIGNALBUS_REQUIRE_CHROMIUM === '1') return true; // launchChromium fails, loudly
  console.warn(`SKIPPED the console's browser tests: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set SIGNALBUS_CHROMIUM)`);
  return false;
}

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium) to run the console's browser tests`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** Collects the page's CSP violations and script errors: a console page must cause none. */
export function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('dialog', (dialog) => {
    problems.push(`dialog opened: ${dialog.message()}`);
    void dialog.dismiss();
  });
  return problems;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

const require = createRequire(import.meta.url);
let axeSource: Promise<string> | undefined;

/**
 * axe-core's serious and critical violations on the current page. axe is
 * injected once per document; only violations are collected (all rules still
 * run — passes and incomplete results are what it skips building).
 */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  axeSource ??= readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
  if (!(await page.evaluate(`typeof axe !== 'undefined'`))) await page.evaluate(await axeSource);
  const violations = (await page.evaluate(`axe.run({ resultTypes: ['violations'] }).then((result) => result.violations.map((violation) => ({
    id: violation.id, impact: violation.impact, targets: violation.nodes.map((node) => JSON.stringify(node.target)),
  })))`)) as Array<{ id: string; impact: string | null; targets: string[] }>;
  return violations.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical').map((violation) => `${violation.id} (${violation.impact}): ${violation.targets.join(', ')}`);
}

/** The elements reaching past the viewport's right edge, outside the regions that scroll sideways on purpose. */
const OVERFLOWING = `[...document.querySelectorAll('body *')]
  .filter((element) => !element.closest('.scroll') && element.getBoundingClientRect().right > window.innerWidth + 1)
  .map((element) => element.tagName.toLowerCase() + (element.id ? '#' + element.id : '') + (element.className ? '.' + element.className : ''))`;

/** What is wrong with the page as it stands: axe-core's serious and critical violations and sideways scrolling; a screenshot named `shot`. */
async function faultsHere(page: Page, shot: string, elements: boolean): Promise<string[]> {
  const width = page.viewportSize()?.width;
  const faults = (await accessibilityViolations(page)).map((violation) => `${shot} @${width}: ${violation}`);
  const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
  if (overflow > 1) faults.push(`${shot} @${width}: scrolls sideways by ${overflow} px`);
  if (elements) for (const element of (await page.evaluate(OVERFLOWING)) as string[]) faults.push(`${shot} @${width}: ${element} sticks out`);
  await screenshot(page, shot);
  return faults;
}

/**
 * Checks the page at its viewport and, given `phone` (that screenshot's
 * name), again at 375 px wide, where no element but the `.scroll` regions
 * may reach past the edge: axe-core finds nothing serious or critical,
 * nothing scrolls sideways, and a screenshot of each is kept. Returns the
 * faults found, empty when there are none.
 */
export async function pageFaults(page: Page, shot: string, { phone }: { phone?: string } = {}): Promise<string[]> {
  const faults = await faultsHere(page, shot, false);
  if (!phone) return faults;
  const viewport = page.viewportSize();
  await page.setViewportSize(PHONE);
  try {
    faults.push(...(await faultsHere(page, phone, true)));
  } finally {
    if (viewport) await page.setViewportSize(viewport);
  }
  return faults;
}

/** Fails the test on any of `pageFaults`. */
export async function checkPage(page: Page, shot: string, options: { phone?: string } = {}): Promise<void> {
  expect(await pageFaults(page, shot, options)).toEqual([]);
}

/** A page of its own context, with the CSP violations and script errors it causes. */
export interface OpenPage {
  page: Page;
  context: BrowserContext;
  problems: string[];
}

/** One Chromium for a test file, against the console served at `url`. */
export interface ConsoleBrowser {
  browser: Browser;
  /** A page in a fresh context: no cookies, or those of `session`. */
  open(options?: { viewport?: Viewport; session?: Awaited<ReturnType<BrowserContext['storageState']>> }): Promise<OpenPage>;
  /** Signs in through the sign-in form, as a person does, into a new session. */
  signIn(key: string, viewport?: Viewport): Promise<OpenPage>;
  /** A page signed in with `key`: through the form the first time, then in that session's cookies. */
  as(key: string, viewport?: Viewport): Promise<OpenPage>;
  /** Closes the pages opened so far (the browser stays). */
  closePages(): Promise<void>;
  close(): Promise<void>;
}

export async function consoleBrowser(url: string): Promise<ConsoleBrowser> {
  const browser = await launchChromium();
  const contexts: BrowserContext[] = [];
  const sessions = new Map<string, Awaited<ReturnType<BrowserContext['storageState']>>>();
  const consoleBrowser: ConsoleBrowser = {
    browser,
    async open({ viewport = WIDE, session } = {}) {
      const context = await browser.newContext({ viewport, ...(session ? { storageState: session } : {}) });
      contexts.push(context);
      const page = await context.newPage();
      return { page, context, problems: watchProblems(page) };
    },
    async signIn(key, viewport) {
      const opened = await consoleBrowser.open({ viewport });
      await opened.page.goto(`${url}/console`);
      await opened.page.getByLabel('API key').fill(key);
      await opened.page.getByRole('button', { name: 'Sign in' }).click();
      await opened.page.waitForURL(/\/console\/orgs/);
      return opened;
    },
    async as(key, viewport) {
      const session = sessions.get(key);
      if (session) return consoleBrowser.open({ viewport, session });
      const opened = await consoleBrowser.signIn(key, viewport);
      sessions.set(key, await opened.context.storageState());
      return opened;
    },
    async closePages() {
      for (const context of contexts.splice(0)) await context.close().catch(() => {});
    },
    async close() {
      await consoleBrowser.closePages();
      await browser.close();
    },
  };
  return consoleBrowser;
}
