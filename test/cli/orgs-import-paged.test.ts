/**
 * `signalbus orgs import` as a process, paged: while a slow import runs,
 * another org's signals reach its stream and its handlers as usual (no
 * transaction of the import's holds the log's horizon back); a SIGKILLed
 * import leaves no live org, and running it again resumes and finishes
 * with projections equal to the source's.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { checksumProjections } from '../../src/projections/rebuild.ts';
import { emit, emitBatch } from '../../src/signals/emit.ts';
import { exportOrg } from '../../src/tenancy/export.ts';
import { cliScript, exitWithin, spawnCollected, stopChildren, type Spawned } from '../support/cli-process.ts';
import { heldDirective, setPolicy } from '../support/fanout.ts';
import { createTestApp, listen, waitFor, type TestApp } from '../support/harness.ts';
import { openSse, signalsOf, type SseClient } from '../support/sse.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let CLI: string;
const SIGNALS = 400;
const ACTOR = { type: 'human' as const, id: 'ana@paged.test' };

/** Answers every ping in the worker: the dispatcher must reach it. */
const ponger: Handler = {
  id: 'test.ponger',
  on: ['b.ping'],
  start: 'beginning',
  handle(signal, tools) {
    tools.emit({ type: 'b.pong', subject: signal.subject, payload: { of: signal.id }, key: 'pong' });
  },
};

let source: TestApp;
let target: TestApp;
let server: Awaited<ReturnType<typeof listen>>;
let org: Tenant;
let other: Tenant;
let dir: string;
let file: string;
/** Signal lines in the file. */
let total: number;

function importing(args: string[], env: Record<string, string> = {}): Spawned {
  return spawnCollected(process.execPath, [CLI, 'orgs', 'import', ...args], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: target.database.url, LOG_LEVEL: 'info', ...env },
  });
}

/** The import's committed progress, or undefined before it has started (or once it is live). */
async function progressOf(slug: string) {
  const [row] = await target.app.deps.sql<{ status: string; written: number; signals: number }[]>`
    select o.status, i.written, i.signals from public.organizations o join public.org_imports i on i.org_id = o.id where o.slug = ${slug}`;
  return row;
}

const idsOf = async (app: TestApp, schema: string) =>
  (await app.app.deps.sql<{ id: string }[]>`
    select id from ${app.app.deps.sql(`${schema}.signals`)} where type <> 'org.imported' order by tx_id, seq`).map((row) => row.id);

beforeAll(async () => {
  CLI = await cliScript();
  dir = await mkdtemp(path.join(tmpdir(), 'signalbus-import-paged-'));
  file = path.join(dir, 'org.ndjson');
  source = await createTestApp();
  org = await source.createOrg('paged', 'Paged Co');
  await setPolicy(source, org);
  await heldDirective(source, org, { params: { n: 1 } });
  const inputs = Array.from({ length: SIGNALS }, (_, i) => ({ type: 'shop.order.placed', subject: `order:${i % 7}`, payload: { i } }));
  for (let start = 0; start < inputs.length; start += 200) {
    await emitBatch(source.app.deps.bus.emit, { ctx: { tenant: org, actor: ACTOR, source: 'api' }, inputs: inputs.slice(start, start + 200) });
  }
  await source.settle();
  const out = createWriteStream(file);
  await exportOrg(source.app.deps, {
    ctx: { tenant: org, actor: ACTOR, source: 'cli' },
    input: {
      write: async (chunk) => {
        if (!out.write(chunk)) await once(out, 'drain');
      },
    },
  });
  out.end();
  await once(out, 'finish');
  total = JSON.parse((await readFile(file, 'utf8')).trimEnd().split('\n').at(-1)!).count;
  expect(total).toBeGreaterThan(SIGNALS);

  target = await createTestApp({ handlers: [ponger] });
  await target.startWorker({ pollIntervalMs: 50 });
  server = await listen(target.app);
  other = await target.createOrg('bystander');
}, 90_000);

