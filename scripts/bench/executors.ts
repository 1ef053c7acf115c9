/**
 * Executors: `webhook.post` to a loopback sink against a bare `fetch` loop to
 * the same sink at the same concurrency, in the same run.
 *
 * 1. Throughput, at each concurrency of `BENCH_CONCURRENCY` (a list), in
 *    `BENCH_ROUNDS` rounds whose paired ratios' median is reported: a
 *    backlog of approved directives (proposed under a require-approval rule
 *    and approved before the worker starts) drained by one worker process
 *    making that many provider calls at once (`SIGNALBUS_EXECUTOR_CONCURRENCY`),
 *    from the first arrival to the last — against `fetch` posting as many
 *    deliveries on as many loops, and against graphile-worker jobs that only
 *    post (the job queue's own share). CPU per delivery of each process
 *    shows where the time goes.
 * 2. Latency: approvals at a steady `BENCH_RATE` per second with the worker
 *    running at the default concurrency, from each approval's commit to its
 *    arrival at the sink (p50, p99) — against each `fetch`'s send → arrival.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { Logger as GraphileLogger, run } from 'graphile-worker';
import pg from 'pg';
import { createApp } from '../../src/app.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { parseConfig } from '../../src/config.ts';
import { addUncheckedJobs } from '../../src/db/jobs.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { decideDirective } from '../../src/directives/transitions.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { generateMasterKeys } from '../../src/secrets/keys.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { benchDatabase, median, percentile, postgresCpuMs, printTable, processCpuMs, startWorkerProcess } from './support.ts';

const DELIVERIES = Number(process.env.BENCH_DELIVERIES ?? 2000);
const CONCURRENCIES = (process.env.BENCH_CONCURRENCY ?? '8,64').split(',').map(Number);
const APPROVERS = 8;
const RATE = Number(process.env.BENCH_RATE ?? 50);
/** Throughput rounds per concurrency; ratios are paired per round and their median reported. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LATENCY_SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SIGNING_SECRET = `whsec_${Buffer.from('signalbus-bench-signing-secret!!').toString('base64')}`;

interface Sink {
  url: string;
  /** Arrival time (performance.timeOrigin-based ms) by webhook-id, or by request number for unsigned requests. */
  arrivals: Map<string, number>;
  close(): Promise<void>;
}

