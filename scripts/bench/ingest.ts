/**
 * Ingest: HTTP emits through `signalbus serve` (its own process, keep-alive)
 * against raw postgres.js INSERTs of identical rows into an identical table
 * (same columns, defaults and indexes), at the same concurrency, on the same
 * embedded PostgreSQL, in one run.
 */
import autocannon from 'autocannon';
import { createApp } from '../../src/app.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { parseConfig } from '../../src/config.ts';
import { canonicalJson, sha256Hex } from '../../src/core/canonical-json.ts';
import { newId } from '../../src/core/ids.ts';
import { createSql, type Sql } from '../../src/db/client.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { benchDatabase, closedLoop, median, printTable, startServer } from './support.ts';

const SINGLE_CONCURRENCY = 16;
const BATCH_CONCURRENCY = 4;
const BATCH_SIZE = 500;
const PHASE_SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

const payload = { order_id: 'ord_123', amount: 4200, currency: 'eur', lines: [{ sku: 'sku_1', qty: 2 }] };
const signalBody = { type: 'shop.order.placed', subject: 'customer:cus_42', payload };
const actor = { type: 'human', id: 'bench@acme.test' };

function baselineRow() {
  const id = newId('signal');
  const payloadJson = canonicalJson(payload);
  return {
    id,
    type: signalBody.type,
    subject: signalBody.subject,
    payload: payloadJson,
    dedupe_key: `signal:${id}`,
    payload_hash: sha256Hex(payloadJson),
    occurred_at: new Date().toISOString(),
  };
}

async function insertBaseline(sql: Sql, rows: ReturnType<typeof baselineRow>[]) {
  await sql`
    insert into bench_baseline.signals (id, type, subject, payload, actor, source, dedupe_key, payload_hash, correlation_id, occurred_at)
    select i.id, i.type, i.subject, i.payload::jsonb, ${sql.json(actor)}, 'api', i.dedupe_key, i.payload_hash, i.id, i.occurred_at
      from unnest(${rows.map((row) => row.id)}::text[], ${rows.map((row) => row.type)}::text[],
                  ${rows.map((row) => row.subject)}::text[], ${rows.map((row) => row.payload)}::text[],
                  ${rows.map((row) => row.dedupe_key)}::text[], ${rows.map((row) => row.payload_hash)}::text[],
                  ${rows.map((row) => row.occurred_at)}::timestamptz[])
        as i(id, type, subject, payload, dedupe_key, payload_hash, occurred_at)`;
}

async function insertBaselineSingle(sql: Sql) {
  const row = baselineRow();
  await sql`
    insert into bench_baseline.signals (id, type, subject, payload, actor, source, dedupe_key, payload_hash, correlation_id, occurred_at)
    values (${row.id}, ${row.type}, ${row.subject}, ${row.payload}::jsonb, ${sql.json(actor)}, 'api', ${row.dedupe_key},
            ${row.payload_hash}, ${row.id}, ${row.occurred_at})`;
}

async function httpLoad(options: autocannon.Options): Promise<autocannon.Result> {
  const result = await autocannon({ ...options, duration: options.duration ?? PHASE_SECONDS });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`load run had ${result.non2xx} non-2xx answers and ${result.errors} errors`);
  }
  return result;
}

const perSecond = (count: number, ms: number) => Math.round((count / ms) * 1000);

/**
 * The rate limiter's cost: single emits through three fresh servers, one with
 * the key and org limits on — at twice the measured peak, so nothing is
 * refused and what shows is the checking — one without, and the floor: the
 * key's limit alone, one PG-leased bucket check per request, the least a
 * limit shared across processes can cost. Warmed alike, in rounds that
 * rotate which goes first. (Against the server the main rounds warmed, a
 * fresh one measured 15 % slower with no limiter at all.)
 * BENCH_LIMITER_CONTROL=1 starts all three without limits: the ratios then
 * show the noise between identical processes.
 */
