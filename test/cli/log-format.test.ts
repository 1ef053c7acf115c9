/**
 * Log lines a person reads at a terminal, JSON everywhere else: the same
 * logger, spawned once with a pipe for stdout and once under a pseudo-terminal
 * (`script`).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { logFormat } from '../../src/telemetry/logger.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOG_ONE_LINE = `import('./src/telemetry/logger.ts').then(({ createLogger }) => createLogger('info').info({ org: 'acme' }, 'hello from signalbus'))`;
const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

describe('log format', () => {
  it('is pretty for a terminal and JSON otherwise', () => {
    expect(logFormat({ isTTY: true })).toBe('pretty');
    expect(logFormat({ isTTY: false })).toBe('json');
    expect(logFormat({})).toBe('json');
  });

  it('writes one JSON object per line when stdout is a pipe', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', LOG_ONE_LINE], { cwd: ROOT, encoding: 'utf8' });
    const line = JSON.parse(out.trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 30, service: 'signalbus', org: 'acme', msg: 'hello from signalbus' });
  }, 60_000);

  it.skipIf(!hasScript)('writes readable lines when stdout is a terminal', () => {
    const command = [process.execPath, '--import', 'tsx', '-e', JSON.stringify(LOG_ONE_LINE)].join(' ');
    const out = execFileSync('script', ['-qec', command, '/dev/null'], { cwd: ROOT, encoding: 'utf8' });
    const plain = out.replace(/\u001b\[[0-9;]*m/g, '').trim();
    expect(plain).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: hello from signalbus/);
    expect(plain).toContain('org: "acme"');
    expect(plain).not.toContain('{"level"');
  }, 60_000);
});