/** A minimal loopback receiver: reads the body, answers 204, notes the arrival. */
async function startSink(): Promise<Sink> {
  const arrivals = new Map<string, number>();
  let unsigned = 0;
  const server: Server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      const id = request.headers['webhook-id'];
      arrivals.set(typeof id === 'string' ? id : `bare-${++unsigned}`, Date.now());
      response.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/hooks/bench`,
    arrivals,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const body = (index: number) => ({ type: 'order.paid', data: { order: `ord_${index}`, amount: 4200, currency: 'eur', note: 'x'.repeat(200) } });

/** CPU µs per delivery: this process (load and sink), the worker, PostgreSQL. */
interface CpuPerDelivery {
  bench: number;
  worker: number;
  postgres: number;
}

async function cpuSnapshot(workerPid?: number) {
  return { bench: process.cpuUsage(), worker: workerPid ? await processCpuMs(workerPid) : 0, postgres: await postgresCpuMs() };
}

async function cpuPerDelivery(before: Awaited<ReturnType<typeof cpuSnapshot>>, workerPid: number | undefined, deliveries: number): Promise<CpuPerDelivery> {
  const after = await cpuSnapshot(workerPid);
  const bench = process.cpuUsage(before.bench);
  const perDelivery = (ms: number) => Math.round((ms * 1000) / deliveries);
  return { bench: perDelivery((bench.user + bench.system) / 1000), worker: perDelivery(after.worker - before.worker), postgres: perDelivery(after.postgres - before.postgres) };
}

async function post(sink: Sink, index: number): Promise<void> {
  const response = await fetch(sink.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body(index)),
    redirect: 'manual',
  });
  await response.arrayBuffer();
  if (response.status !== 204) throw new Error(`sink answered ${response.status}`);
}

async function bareFetch(sink: Sink, concurrency: number): Promise<{ rate: number; latencies: number[]; cpu: CpuPerDelivery }> {
  sink.arrivals.clear();
  const latencies: number[] = [];
  let next = 0;
  const cpuBefore = await cpuSnapshot();
  const started = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let index = next++; index < DELIVERIES; index = next++) {
        const sent = Date.now();
        await post(sink, index);
        latencies.push(Date.now() - sent);
      }
    }),
  );
  const rate = (DELIVERIES * 1000) / (Date.now() - started);
  return { rate, latencies, cpu: await cpuPerDelivery(cpuBefore, undefined, DELIVERIES) };
}

const firstToLast = (arrivals: number[]) => ((arrivals.length - 1) * 1000) / (Math.max(...arrivals) - Math.min(...arrivals));

/**
 * The job queue's own share: graphile-worker jobs, fetched in batches as the
 * executions' runner fetches them, each making one bare POST — no signals,
 * no claim, no outcome. Runs in this process, beside the sink, as the bare
 * loop does.
 */
async function queueAndFetch(databaseUrl: string, sql: Parameters<typeof addUncheckedJobs>[0], sink: Sink, concurrency: number): Promise<number> {
  await addUncheckedJobs(sql, Array.from({ length: DELIVERIES }, (_, index) => ({ identifier: 'bench_bare_post', payload: { index } })));
  sink.arrivals.clear();
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  let done = 0;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const runner = await run({
    pgPool: pool,
    concurrency,
    noHandleSignals: true,
    pollInterval: 1000,
    parsedCronItems: [],
    logger: new GraphileLogger(() => () => {}),
    preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0, localQueue: { size: concurrency * 2 } } },
    taskList: {
      bench_bare_post: async (payload) => {
        await post(sink, (payload as { index: number }).index);
        if (++done === DELIVERIES) finish();
      },
    },
  });
  await finished;
  const rate = firstToLast([...sink.arrivals.values()]);
  await runner.stop();
  await pool.end();
  return rate;
}

export async function runExecutorsBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  const masterKeys = generateMasterKeys('bench');
  const env: Record<string, string> = {
    LOG_LEVEL: 'warn',
    SIGNALBUS_ENCRYPTION_KEYS: masterKeys,
    SIGNALBUS_ALLOW_PRIVATE_TARGETS: 'true',
  };
  const config = parseConfig(env);
  const app = await createApp(config, { databaseUrl: database.url, logger: createLogger('warn') });
  const sink = await startSink();
  try {
    const { tenant } = await provisionOrg(app.deps, { input: { slug: 'bench', name: 'Bench' } });
    const ctx = { tenant, actor: PLATFORM_ACTOR, source: 'system' };
    await updatePolicy(app.deps.bus.emit, { ctx, input: { rules: [{ id: 'review-webhooks', match: 'webhook.*', effect: 'require_approval' }] } });
    await putSecret(app.deps.vault, { tenant, name: 'webhook_signing_secret', input: { value: SIGNING_SECRET } });

    const approve = async (id: string) => {
      await decideDirective(app.deps.bus.directives, { ctx, input: { id, action: 'approve', reason: 'bench' } });
      return Date.now();
    };
    const propose = async (count: number, tag: string): Promise<string[]> => {
      const ids: string[] = [];
      for (let index = 0; index < count; index += 100) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(100, count - index) }, (_, offset) =>
            proposeDirective(app.deps.bus.directives, {
              ctx,
              input: { kind: 'webhook.post', params: { url: sink.url, body: body(index + offset) }, idempotency_key: `bench-${tag}-${index + offset}` },
              read: false,
            }),
          ),
        );
        ids.push(...batch.map((result) => result.directive.id));
      }
      return ids;
    };
    // Deliveries arrive about in order: a cursor over `ids` checks each once,
    // where scanning them all every poll cost the process hosting the sink a
    // share of the cores the worker is measured on.
    const arrived = async (ids: string[]) => {
      const deadline = Date.now() + 300_000;
      let next = 0;
      for (;;) {
        while (next < ids.length && sink.arrivals.has(ids[next]!)) next++;
        if (next === ids.length) return;
        if (Date.now() > deadline) throw new Error(`only ${ids.filter((id) => sink.arrivals.has(id)).length} of ${ids.length} deliveries arrived`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };

    const rounds: Array<{ concurrency: number; bare: Awaited<ReturnType<typeof bareFetch>>; queued: number; rate: number; ratio: number; cpu: CpuPerDelivery }> = [];
    for (const concurrency of CONCURRENCIES) {
      // Rounds measure both sides back to back, so each ratio pairs figures
      // taken under the same conditions; the medians are reported.
      const paired: typeof rounds = [];
      for (let round = 1; round <= ROUNDS; round++) {
        console.log(`round ${round}/${ROUNDS} at ${concurrency}: bare fetch, ${DELIVERIES} POSTs on ${concurrency} loops…`);
        if (round === 1) await bareFetch(sink, concurrency); // warm-up: sockets, JIT
        const bare = await bareFetch(sink, concurrency);
        console.log(`round ${round}/${ROUNDS} at ${concurrency}: graphile-worker job → fetch, ${DELIVERIES} jobs…`);
        const queued = await queueAndFetch(database.url, app.deps.sql, sink, concurrency);

        console.log(`round ${round}/${ROUNDS} at ${concurrency}: webhook.post, ${DELIVERIES} directives proposed and approved before the worker starts (untimed)…`);
        const backlog = await propose(DELIVERIES, `backlog-${concurrency}-${round}`);
        for (let index = 0; index < backlog.length; index += APPROVERS) await Promise.all(backlog.slice(index, index + APPROVERS).map(approve));
        sink.arrivals.clear();
        const worker = await startWorkerProcess(database.url, { ...env, SIGNALBUS_EXECUTOR_CONCURRENCY: String(concurrency) });
        const cpuBefore = await cpuSnapshot(worker.child.pid);
        await arrived(backlog);
        const cpu = await cpuPerDelivery(cpuBefore, worker.child.pid, DELIVERIES);
        await worker.stop();
        // From the first arrival, so the worker's start-up is not counted.
        const rate = firstToLast(backlog.map((id) => sink.arrivals.get(id)!));
        console.log(`  bare fetch ${Math.round(bare.rate)}/s, webhook.post ${Math.round(rate)}/s, ratio ${(rate / bare.rate).toFixed(2)}`);
        paired.push({ concurrency, bare, queued, rate, ratio: rate / bare.rate, cpu });
      }
      // The round of the median ratio stands for the concurrency, with the medians of each figure beside it.
      const byRatio = [...paired].sort((a, b) => a.ratio - b.ratio);
      const middle = byRatio[Math.floor(byRatio.length / 2)]!;
      const medianOf = (pick: (round: (typeof paired)[number]) => number) => median(paired.map(pick));
      rounds.push({
        ...middle,
        bare: { ...middle.bare, rate: medianOf((round) => round.bare.rate) },
        queued: medianOf((round) => round.queued),
        rate: medianOf((round) => round.rate),
        cpu: {
          bench: medianOf((round) => round.cpu.bench),
          worker: medianOf((round) => round.cpu.worker),
          postgres: medianOf((round) => round.cpu.postgres),
        },
      });
    }

    console.log(`webhook.post latency: approvals at ${RATE}/s for ${LATENCY_SECONDS} s with the worker running…`);
    const worker = await startWorkerProcess(database.url, env);
    // Untimed: a fresh worker's first deliveries open its connections and warm its code.
    const warmUp = await propose(100, 'warm-up');
    await Promise.all(warmUp.map(approve));
    await arrived(warmUp);
    const paced = await propose(RATE * LATENCY_SECONDS, 'paced');
    const approvedAt = new Map<string, number>();
    const pacingStarted = performance.now();
    const pending: Promise<void>[] = [];
    for (const [index, id] of paced.entries()) {
      const wait = pacingStarted + (index * 1000) / RATE - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      pending.push(approve(id).then((at) => void approvedAt.set(id, at)));
    }
    await Promise.all(pending);
    await arrived(paced);
    await worker.stop();
    const latencies = paced.map((id) => sink.arrivals.get(id)! - approvedAt.get(id)!);

    printTable(`webhook.post vs bare fetch to a loopback sink: throughput at the same concurrency (medians of ${ROUNDS} rounds)`, rounds.map(({ concurrency, bare, queued, rate, ratio }) => ({
      concurrency,
      'bare fetch /s': Math.round(bare.rate),
      'job → fetch /s': Math.round(queued),
      'job → fetch ratio': +(queued / bare.rate).toFixed(2),
      'webhook.post /s': Math.round(rate),
      'ratio (paired median)': +ratio.toFixed(2),
    })));
    printTable('CPU µs per delivery (bench = load and sink)', rounds.flatMap(({ concurrency, bare, cpu }) => [
      { concurrency, path: 'bare fetch', bench: bare.cpu.bench, worker: '', postgres: '' },
      { concurrency, path: 'webhook.post', bench: cpu.bench, worker: cpu.worker, postgres: cpu.postgres },
    ]));
    const bareLatencies = rounds[0]!.bare.latencies;
    printTable(`latency at ${RATE}/s: webhook.post from approval commit to arrival; fetch (at ${rounds[0]!.concurrency}) from send to arrival`, [
      { path: 'bare fetch → sink', 'p50 ms': percentile(bareLatencies, 50), 'p99 ms': percentile(bareLatencies, 99) },
      { path: 'approved → webhook.post → sink', 'p50 ms': percentile(latencies, 50), 'p99 ms': percentile(latencies, 99) },
    ]);
    for (const { concurrency, ratio } of rounds) {
      console.log(`throughput ratio at concurrency ${concurrency} (webhook.post / bare fetch, paired median of ${ROUNDS}): ${ratio.toFixed(2)} (target ≥ 0.5) ${ratio >= 0.5 ? 'met' : 'NOT met'}`);
    }
  } finally {
    await sink.close();
    await app.close();
    await database.stop();
  }
}
