/**
 * A real Chromium for the console's browser tests: Debian's `chromium`
 * package at /usr/bin/chromium (`.ci/run` installs it). Without one,
 * `npm test` says plainly that it skipped them — unless
 * SIGNALBUS_REQUIRE_CHROMIUM=1 (set by `.ci/run`), where a missing browser
 * fails the suite. Screenshots go under
 * test-output/console/. axe-core is evaluated through the DevTools protocol,
 * which the page's CSP does not govern, so the page keeps its real CSP.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env.SIGNALBUS_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOTS = path.resolve('test-output/console');

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

/** axe-core's serious and critical violations on the current page. */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  axeSource ??= readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
  await page.evaluate(await axeSource);
  const violations = (await page.evaluate(`axe.run().then((result) => result.violations.map((violation) => ({
    id: violation.id, impact: violation.impact, targets: violation.nodes.map((node) => JSON.stringify(node.target)),
  })))`)) as Array<{ id: string; impact: string | null; targets: string[] }>;
  return violations.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical').map((violation) => `${violation.id} (${violation.impact}): ${violation.targets.join(', ')}`);
}
