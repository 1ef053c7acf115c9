/**
 * The registry on disk: integrity of published versions, and the CLI's
 * check, publish and yank on a temporary copy of the shipped registry. The
 * commands run in process (their --json output captured); one run of the
 * real binary proves the exit status CI relies on.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runRegistryCheck, runRegistryPublish, runRegistryYank } from '../../src/cli/registry.ts';
import { parseConfig } from '../../src/config.ts';
import { DomainError } from '../../src/core/errors.ts';
import { builtinExecutors } from '../../src/executors/builtin.ts';
import { createExecutorRegistry } from '../../src/executors/registry.ts';
import { checkRegistry, loadRegistry } from '../../src/packages/registry.ts';
import { manifestDigest, REGISTRY_DIR } from '../../src/packages/registry-files.ts';

const config = parseConfig({});
const executors = createExecutorRegistry(builtinExecutors({ allowPrivateTargets: false }));
const now = () => new Date('2026-12-04T12:00:00.000Z');
let dir: string;

const manifestFile = (name: string, version: string) => path.join(dir, name, version, 'manifest.json');
const readManifest = async (name: string, version: string) => JSON.parse(await readFile(manifestFile(name, version), 'utf8'));

/** Runs a CLI command in process; returns its exit status and parsed --json output. */
async function cli(run: () => Promise<number>): Promise<{ code: number; out: any }> {
  let text = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    text += String(chunk);
    return true;
  });
  try {
    const code = await run();
    return { code, out: JSON.parse(text) };
  } finally {
    spy.mockRestore();
  }
}

const args = () => ({ registry: dir, json: true, now });

async function sourceDir(manifest: unknown): Promise<string> {
  const source = await mkdtemp(path.join(tmpdir(), 'signalbus-src-'));
  await writeFile(path.join(source, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return source;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'signalbus-registry-'));
  await cp(REGISTRY_DIR, dir, { recursive: true });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the shipped registry', () => {
  it('passes its own check, manifest.schema.json included (CI runs the same)', async () => {
    expect(await checkRegistry(REGISTRY_DIR, { executors })).toEqual({ problems: [], versions: 4 });
  });

  it('loads both packages with their latest version', async () => {
    const { registry, problems } = await loadRegistry(dir, { executors });
    expect(problems).toEqual([]);
    expect(registry.list().map((entry) => [entry.name, entry.latest])).toEqual([
      ['stripe-revenue', '1.1.0'],
      ['webhook-relay', '1.0.1'],
    ]);
    expect(registry.installable('stripe-revenue', '1.0.0').scopes).toEqual(['stripe.refund.create']);
    expect(registry.installable('stripe-revenue', '1.1.0').handlers.map((rule) => rule.id)).toEqual(['propose-refund', 'refund-early-fraud-warning']);
    // webhook-relay 1.0.0 forwards every sender's events to every relay: yanked, still readable.
    expect(registry.getVersion('webhook-relay', '1.0.0')).toMatchObject({ yanked: true, yank_reason: expect.stringContaining('use 1.0.1') });
    expect(() => registry.installable('webhook-relay', '1.0.0')).toThrow(/yanked/);
  });
});

describe('integrity', () => {
  it('refuses a published manifest changed in place: check names it, the loader serves it nowhere', async () => {
    const manifest = await readManifest('stripe-revenue', '1.0.0');
    manifest.scopes.push('stripe.customer.update');
    await writeFile(manifestFile('stripe-revenue', '1.0.0'), JSON.stringify(manifest));

    const { problems } = await checkRegistry(dir, { executors });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ where: 'stripe-revenue/1.0.0', message: expect.stringContaining('changed after it was published') });

    const { registry } = await loadRegistry(dir, { executors });
    expect(registry.get('stripe-revenue')?.versions.map((entry) => entry.version)).toEqual(['1.1.0']);
    expect(() => registry.installable('stripe-revenue', '1.0.0')).toThrow(/not found/);
    expect(registry.get('webhook-relay')?.latest).toBe('1.0.1');
  });

  it('reports a CEL expression that does not compile with its field and position, even under a matching pin', async () => {
    const manifest = await readManifest('webhook-relay', '1.0.0');
    manifest.handlers[0].when = "size(config.forward_types) == 0 ||\n  signal.paylod.event_type in config.forward_types";
    manifest.projections = [{ type: 'relay.event', on: ['relay.event.received'], key: 'signal.payload.event_id', fields: { seen: 'config.x' } }];
    await writeFile(manifestFile('webhook-relay', '1.0.0'), JSON.stringify(manifest));
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
    index.packages['webhook-relay'].versions['1.0.0'].sha256 = manifestDigest(manifest);
    await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));

    const { problems } = await checkRegistry(dir, { executors });
    expect(problems).toEqual([
      { where: 'webhook-relay/1.0.0', path: 'handlers.0.when', message: expect.stringMatching(/paylod.* at line 2, column \d+$/) },
      { where: 'webhook-relay/1.0.0', path: 'projections.0.fields.seen', message: 'Unknown variable: config at line 1, column 1' },
    ]);
  });

  it('does not count a change of layout: the digest is over canonical JSON', async () => {
    const manifest = await readManifest('webhook-relay', '1.0.0');
    const reordered = Object.fromEntries(Object.entries(manifest).reverse());
    await writeFile(manifestFile('webhook-relay', '1.0.0'), JSON.stringify(reordered));
    expect((await checkRegistry(dir, { executors })).problems).toEqual([]);
  });

  it('reports a manifest nobody published, and a stale manifest.schema.json', async () => {
    const manifest = await readManifest('webhook-relay', '1.0.0');
    await mkdir(path.join(dir, 'webhook-relay', '9.0.0'));
    await writeFile(manifestFile('webhook-relay', '9.0.0'), JSON.stringify({ ...manifest, version: '9.0.0' }));
    await writeFile(path.join(dir, 'manifest.schema.json'), '{}\n');
    const { problems } = await checkRegistry(dir, { executors });
    expect(problems.map((problem) => problem.where).sort()).toEqual(['manifest.schema.json', 'webhook-relay/9.0.0']);
  });
});

