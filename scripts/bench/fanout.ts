/**
 * Fan-out: what subscriptions, the dispatcher and the handler pipeline cost,
 * each against a baseline measured in the same run on the same embedded
 * PostgreSQL.
 *
 * 1. End-to-end latency, HTTP emit → its directive's `noop.record` execution
 *    committed (one handler proposing one allowed directive), at a steady
 *    200 signals/s, against a bare graphile-worker job's add → start latency.
 * 2. Ingest rate with three subscriptions matching every signal (their
 *    dispatcher running, enqueueing three jobs per signal) against none.
 * 3. Fan-out throughput: handler jobs dispatched per second from a
 *    50,000-signal backlog against raw batched `add_jobs` of as many jobs.
 * 4. Full-pipeline throughput: signals carried through to executed
 *    directives per second, every process on this machine's cores.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { run } from 'graphile-worker';
import { createApp } from '../../src/app.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { parseConfig } from '../../src/config.ts';
import { newId } from '../../src/core/ids.ts';
import { createSql, type Sql } from '../../src/db/client.ts';
import { addJobs } from '../../src/db/jobs.ts';
import { migratePublicSchema, PROJECT_ROOT } from '../../src/db/migrate.ts';
import { HANDLE_SIGNAL } from '../../src/core/jobs.ts';
import { dispatchOnce } from '../../src/handlers/dispatcher.ts';
import { createOrgHandlers } from '../../src/handlers/org-handlers.ts';
import { subscribe } from '../../src/handlers/subscriptions.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { emitBatch } from '../../src/signals/emit.ts';
import { currentHorizon } from '../../src/signals/read.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { graphileLogger } from '../../src/worker/runner.ts';
import { BENCH_HANDLERS } from './fanout-handlers.ts';
import { builtinPipeline, PIPELINE_SIGNALS } from './pipeline.ts';
import { benchDatabase, median, percentile, printTable, startServer, startWorkerProcess } from './support.ts';

const RATE = 200;
const LATENCY_SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const INGEST_SECONDS = 4;
const INGEST_ROUNDS = 5;
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 50_000);
/** `BENCH_PHASES=latency,ingest,dispatch,pipeline` (default all) runs a subset. */
const PHASES = new Set((process.env.BENCH_PHASES ?? 'latency,ingest,dispatch,pipeline').split(','));

