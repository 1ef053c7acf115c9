/**
 * The redeliver, dry-run and export/import part of `npm run bench -- replay`:
 * on an org of N mixed signals (one in five matched by a handler that emits
 * one signal and proposes one directive), in one run:
 *
 * - redeliver, first pass (every output new, directives held), then a dry
 *   run and a second pass (every output deduplicated), in signals/s;
 * - export to NDJSON and import into a fresh database, in signals/s;
 * - the floor: a sequential scan of the same rows by position pages;
 * - peak RSS added by each phase (sampled in process), at each size given
 *   (BENCH_REPLAY_SIZES, default 50000,200000), to show it flat in length.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { createApp, type SignalbusApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { redeliver } from '../../src/handlers/redeliver.ts';
import { ensureSubscriptions } from '../../src/handlers/subscriptions.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { emitBatch } from '../../src/signals/emit.ts';
import { decodeCursor } from '../../src/signals/model.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { exportOrg } from '../../src/tenancy/export.ts';
import { importOrg } from '../../src/tenancy/import.ts';
import { fileLines } from '../../src/tenancy/org-file.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { benchDatabase, printTable } from './support.ts';

const SIZES = (process.env.BENCH_REPLAY_SIZES ?? '50000,200000').split(',').map(Number);
const TYPES = ['bench.order.placed', 'bench.page.viewed', 'bench.cart.updated', 'bench.user.seen', 'bench.search.run'];

/** Matches one signal in five; its outputs are what redelivery dedupes. */
export const REDELIVER_BENCH_HANDLER: Handler = {
  id: 'bench.redeliver',
  on: ['bench.order.*'],
  handle(signal, tools) {
    tools.emit({ type: 'bench.order.noted', subject: signal.subject, payload: { of: signal.id }, key: 'noted' });
    tools.propose({ kind: 'noop.record', params: { order: signal.id }, key: 'record' });
  },
};

/** Runs `fn`, sampling this process's RSS; answers its duration and the peak RSS it added, in MiB. */
export async function measured<T>(fn: () => Promise<T>): Promise<{ result: T; seconds: number; addedRssMiB: number }> {
  globalThis.gc?.();
  const base = process.memoryUsage.rss();
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  const started = performance.now();
  try {
    const result = await fn();
    return { result, seconds: (performance.now() - started) / 1000, addedRssMiB: +((peak - base) / 2 ** 20).toFixed(1) };
  } finally {
    clearInterval(sampler);
  }
}

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
  const app = await createApp(config, { databaseUrl: database.url, logger: createLogger('warn'), handlers: [REDELIVER_BENCH_HANDLER] });
  const dir = await mkdtemp(path.join(tmpdir(), 'signalbus-bench-replay-'));
  const rows: Array<Record<string, string | number>> = [];
  try {
    for (const size of SIZES) {
      const { tenant } = await provisionOrg(app.deps, { input: { slug: `bench_${size}`, name: `Bench ${size}` } });
      await updatePolicy(app.deps.bus.emit, {
        ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system' },
        input: { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] },
      });
      await ensureSubscriptions(app.deps.sql, tenant, [REDELIVER_BENCH_HANDLER]);
      const until = await seed(app, tenant, size);
      const ctx = { tenant, actor: { type: 'human' as const, id: 'support@bench.test' }, source: 'api' };
      const input = { selection: { until }, reason: 'bench' };
      const row = (phase: string, processed: number, seconds: number, addedRssMiB: number, extra: Record<string, number | string> = {}) =>
        rows.push({ signals: size, phase, processed, seconds: +seconds.toFixed(1), per_s: Math.round(processed / seconds), added_peak_rss_mib: addedRssMiB, ...extra });

      const floor = await measured(() => scanFloor(app, tenant, until));
      row('floor: sequential scan', floor.result, floor.seconds, floor.addedRssMiB);
      const first = await measured(() => redeliver(app.deps.bus.runtime, { ctx, input }));
      row('redeliver, all new (held)', first.result.report.processed, first.seconds, first.addedRssMiB, { runs: first.result.report.runs, new: first.result.report.directives_new });
      const dry = await measured(() => redeliver(app.deps.bus.runtime, { ctx, input: { ...input, dry_run: true } }));
      row('dry run, all deduplicated', dry.result.report.processed, dry.seconds, dry.addedRssMiB, { runs: dry.result.report.runs, new: dry.result.report.directives_new });
      const again = await measured(() => redeliver(app.deps.bus.runtime, { ctx, input }));
      row('redeliver, all deduplicated', again.result.report.processed, again.seconds, again.addedRssMiB, { runs: again.result.report.runs, new: again.result.report.directives_new });

      const file = path.join(dir, `${tenant.slug}.ndjson`);
      const exported = await measured(async () => {
        const out = createWriteStream(file);
        const summary = await exportOrg(app.deps, {
          ctx,
          input: { write: async (chunk) => void (out.write(chunk) || (await once(out, 'drain'))) },
        });
        out.end();
        await once(out, 'finish');
        return summary;
      });
      row('export', exported.result.trailer.count, exported.seconds, exported.addedRssMiB, { file_mib: +((await stat(file)).size / 2 ** 20).toFixed(1) });

      const target = await freshDatabase(database.url, `bench_import_${size}`);
      const importer = await createApp(config, { databaseUrl: target, logger: createLogger('warn') });
      try {
        const imported = await measured(() => importOrg(importer.deps, { ctx: { actor: PLATFORM_ACTOR, source: 'cli' }, input: { lines: () => fileLines(file) } }));
        row('import (verify + write + fold)', imported.result.signals, imported.seconds, imported.addedRssMiB);
      } finally {
        await importer.close();
      }
      await rm(file, { force: true });
    }
    printTable('replay: redeliver, dry run, export and import (signals/s; RSS added by the phase, in process)', rows);
  } finally {
    await app.close();
    await rm(dir, { recursive: true, force: true });
    await database.stop();
  }
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