describe('signalbus registry (CLI)', () => {
  it('check exits 1 and names the tampered version (the real binary, as CI runs it)', async () => {
    const manifest = await readManifest('webhook-relay', '1.0.0');
    manifest.description = 'something else';
    await writeFile(manifestFile('webhook-relay', '1.0.0'), JSON.stringify(manifest));
    const binary = path.join(REGISTRY_DIR, '..', 'bin', 'signalbus.js');
    const failure = await promisify(execFile)(process.execPath, [binary, 'registry', 'check', '--registry', dir, '--json'], { env: { ...process.env, DATABASE_URL: '' } }).then(
      () => null,
      (error: { code: number; stdout: string }) => error,
    );
    expect(failure?.code).toBe(1);
    const out = JSON.parse(failure!.stdout);
    expect(out.ok).toBe(false);
    expect(out.problems).toEqual([expect.objectContaining({ where: 'webhook-relay/1.0.0', message: expect.stringContaining('changed after it was published') })]);
  }, 60_000);

  it('publish adds a version; the same again changes nothing; other content under it is refused', async () => {
    const next = { ...(await readManifest('webhook-relay', '1.0.0')), version: '1.1.0', description: 'Relays, now better' };
    const source = await sourceDir(next);
    const first = await cli(() => runRegistryPublish(config, { ...args(), source }));
    expect(first).toMatchObject({ code: 0, out: { published: { name: 'webhook-relay', version: '1.1.0', unchanged: false } } });
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
    expect(index.packages['webhook-relay'].versions['1.1.0']).toEqual({ sha256: first.out.published.sha256, published_at: now().toISOString(), yanked: false });
    expect((await cli(() => runRegistryCheck(config, args()))).out).toMatchObject({ ok: true, versions: 5 });

    const again = await cli(() => runRegistryPublish(config, { ...args(), source }));
    expect(again).toMatchObject({ code: 0, out: { published: { unchanged: true } } });

    const changed = await sourceDir({ ...next, description: 'Relays, changed' });
    const refused = await cli(() => runRegistryPublish(config, { ...args(), source: changed }));
    expect(refused).toMatchObject({ code: 1, out: { error: { code: 'conflict' } } });
    expect((await readManifest('webhook-relay', '1.1.0')).description).toBe('Relays, now better');
  });

  it('publish refuses an invalid manifest, naming each field and the CEL position', async () => {
    const bad = await readManifest('webhook-relay', '1.0.0');
    bad.version = '2.0.0';
    bad.handlers[0].when = 'size(config.forward_types) == 0 ||';
    bad.scopes.push('gmail.launch');
    const result = await cli(() => sourceDir(bad).then((source) => runRegistryPublish(config, { ...args(), source })));
    expect(result.code).toBe(1);
    expect(result.out.error).toMatchObject({ code: 'validation_failed' });
    expect(result.out.error.errors).toEqual(
      expect.arrayContaining([
        { path: 'handlers.0.when', message: expect.stringContaining('at line 1, column 35') },
        { path: 'scopes.1', message: 'no executor serves directive kind gmail.launch' },
      ]),
    );
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
    expect(index.packages['webhook-relay'].versions['2.0.0']).toBeUndefined();
  });

  it('yank keeps a version readable but not installable; latest moves on', async () => {
    const source = await sourceDir({ ...(await readManifest('webhook-relay', '1.0.0')), version: '1.0.2' });
    expect((await cli(() => runRegistryPublish(config, { ...args(), source }))).code).toBe(0);
    const yanked = await cli(() => runRegistryYank(config, { ...args(), name: 'webhook-relay', version: '1.0.2', reason: 'broken forward rule' }));
    expect(yanked).toMatchObject({ code: 0, out: { yanked: { name: 'webhook-relay', version: '1.0.2', yanked_at: now().toISOString(), unchanged: false } } });
    expect((await cli(() => runRegistryCheck(config, args()))).out).toMatchObject({ ok: true, versions: 5 });

    const { registry } = await loadRegistry(dir, { executors });
    expect(registry.get('webhook-relay')?.latest).toBe('1.0.1');
    expect(registry.getVersion('webhook-relay', '1.0.2')).toMatchObject({ yanked: true, yank_reason: 'broken forward rule' });
    let refusal: unknown;
    try {
      registry.installable('webhook-relay', '1.0.2');
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(DomainError);
    expect(refusal).toMatchObject({ code: 'validation_failed', errors: [{ path: 'version', message: expect.stringContaining('yanked: broken forward rule') }] });

    const unknown = await cli(() => runRegistryYank(config, { ...args(), name: 'webhook-relay', version: '7.0.0', reason: undefined }));
    expect(unknown).toMatchObject({ code: 1, out: { error: { code: 'not_found' } } });
  });
});