/** Calls `fire` `rate` times a second for `seconds`, on schedule, without waiting for answers. */
async function openLoop(rate: number, seconds: number, fire: (index: number) => Promise<unknown>): Promise<void> {
  const started = performance.now();
  const pending: Promise<unknown>[] = [];
  for (let index = 0; index < rate * seconds; index++) {
    const due = started + (index * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    pending.push(fire(index));
  }
  await Promise.all(pending);
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function clearJobs(sql: Sql) {
  await sql`delete from graphile_worker._private_jobs`;
}

export async function runFanoutBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  const config = parseConfig({ LOG_LEVEL: 'warn' });
  const app = await createApp(config, { databaseUrl: database.url, logger: createLogger('warn') });
  const { tenant } = await provisionOrg(app.deps, { input: { slug: 'bench', name: 'Bench' } });
  const { secret } = await createApiKey(app.deps, {
    tenant,
    input: { name: 'bench', role: 'operator', actor: { type: 'human', id: 'bench@acme.test' } },
    by: PLATFORM_ACTOR,
  });
  await updatePolicy(app.deps.bus.emit, {
    ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system' },
    input: { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }] },
  });
  const sql = app.deps.sql;
  const server = await startServer(database.url, { LOG_LEVEL: 'warn' });
  const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' };
  const emitOne = (body: object) =>
    fetch(`${server.url}/v1/orgs/bench/signals`, { method: 'POST', headers, body: JSON.stringify(body) }).then(async (response) => {
      if (response.status !== 201) throw new Error(`emit answered ${response.status}`);
      await response.arrayBuffer();
    });
  const results: Record<string, unknown> = {};

  try {
    // 1. End-to-end latency against a bare job's add → start.
    const latency = async () => {
      const worker = await startWorkerProcess(database.url, { BENCH_HANDLERS: 'proposer' });
      const latencyPhase = async (phase: string, seconds: number, rate = RATE) => {
        await openLoop(rate, seconds, (index) =>
          emitOne({ type: 'shop.order.placed', subject: `customer:${index % 50}`, payload: { phase, sent_at: Date.now() } }),
        );
        const expected = rate * seconds;
        await waitUntil('directives to execute', async () => {
          const [row] = await sql<{ n: number }[]>`
            select count(*)::int as n from org_bench.directives d join org_bench.signals s on s.id = d.causation_id
             where d.status = 'succeeded' and s.payload->>'phase' = ${phase}`;
          return row!.n >= expected;
        });
        return sql<{ ms: number }[]>`
          select extract(epoch from done.recorded_at) * 1000 - (s.payload->>'sent_at')::float8 as ms
            from org_bench.signals s
            join org_bench.directives d on d.causation_id = s.id
            join org_bench.signals done on done.type = 'directive.succeeded' and done.payload->>'directive_id' = d.id
           where s.type = 'shop.order.placed' and s.payload->>'phase' = ${phase}`;
      };
      console.log(`end-to-end latency at ${RATE} signals/s: warm-up, then ${LATENCY_SECONDS}s…`);
      await latencyPhase('warmup', 3);
      const pipelineLatencies = (await latencyPhase('latency', LATENCY_SECONDS)).map((row) => row.ms);
      // Context, not the target: the same path at a rate well inside the pipeline's capacity.
      const lowRate = RATE / 4;
      const lowRateLatencies = (await latencyPhase('latency_low', LATENCY_SECONDS, lowRate)).map((row) => row.ms);
      // Where the time goes, stage by stage, at the low rate (p50, ms).
      const [stages] = await sql<Record<string, number>[]>`
        with runs as (
          select extract(epoch from s.recorded_at) * 1000 - (s.payload->>'sent_at')::float8 as emit,
                 extract(epoch from p.recorded_at - s.recorded_at) * 1000 as to_proposed,
                 extract(epoch from (e.payload->>'started_at')::timestamptz - p.recorded_at) * 1000 as to_started,
                 extract(epoch from d.recorded_at - (e.payload->>'started_at')::timestamptz) * 1000 as to_executed
            from org_bench.signals s
            join org_bench.directives dir on dir.causation_id = s.id
            join org_bench.signals p on p.type = 'directive.proposed' and p.payload->>'directive_id' = dir.id
            join org_bench.signals e on e.type = 'execution.succeeded' and e.payload->>'directive_id' = dir.id
            join org_bench.signals d on d.type = 'directive.succeeded' and d.payload->>'directive_id' = dir.id
           where s.type = 'shop.order.placed' and s.payload->>'phase' = 'latency_low')
        select round(percentile_cont(0.5) within group (order by emit)::numeric, 1)::float8 as emit_ms,
               round(percentile_cont(0.5) within group (order by to_proposed)::numeric, 1)::float8 as to_proposed_ms,
               round(percentile_cont(0.5) within group (order by to_started)::numeric, 1)::float8 as to_started_ms,
               round(percentile_cont(0.5) within group (order by to_executed)::numeric, 1)::float8 as to_executed_ms
          from runs`;
      await worker.stop();

      console.log(`bare graphile-worker job add → start at ${RATE}/s…`);
      const bareLatencies: number[] = [];
      const bareRunner = await run({
        connectionString: database.url,
        concurrency: config.SIGNALBUS_WORKER_CONCURRENCY,
        noHandleSignals: true,
        pollInterval: 1000,
        parsedCronItems: [],
        logger: graphileLogger(createLogger('warn')),
        taskList: {
          bench_noop: async (payload) => {
            bareLatencies.push(Date.now() - (payload as { sent_at: number }).sent_at);
          },
        },
      });
      const adder = createSql(database.url, { max: 4 });
      const bare = async (seconds: number) =>
        // execute(): postgres.js queries are lazy, and this one must leave now, not when awaited.
        openLoop(RATE, seconds, () => adder`select graphile_worker.add_job('bench_noop', json_build_object('sent_at', ${Date.now()}::bigint))`.execute());
      await bare(3);
      await waitUntil('bare jobs', async () => bareLatencies.length >= RATE * 3);
      bareLatencies.length = 0;
      await bare(LATENCY_SECONDS);
      await waitUntil('bare jobs', async () => bareLatencies.length >= RATE * LATENCY_SECONDS);
      await bareRunner.stop();
      await adder.end({ timeout: 5 });
      const latency = {
        pipeline_p50_ms: percentile(pipelineLatencies, 50),
        pipeline_p99_ms: percentile(pipelineLatencies, 99),
        bare_job_p50_ms: percentile(bareLatencies, 50),
        bare_job_p99_ms: percentile(bareLatencies, 99),
        ratio_p50: +(percentile(pipelineLatencies, 50) / Math.max(0.1, percentile(bareLatencies, 50))).toFixed(2),
        target: '≤ 3',
      };
      results.latency = {
        ...latency,
        at_low_rate: { rate_per_s: lowRate, p50_ms: percentile(lowRateLatencies, 50), p99_ms: percentile(lowRateLatencies, 99), stages_p50: stages },
      };
      printTable(`end-to-end latency at ${RATE} signals/s (ms)`, [latency]);
      printTable(`for context: end-to-end latency at ${lowRate} signals/s (ms)`, [
        { p50_ms: percentile(lowRateLatencies, 50), p99_ms: percentile(lowRateLatencies, 99), ...stages },
      ]);
    };

    // 2. Ingest with three subscriptions (their dispatcher running) against none.
    const ingest = async () => {
      console.log('ingest with 3 subscriptions vs none…');
      const ingestRate = async (seconds = INGEST_SECONDS) => {
        const result = await autocannon({
          url: `${server.url}/v1/orgs/bench/signals`,
          method: 'POST',
          headers,
          body: JSON.stringify({ type: 'shop.cart.updated', subject: 'customer:1', payload: { items: 3 } }),
          connections: 16,
          duration: seconds,
        });
        if (result.non2xx > 0 || result.errors > 0) throw new Error(`ingest had ${result.non2xx} non-2xx and ${result.errors} errors`);
        return Math.round(result['2xx'] / result.duration);
      };
      await ingestRate();
      const ingestRounds: Array<{ none: number; three: number; jobs_enqueued: number }> = [];
      for (let round = 0; round < INGEST_ROUNDS; round++) {
        await clearJobs(sql);
        const none = await ingestRate();
        // The subscriptions start at the present: the dispatcher carries this phase's signals, not the last one's.
        for (const handler of ['bench.a', 'bench.b', 'bench.c']) await subscribe(sql, tenant, handler, 'now');
        const dispatcher = await startWorkerProcess(database.url, { BENCH_HANDLERS: 'a,b,c', BENCH_MODE: 'dispatch' });
        // A fresh process: its JIT warms on a second of load before anything counts.
        await ingestRate(1);
        const three = await ingestRate();
        await sleep(500);
        await dispatcher.stop();
        const [jobs] = await sql<{ n: number }[]>`select count(*)::int as n from graphile_worker._private_jobs`;
        ingestRounds.push({ none, three, jobs_enqueued: jobs!.n });
      }
      await clearJobs(sql);
      const ingestResult = {
        none_per_s: median(ingestRounds.map((round) => round.none)),
        three_subscriptions_per_s: median(ingestRounds.map((round) => round.three)),
        ratio: +median(ingestRounds.map((round) => round.three / round.none)).toFixed(2),
        target: '≥ 0.8',
      };
      results.ingest = { ...ingestResult, rounds: ingestRounds };
      printTable('ingest (single emits/s over HTTP, 16 connections; medians, ratio paired per round)', [ingestResult]);
    };

    // 3. Dispatch throughput from a backlog against raw add_jobs.
    const dispatch = async () => {
      console.log(`building a ${BACKLOG}-signal backlog…`);
      const start = (await currentHorizon(sql)).cursor;
      const ctx = { tenant, actor: { type: 'system' as const, id: 'bench' }, source: 'bench' };
      for (let done = 0; done < BACKLOG; done += 1000) {
        await emitBatch(app.deps.bus.emit, {
          ctx,
          inputs: Array.from({ length: Math.min(1000, BACKLOG - done) }, (_, i) => ({ type: 'shop.order.shipped', subject: `customer:${(done + i) % 500}`, payload: { n: done + i } })),
        });
      }
      const registry = createOrgHandlers({ builtins: [BENCH_HANDLERS.a!] });
      const dispatchRounds: Array<{ dispatcher: number; raw: number }> = [];
      for (let round = 0; round < 2; round++) {
        await clearJobs(sql);
        await subscribe(sql, tenant, 'bench.a', start);
        let started = performance.now();
        let jobs = 0;
        for (;;) {
          const result = await dispatchOnce({ sql, handlers: registry }, tenant);
          jobs += result.jobs;
          if (!result.full) break;
        }
        const dispatcherRate = Math.round(jobs / ((performance.now() - started) / 1000));
        await clearJobs(sql);
        started = performance.now();
        for (let done = 0; done < jobs; done += 1000) {
          await sql.begin(async (tx) =>
            addJobs(
              tx,
              Array.from({ length: Math.min(1000, jobs - done) }, () => ({
                identifier: HANDLE_SIGNAL,
                payload: { org_id: tenant.id, handler: 'bench.a', signal_id: newId('signal'), execution_id: newId('execution'), attempt: 1, traceparent: null },
              })),
            ),
          );
        }
        const rawRate = Math.round(jobs / ((performance.now() - started) / 1000));
        if (jobs < BACKLOG) throw new Error(`dispatched ${jobs} jobs for a ${BACKLOG}-signal backlog`);
        dispatchRounds.push({ dispatcher: dispatcherRate, raw: rawRate });
      }
      await clearJobs(sql);
      const dispatch = {
        dispatcher_jobs_per_s: median(dispatchRounds.map((round) => round.dispatcher)),
        raw_add_jobs_per_s: median(dispatchRounds.map((round) => round.raw)),
        ratio: +median(dispatchRounds.map((round) => round.dispatcher / round.raw)).toFixed(2),
        target: '≥ 0.5',
      };
      results.dispatch = { ...dispatch, rounds: dispatchRounds, backlog: BACKLOG };
      printTable(`fan-out from a ${BACKLOG}-signal backlog (jobs/s)`, [dispatch]);
    };

    // 4. Full pipeline: signals through to executed directives.
    const pipeline = async () => {
      console.log(`full pipeline: ${PIPELINE_SIGNALS} signals to executed directives…`);
      const worker = await startWorkerProcess(database.url, { BENCH_HANDLERS: 'proposer' });
      const measured = await builtinPipeline({ sql, serverUrl: server.url, org: 'bench', headers });
      await worker.stop();
      const pipeline = { ...measured, worker_concurrency: config.SIGNALBUS_WORKER_CONCURRENCY };
      results.pipeline = pipeline;
      printTable('full pipeline (HTTP batch emit → handler → policy → noop.record executed)', [pipeline]);
    };

    for (const [name, phase] of Object.entries({ latency, ingest, dispatch, pipeline })) {
      if (PHASES.has(name)) await phase();
    }
    console.log(`\n${JSON.stringify({ benchmark: 'fanout', ...results })}`);
  } finally {
    await server.stop();
    await app.close();
    await database.stop();
  }
}
