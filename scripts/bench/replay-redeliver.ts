/**
 * The redeliver, dry-run and export/import part of `npm run bench -- replay`:
 * on an org of N mixed signals (one in five matched by a handler, one in 25
 * given outputs: one signal emitted and one directive proposed), in one run:
 *
 * - redeliver, first pass (every output new, directives held), then a dry
 *   run and a second pass (every output deduplicated), in signals/s;
 * - export to NDJSON and import into a fresh database by the CLI, in
 *   signals/s less the CLI's start-up (measured alongside), with the longest
 *   transaction holding an xid on the server during the import;
 * - the floor: a sequential scan of the same rows by position pages;
 * - the peak RSS of the process that ran each phase — a worker process
 *   started for that replay alone, or the CLI process of the export and of
 *   the import — at each size given (BENCH_SIGNALS, default 50000,200000),
 *   to show it flat in stream length.
 */
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { createApp, type SignalbusApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { ensureSubscriptions } from '../../src/handlers/subscriptions.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { emitBatch } from '../../src/signals/emit.ts';
import { decodeCursor } from '../../src/signals/model.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { REDELIVER_BENCH_HANDLER } from './fanout-handlers.ts';
import { cliProcess, cliStartup, replayInWorker, SIZES, type PhaseResult } from './replay-support.ts';
import { benchDatabase, printTable } from './support.ts';

const TYPES = ['bench.order.placed', 'bench.page.viewed', 'bench.cart.updated', 'bench.user.seen', 'bench.search.run'];

/**
 * Appends `count` mixed signals in batches of 1000, waits until every
 * transaction open meanwhile (any database on the server) has ended, so
 * they are all below the horizon, and answers the last position.
 */
async function seed(app: SignalbusApp, tenant: Tenant, count: number): Promise<string> {
  for (let start = 0; start < count; start += 1000) {
    const inputs = Array.from({ length: Math.min(1000, count - start) }, (_, offset) => {
      const i = start + offset;
      return { type: TYPES[i % TYPES.length]!, subject: `customer:${i % 997}`, payload: { i, amount: (i % 500) + 0.5, note: 'x'.repeat(i % 64) } };
    });
    const results = await emitBatch(app.deps.bus.emit, { ctx: { tenant, actor: { type: 'integration', id: 'bench' }, source: 'api' }, inputs });
    const failed = results.find((result) => result.status !== 'created');
    if (failed) throw new Error(`seeding failed: ${failed.status}`);
  }
  const sql = app.deps.sql;
  const [snapshot] = await sql<{ xmax: string }[]>`select pg_snapshot_xmax(pg_current_snapshot())::text as xmax`;
  const xmax = snapshot!.xmax;
  for (;;) {
    const [row] = await sql<{ done: boolean }[]>`select pg_snapshot_xmin(pg_current_snapshot()) >= ${xmax}::xid8 as done`;
    if (row!.done) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const [last] = await sql<{ position: string }[]>`
    select lpad(to_hex((tx_id::text)::bigint), 16, '0') || lpad(to_hex(seq), 16, '0') as position
      from ${sql(`${tenant.schema}.signals`)} order by tx_id desc, seq desc limit 1`;
  return last!.position;
}

async function scanFloor(app: SignalbusApp, tenant: Tenant, untilPosition: string): Promise<number> {
  const sql = app.deps.sql;
  const until = decodeCursor(untilPosition);
  let after = { tx: '0', seq: '0' };
  let rows = 0;
  for (;;) {
    const page = await sql<{ tx_id: string; seq: string }[]>`
      select tx_id::text as tx_id, seq::text as seq, payload from ${sql(`${tenant.schema}.signals`)} signals
       where (tx_id, seq) > (${after.tx}::xid8, ${after.seq}::bigint)
         and (tx_id, seq) <= (${until.txId}::xid8, ${until.seq}::bigint)
       -- Qualified: a bare tx_id would sort by its text alias.
       order by signals.tx_id, signals.seq limit 200`;
    if (page.length === 0) return rows;
    rows += page.length;
    const last = page[page.length - 1]!;
    after = { tx: last.tx_id, seq: last.seq };
  }
}

export async function runRedeliverBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  const config = parseConfig({ LOG_LEVEL: 'warn' });
  // Seeds, requests and reads; the replays run in worker processes, export and import in CLI processes.
  const app = await createApp(config, { databaseUrl: database.url, logger: createLogger('warn') });
  const dir = await mkdtemp(path.join(tmpdir(), 'signalbus-bench-replay-'));
  const rows: Array<Record<string, string | number>> = [];
  const worker = { BENCH_HANDLERS: 'redeliver' };
  try {
    for (const size of SIZES) {
      const { tenant } = await provisionOrg(app.deps, { input: { slug: `bench_${size}`, name: `Bench ${size}` } });
      await updatePolicy(app.deps.bus.emit, {
        ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system' },
        input: { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] },
      });
      const until = await seed(app, tenant, size);
      // Subscribed from now: live dispatch in the workers leaves the seeded signals to the redeliveries.
      await ensureSubscriptions(app.deps.sql, tenant, [REDELIVER_BENCH_HANDLER]);
      const request = { mode: 'redeliver', selection: { until } };
      const row = (phase: string, processed: number, seconds: number, memory: Record<string, number>, extra: Record<string, number | string> = {}) =>
        rows.push({ signals: size, phase, processed, seconds: +seconds.toFixed(1), per_s: Math.round(processed / seconds), ...memory, ...extra });
      const counts = (report: unknown) => {
        const { runs, directives_new } = report as { runs: number; directives_new: number };
        return { runs, new: directives_new };
      };
      const replayed = (result: PhaseResult) => ({ worker_idle_rss_mib: result.workerIdleMiB, worker_peak_rss_mib: result.workerPeakMiB });

      const started = performance.now();
      const scanned = await scanFloor(app, tenant, until);
      row('floor: sequential scan', scanned, (performance.now() - started) / 1000, {});
      const first = await replayInWorker(app, database.url, tenant, request, worker);
      row('redeliver, all new (held)', first.replay.processed, first.seconds, replayed(first), counts(first.replay.report));
      const dry = await replayInWorker(app, database.url, tenant, { ...request, dry_run: true }, worker);
      row('dry run, all deduplicated', dry.replay.processed, dry.seconds, replayed(dry), counts(dry.replay.report));
      const again = await replayInWorker(app, database.url, tenant, request, worker);
      row('redeliver, all deduplicated', again.replay.processed, again.seconds, replayed(again), counts(again.replay.report));

      // Export and import are timed less a CLI process's start-up, measured alongside.
      const startup = await cliStartup(database.url);
      const file = path.join(dir, `${tenant.slug}.ndjson`);
      const exported = await cliProcess(['orgs', 'export', tenant.slug], { DATABASE_URL: database.url }, { stdoutFile: file });
      const { count } = await trailerOf(file);
      const cli = (peakMiB: number) => ({ cli_startup_peak_rss_mib: startup.peakMiB, peak_rss_mib: peakMiB });
      row('export (CLI process)', count, exported.seconds - startup.seconds, cli(exported.peakMiB), { file_mib: +((await stat(file)).size / 2 ** 20).toFixed(1) });

      const target = await freshDatabase(database.url, `bench_import_${size}`);
      const held = longestWriteTransaction(database.url);
      const imported = await cliProcess(['orgs', 'import', file, '--json'], { DATABASE_URL: target });
      row('import (CLI process: verify + write + fold)', count, imported.seconds - startup.seconds, cli(imported.peakMiB), { longest_write_tx_ms: await held.stop() });
      await rm(file, { force: true });
    }
    printTable('replay: redeliver, dry run, export and import (signals/s, start to end; RSS of the worker or CLI process that ran the phase)', rows);
  } finally {
    await app.close();
    await rm(dir, { recursive: true, force: true });
    await database.stop();
  }
}

