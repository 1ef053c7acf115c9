/**
 * The rebuild part of `npm run bench -- replay`: an org of N mixed signals
 * (two in five are directive lifecycle steps the projections fold, the rest
 * plain signals they skip) is rebuilt by the replay job, run by a worker
 * process, into shadow tables and swapped in. Reported against the
 * floor measured in the same run — a sequential scan of the same rows, in
 * the same position pages — with the peak RSS of the worker process that ran
 * it (one started for the rebuild alone), at each size (BENCH_SIGNALS,
 * default 50000,200000) to show memory flat in stream length. Target:
 * rebuild ≥ 0.4 × the scan.
 */
import { createApp, type SignalbusApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { newId } from '../../src/core/ids.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';
import { readLogPage, LOG_START, cursorAfter } from '../../src/replay/shadow.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { emitBatch } from '../../src/signals/emit.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { replayInWorker, SIZES } from './replay-support.ts';
import { benchDatabase, printTable } from './support.ts';

const PAGE_SIZE = Number(process.env.SIGNALBUS_REPLAY_PAGE_SIZE ?? 2000);

/** Five signals: a directive's lifecycle interleaved with plain signals, in one batch. */
function mixed(i: number): Array<{ type: string; subject?: string; payload: Record<string, unknown> }> {
  const id = newId('directive');
  const step = (type: string, payload: Record<string, unknown> = {}) => ({ type, payload: { directive_id: id, ...payload } });
  if (i % 2 === 0) {
    return [
      step('directive.proposed', {
        kind: 'bench.act', params: { i }, idempotency_key: `bench:${id}`, installation_id: null, estimated_cost_usd: 0.01,
        decision: { effect: 'allow', rule: 'bench', reason: 'bench', guards: [] }, expires_at: null,
      }),
      { type: 'bench.page.viewed', subject: `customer:${i % 997}`, payload: { i } },
      step('directive.executing', { execution_id: `exe_${id.slice(4)}`, attempt: 1 }),
      { type: 'bench.cart.updated', subject: `customer:${i % 997}`, payload: { i, note: 'x'.repeat(i % 64) } },
      { type: 'bench.search.run', payload: { i } },
    ];
  }
  return [
    step('directive.succeeded', { execution_id: `exe_${id.slice(4)}`, result: { i }, cost_usd: 0.01 }),
    { type: 'bench.order.placed', subject: `customer:${i % 997}`, payload: { i, amount: (i % 500) + 0.5 } },
    { type: 'bench.user.seen', payload: { i } },
    { type: 'bench.page.viewed', payload: { i } },
    { type: 'bench.search.run', payload: { i } },
  ];
}

async function seed(app: SignalbusApp, tenant: Tenant, count: number): Promise<void> {
  const ctx = { tenant, actor: PLATFORM_ACTOR, source: 'system', system: true };
  for (let start = 0; start < count / 5; start += 200) {
    const inputs = Array.from({ length: Math.min(200, count / 5 - start) }, (_, offset) => mixed(start + offset)).flat();
    const results = await emitBatch(app.deps.bus.emit, { ctx, inputs: inputs.map((input, n) => ({ ...input, dedupe_key: `bench:${start}:${n}` })) });
    const refused = results.find((result) => result.status !== 'created');
    if (refused) throw new Error(`seeding refused a signal: ${JSON.stringify(refused)}`);
  }
  // Every transaction open meanwhile has ended: the whole log is below the horizon.
  const [snapshot] = await app.deps.sql<{ xmax: string }[]>`select pg_snapshot_xmax(pg_current_snapshot())::text as xmax`;
  for (;;) {
    const [row] = await app.deps.sql<{ done: boolean }[]>`select pg_snapshot_xmin(pg_current_snapshot()) >= ${snapshot!.xmax}::xid8 as done`;
    if (row!.done) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The floor: the rows a rebuild reads, read the way it reads them, folding nothing. */
async function scan(app: SignalbusApp, tenant: Tenant): Promise<number> {
  let cursor = LOG_START;
  let rows = 0;
  for (;;) {
    const page = await readLogPage(app.deps.sql, tenant, cursor, PAGE_SIZE, { horizon: true });
    if (page.length === 0) return rows;
    rows += page.length;
    cursor = cursorAfter(page);
  }
}

export async function runRebuildBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  const config = parseConfig({ LOG_LEVEL: 'warn', SIGNALBUS_REPLAY_PAGE_SIZE: String(PAGE_SIZE) });
  // Seeds, requests and reads; the replay itself runs in a worker process.
  const app = await createApp(config, { databaseUrl: database.url, logger: createLogger('warn') });
  const rows: Array<Record<string, string | number>> = [];
  try {
    for (const size of SIZES) {
      const { tenant } = await provisionOrg(app.deps, { input: { slug: `bench_rebuild_${size}`, name: `Bench ${size}` } });
      await seed(app, tenant, size);
      const started = performance.now();
      const scanned = await scan(app, tenant);
      const floorSeconds = (performance.now() - started) / 1000;
      const rebuilt = await replayInWorker(app, database.url, tenant, { mode: 'rebuild' }, { SIGNALBUS_REPLAY_PAGE_SIZE: String(PAGE_SIZE) });
      const report = rebuilt.replay.report as { checksums_after: Record<string, { rows: number }>; drift: Record<string, { added: number; removed: number; changed: number }> };
      const drift = Object.values(report.drift).reduce((sum, each) => sum + each.added + each.removed + each.changed, 0);
      const floorRate = scanned / floorSeconds;
      const rate = rebuilt.replay.processed / rebuilt.seconds;
      rows.push({ signals: size, phase: 'floor: sequential scan', processed: scanned, seconds: +floorSeconds.toFixed(1), per_s: Math.round(floorRate), ratio: 1 });
      rows.push({
        signals: size, phase: 'rebuild (job: shadow tables + swap)', processed: rebuilt.replay.processed, seconds: +rebuilt.seconds.toFixed(1),
        per_s: Math.round(rate), ratio: +(rate / floorRate).toFixed(2), worker_idle_rss_mib: rebuilt.workerIdleMiB, worker_peak_rss_mib: rebuilt.workerPeakMiB,
        directives: report.checksums_after.directives?.rows ?? 0, drift,
      });
    }
    printTable(`replay: rebuild vs a sequential scan of the same rows (pages of ${PAGE_SIZE}; target ratio ≥ 0.4; RSS of the worker process that ran it)`, rows);
  } finally {
    await app.close();
    await database.stop();
  }
}