async function limiterCost(
  databaseUrl: string,
  peak: number,
  load: (url: string) => Promise<autocannon.Result>,
): Promise<{
  results: {
    limit_per_s: number;
    off_per_s: number;
    on_per_s: number;
    floor_per_s: number;
    ratio: number;
    floor_ratio: number;
    of_floor: number;
    rounds: Array<{ off: number; on: number; floor: number }>;
  };
}> {
  const limit = Math.max(1000, Math.round(peak * 2));
  const keyLimit = {
    SIGNALBUS_RATE_LIMIT_KEY_PER_S: String(limit),
    SIGNALBUS_RATE_LIMIT_KEY_BURST: String(limit),
    SIGNALBUS_RATE_LIMIT_UNKNOWN_KEY_PER_S: '1',
  };
  const limits = { ...keyLimit, SIGNALBUS_RATE_LIMIT_ORG_PER_S: String(limit), SIGNALBUS_RATE_LIMIT_ORG_BURST: String(limit) };
  const control = process.env.BENCH_LIMITER_CONTROL === '1';
  const servers = {
    off: await startServer(databaseUrl, { LOG_LEVEL: 'info' }),
    on: await startServer(databaseUrl, { LOG_LEVEL: 'info', ...(control ? {} : limits) }),
    floor: await startServer(databaseUrl, { LOG_LEVEL: 'info', ...(control ? {} : keyLimit) }),
  };
  const names = ['off', 'on', 'floor'] as const;
  try {
    console.log('warming up the three servers for the rate limiter rounds…');
    for (let i = 0; i < 2; i++) for (const name of names) await load(servers[name].url);
    const rate = (result: autocannon.Result) => Math.round(result['2xx'] / result.duration);
    const rounds: Array<{ off: number; on: number; floor: number }> = [];
    for (let round = 1; round <= ROUNDS; round++) {
      console.log(`limiter round ${round}/${ROUNDS}: single emits with the limiter off, on, and key-only…`);
      const measured = { off: 0, on: 0, floor: 0 };
      for (let index = 0; index < names.length; index++) {
        const name = names[(round + index) % names.length]!;
        measured[name] = rate(await load(servers[name].url));
      }
      rounds.push(measured);
    }
    const paired = (pick: (round: (typeof rounds)[number]) => number) => +median(rounds.map(pick)).toFixed(3);
    return {
      results: {
        limit_per_s: limit,
        off_per_s: median(rounds.map((round) => round.off)),
        on_per_s: median(rounds.map((round) => round.on)),
        floor_per_s: median(rounds.map((round) => round.floor)),
        ratio: paired((round) => round.on / round.off),
        floor_ratio: paired((round) => round.floor / round.off),
        of_floor: paired((round) => round.on / round.floor),
        rounds,
      },
    };
  } finally {
    await Promise.all(names.map((name) => servers[name].stop()));
  }
}