/** The export's trailer: its last line, read without the rest of the file. */
async function trailerOf(file: string): Promise<{ count: number }> {
  const handle = await open(file);
  try {
    const { size } = await handle.stat();
    const tail = Buffer.alloc(Math.min(size, 4096));
    await handle.read(tail, 0, tail.length, size - tail.length);
    return JSON.parse(tail.toString('utf8').trimEnd().split('\n').at(-1)!) as { count: number };
  } finally {
    await handle.close();
  }
}

/**
 * Samples, until stopped, the oldest transaction holding an xid anywhere on
 * the server: how long log readers' horizon was held back (an import must
 * not hold it for longer than a page).
 */
function longestWriteTransaction(url: string): { stop(): Promise<number> } {
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  let longest = 0;
  let sampling = true;
  const sampled = (async () => {
    while (sampling) {
      const [row] = await admin<{ ms: number | null }[]>`
        select max(extract(epoch from clock_timestamp() - xact_start) * 1000)::float8 as ms from pg_stat_activity where backend_xid is not null`;
      longest = Math.max(longest, row!.ms ?? 0);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    async stop() {
      sampling = false;
      await sampled;
      await admin.end();
      return Math.round(longest);
    },
  };
}

/** A new, migrated database on the same server. */
async function freshDatabase(url: string, name: string): Promise<string> {
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${name} with (force)`);
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  await migratePublicSchema(parsed.toString());
  return parsed.toString();
}