afterAll(async () => {
  await stopChildren();
  await server?.close();
  await source?.close();
  await target?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a paged import', () => {
  it("leaves other orgs' streams and handlers as prompt as ever while it runs", async () => {
    const viewer = await target.createKey(other, 'viewer');
    const operator = await target.createKey(other, 'operator');
    // About 80 pages, each followed by a pause: an import of several seconds.
    const run = importing([file, '--as', 'slow', '--json'], { SIGNALBUS_IMPORT_PAGE_SIZE: '5', SIGNALBUS_IMPORT_PAGE_DELAY_MS: '100' });
    await waitFor(async () => ((await progressOf('slow'))?.written ?? 0) > 0, 60_000, 'the import to write its first page');

    const client: SseClient = await openSse(`${server.url}/v1/orgs/${other.slug}/stream`, { authorization: `Bearer ${viewer}` });
    const latencies: number[] = [];
    try {
      expect(client.status).toBe(200);
      await waitFor(() => client.comments.some((comment) => comment.text === 'connected'), 10_000, 'the stream to open');
      for (let i = 0; i < 3; i++) {
        const sent = performance.now();
        const posted = await target.request('POST', `/v1/orgs/${other.slug}/signals`, { key: operator, body: { type: 'b.ping', subject: `ping:${i}`, payload: { i } } });
        expect(posted.status).toBe(201);
        // The ping on the stream (readers' horizon), then the handler's pong (dispatcher, worker).
        const arrived = () => signalsOf(client).filter(({ signal }) => signal.type === 'b.pong' || signal.id === posted.body.signal.id);
        await waitFor(() => arrived().length === i + 2, 10_000, `ping ${i} and its pong on the stream`);
        latencies.push(performance.now() - sent);
        // Still importing: the delivery did not wait for the import's end.
        expect((await progressOf('slow'))?.status).toBe('importing');
        expect(await target.app.deps.tenants.find('slow')).toBeUndefined();
      }
    } finally {
      await client.close();
    }
    console.log(`ping → pong on the stream during the import: ${latencies.map((ms) => ms.toFixed(0)).join(', ')} ms`);
    expect(Math.max(...latencies)).toBeLessThan(3000);

    const { code } = await exitWithin(run, 120_000);
    expect(code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report).toMatchObject({ signals: total, resumed_after: 0, org: { slug: 'slow', status: 'active' } });
    expect(report.checksums).toEqual(await checksumProjections(source.app.deps.sql, org, source.app.deps.projections.projections));
  }, 180_000);

  it('SIGKILLed midway leaves no live org; run again, it resumes and ends equal to the source', async () => {
    const run = importing([file, '--as', 'killed'], { SIGNALBUS_IMPORT_PAGE_SIZE: '5', SIGNALBUS_IMPORT_PAGE_DELAY_MS: '100' });
    await waitFor(async () => ((await progressOf('killed'))?.written ?? 0) >= 50, 60_000, 'the import to write ten pages');
    run.child.kill('SIGKILL');
    expect((await exitWithin(run, 10_000)).signal).toBe('SIGKILL');

    const left = (await progressOf('killed'))!;
    expect(left.status).toBe('importing');
    expect(left.written).toBeGreaterThanOrEqual(50);
    expect(left.written).toBeLessThan(left.signals);
    // Nobody sees it: not the directory, not a route, not a new org of that slug.
    expect(await target.app.deps.tenants.find('killed')).toBeUndefined();
    expect((await target.request('GET', '/v1/orgs/killed/signals', { key: target.platformKey })).status).toBe(404);
    expect((await target.request('POST', '/v1/orgs', { key: target.platformKey, body: { slug: 'killed', name: 'Paged Co' } })).status).toBe(409);
    const [routes] = await target.app.deps.sql<{ n: number }[]>`
      select count(*)::int as n from public.installation_routes r join public.organizations o on o.id = r.org_id where o.slug = 'killed'`;
    expect(routes!.n).toBe(0);

    const again = importing([file, '--as', 'killed', '--json']);
    const { code } = await exitWithin(again, 120_000);
    expect(code, again.stderr).toBe(0);
    const report = JSON.parse(again.stdout);
    expect(report.resumed_after).toBe(left.written);
    expect(report.signals).toBe(total);
    const moved = (await target.app.deps.tenants.find('killed'))!;
    expect(moved.status).toBe('active');
    const projections = source.app.deps.projections.projections;
    const expected = await checksumProjections(source.app.deps.sql, org, projections);
    expect(await checksumProjections(target.app.deps.sql, moved, projections)).toEqual(expected);
    expect(report.checksums).toEqual(expected);
    expect(await idsOf(target, moved.schema)).toEqual(await idsOf(source, org.schema));
    expect(await progressOf('killed')).toBeUndefined();
    // Live now: its routes answer and its log takes signals.
    await emit(target.app.deps.bus.emit, { ctx: { tenant: moved, actor: ACTOR, source: 'api' }, input: { type: 'shop.order.placed', payload: { after: true } } });
    expect((await target.request('GET', '/v1/orgs/killed/signals', { key: target.platformKey })).status).not.toBe(404);
  }, 180_000);
});
