/**
 * `signalbus replay …` as a process against a database whose worker runs in
 * this test: rebuild followed to the end (plain progress lines on a pipe, the
 * replay as JSON with --json), list and show, a refused request and a
 * cancelled replay exit 1.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { cancelReplay } from '../../src/replay/verbs.ts';
import { cliScript, exitWithin, spawnCollected, stopChildren, waitForOutput } from '../support/cli-process.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { seedLifecycles } from '../support/lifecycles.ts';
import { ctxOf } from '../replay/support.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let CLI: string;

let t: TestApp;
let org: Tenant;

const spawnCli = (args: string[]) =>
  spawnCollected(process.execPath, [CLI, 'replay', ...args], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: t.database.url, LOG_LEVEL: 'warn', SIGNALBUS_REPLAY_PAGE_SIZE: '50' },
  });
async function cli(args: string[]) {
  const spawned = spawnCli(args);
  const { code } = await exitWithin(spawned, 90_000);
  return { code, stdout: spawned.stdout, stderr: spawned.stderr };
}

beforeAll(async () => {
  CLI = await cliScript();
  t = await createTestApp({ env: { SIGNALBUS_REPLAY_PAGE_SIZE: '50' } });
  org = await t.createOrg('cli_replay');
  await seedLifecycles(t, org, 100);
  await t.startWorker({ concurrency: 2, pollIntervalMs: 50 });
}, 60_000);
afterAll(async () => {
  await stopChildren();
  await t?.close();
});

describe('signalbus replay', () => {
  it('rebuild --json follows the replay and prints it, attributed to --actor; exit 0', async () => {
    const { code, stdout, stderr } = await cli(['rebuild', '--org', org.slug, '--reason', 'INC-9: after the fix', '--actor', 'sam@support.test', '--json']);
    expect(code, stderr).toBe(0);
    const { replay } = JSON.parse(stdout);
    expect(replay).toMatchObject({ status: 'succeeded', mode: 'rebuild', reason: 'INC-9: after the fix', actor: { id: 'sam@support.test' } });
    expect(replay.report.drift.directives).toMatchObject({ added: 0, removed: 0, changed: 0 });
    // Not a terminal: plain progress lines, on stderr since stdout carries the JSON.
    expect(stderr).toMatch(new RegExp(`${replay.id} succeeded [\\d,]+/[\\d,]+ \\(100%\\)`));

    const listed = await cli(['list', '--org', org.slug, '--status', 'succeeded', '--json']);
    expect(JSON.parse(listed.stdout).data.map((row: { id: string }) => row.id)).toContain(replay.id);
    const shown = await cli(['show', replay.id, '--org', org.slug]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`${replay.id} rebuild succeeded`);
    expect(shown.stdout).toMatch(/directives: 100 rows, drift \+0 -0 ~0/);
  });

  it('prints plain lines without --json; a cancelled replay exits 1', async () => {
    const spawned = spawnCli(['rebuild', '--org', org.slug, '--reason', 'INC-10', '--rate', '40']);
    const id = await waitForOutput(spawned, (out) => /(rpl_\w+) running [\d,]+\/[\d,]+/.exec(out)?.[1], 'the replay to report progress');
    await cancelReplay(t.app.deps.bus.replays, { ctx: ctxOf(org), input: { id, role: 'support', reason: 'enough' } });
    const { code } = await exitWithin(spawned, 60_000);
    expect(code).toBe(1);
    expect(spawned.stdout).toContain(`${id} requested`);
    expect(spawned.stdout).toMatch(new RegExp(`${id} running [\\d,]+/[\\d,]+`));
    expect(spawned.stdout).toContain(`${id} rebuild cancelled`);
  });

  it('a refused request exits 1 with the problem', async () => {
    const { code, stdout } = await cli(['as-of', '--org', org.slug, '--reason', 'T-1', '--until', 'nonsense', '--json']);
    expect(code).toBe(1);
    expect(JSON.parse(stdout).error.code).toBe('validation_failed');
    const missing = await cli(['rebuild', '--org', 'no_such_org', '--reason', 'INC-11']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('organization no_such_org not found');
  });
});