export async function runIngestBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  const config = parseConfig({ LOG_LEVEL: 'warn' });
  const setup = await createApp(config, { databaseUrl: database.url, logger: createLogger('warn') });
  const { tenant } = await provisionOrg(setup.deps, { input: { slug: 'bench', name: 'Bench' } });
  const { secret } = await createApiKey(setup.deps, {
    tenant,
    input: { name: 'bench', role: 'operator', actor: { type: 'human', id: 'bench@acme.test' } },
    by: PLATFORM_ACTOR,
  });
  await setup.deps.sql.unsafe(`
    create schema bench_baseline;
    create table bench_baseline.signals (like org_bench.signals including all);`);
  await setup.close();

  const server = await startServer(database.url, { LOG_LEVEL: 'info' });
  const raw = createSql(database.url, { max: SINGLE_CONCURRENCY });
  const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' };
  try {
    const batchBody = JSON.stringify({ signals: Array.from({ length: BATCH_SIZE }, () => signalBody) });
    const emits = (path: string, body: string, connections: number, options: autocannon.Options = { url: '' }) =>
      httpLoad({ ...options, url: `${server.url}/v1/orgs/bench/${path}`, method: 'POST', headers, body, connections });
    // Steady state: the server's JIT and both tables warm before anything counts.
    console.log(`warming up (${SINGLE_CONCURRENCY} connections)…`);
    await emits('signals', JSON.stringify(signalBody), SINGLE_CONCURRENCY, { url: '', duration: 8 });
    await emits('signals/batch', batchBody, BATCH_CONCURRENCY, { url: '', duration: 2 });
    await closedLoop(SINGLE_CONCURRENCY, 2000, () => insertBaselineSingle(raw));

    // Rounds alternate signalbus and baseline so that drift on the machine
    // (checkpoints, autovacuum, other load) hits both; medians are reported.
    const rounds: Array<{ single: number; rawSingle: number; batch: number; rawBatch: number }> = [];
    for (let round = 1; round <= ROUNDS; round++) {
      console.log(`round ${round}/${ROUNDS}: single emits over HTTP, single-row INSERTs, batches over HTTP, multi-row INSERTs…`);
      const single = await emits('signals', JSON.stringify(signalBody), SINGLE_CONCURRENCY);
      const rawSingle = await closedLoop(SINGLE_CONCURRENCY, PHASE_SECONDS * 1000, () => insertBaselineSingle(raw));
      const batch = await emits('signals/batch', batchBody, BATCH_CONCURRENCY);
      const rawBatch = await closedLoop(BATCH_CONCURRENCY, PHASE_SECONDS * 1000, () =>
        insertBaseline(raw, Array.from({ length: BATCH_SIZE }, baselineRow)),
      );
      rounds.push({
        single: Math.round(single['2xx'] / single.duration),
        rawSingle: perSecond(rawSingle.operations, rawSingle.elapsedMs),
        batch: Math.round((batch['2xx'] * BATCH_SIZE) / batch.duration),
        rawBatch: perSecond(rawBatch.operations * BATCH_SIZE, rawBatch.elapsedMs),
      });
    }
    // Each round's pair ran back to back, so the ratio is taken per round
    // (paired) and its median reported; rates are medians too.
    const singleRatio = +median(rounds.map((round) => round.single / round.rawSingle)).toFixed(2);
    const batchRatio = +median(rounds.map((round) => round.batch / round.rawBatch)).toFixed(2);
    const singleRate = median(rounds.map((round) => round.single));
    const rawSingleRate = median(rounds.map((round) => round.rawSingle));
    const batchRate = median(rounds.map((round) => round.batch));
    const rawBatchRate = median(rounds.map((round) => round.rawBatch));

    const singleEmits = (url: string) =>
      httpLoad({ url: `${url}/v1/orgs/bench/signals`, method: 'POST', headers, body: JSON.stringify(signalBody), connections: SINGLE_CONCURRENCY });
    const limiter = await limiterCost(database.url, singleRate, singleEmits);

    const halfRate = Math.max(1, Math.round(singleRate / 2));
    console.log(`single emit latency at ${halfRate}/s (half the peak)…`);
    const paced = await emits('signals', JSON.stringify(signalBody), SINGLE_CONCURRENCY, { url: '', overallRate: halfRate });
    const peakRss = await server.peakRssMiB();

    const results = {
      single: { http_per_s: singleRate, raw_insert_per_s: rawSingleRate, ratio: singleRatio, target: 0.5 },
      batch: { http_per_s: batchRate, raw_insert_per_s: rawBatchRate, ratio: batchRatio, target: 0.7 },
      latency_at_half_peak: { rate_per_s: halfRate, p50_ms: paced.latency.p50, p99_ms: paced.latency.p99 },
      server_peak_rss_mib: peakRss,
      rate_limiter: limiter.results,
      rounds,
      settings: { single_concurrency: SINGLE_CONCURRENCY, batch_concurrency: BATCH_CONCURRENCY, batch_size: BATCH_SIZE, phase_seconds: PHASE_SECONDS, rounds: ROUNDS },
    };
    printTable(`ingest (signals per second; medians of ${ROUNDS} alternating rounds, ratio paired per round)`, [
      { case: `single emit (${SINGLE_CONCURRENCY} conns)`, signalbus: singleRate, baseline: rawSingleRate, ratio: results.single.ratio, target: '≥ 0.5' },
      { case: `batch of ${BATCH_SIZE} (${BATCH_CONCURRENCY} conns)`, signalbus: batchRate, baseline: rawBatchRate, ratio: results.batch.ratio, target: '≥ 0.7' },
    ]);
    printTable(`single emit with the rate limiter on (key and org at ${limiter.results.limit_per_s}/s), against off; medians of ${ROUNDS} alternating rounds`, [
      { case: `key and org limits (${SINGLE_CONCURRENCY} conns)`, signals_per_s: limiter.results.on_per_s, of_off: limiter.results.ratio, target: '≥ 0.95', of_floor: limiter.results.of_floor },
      { case: 'floor: the key limit alone (one leased bucket check)', signals_per_s: limiter.results.floor_per_s, of_off: limiter.results.floor_ratio, target: '', of_floor: 1 },
      { case: 'limiter off (baseline)', signals_per_s: limiter.results.off_per_s, of_off: 1, target: '', of_floor: '' },
    ]);
    printTable('single emit latency at half the peak rate', [
      { rate_per_s: halfRate, p50_ms: paced.latency.p50, p99_ms: paced.latency.p99, server_peak_rss_mib: peakRss },
    ]);
    console.log(`\n${JSON.stringify({ benchmark: 'ingest', ...results })}`);
  } finally {
    await raw.end({ timeout: 5 });
    await server.stop();
    await database.stop();
  }
}
