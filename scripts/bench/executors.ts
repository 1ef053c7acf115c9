/**
 * Executors: `webhook.post` to a loopback sink against a bare `fetch` loop to
 * the same sink at the same concurrency, in the same run.
 *
 * 1. Throughput: a backlog of approved directives (proposed under a
 *    require-approval rule and approved before the worker starts) drained by
 *    one worker process running `SIGNALBUS_WORKER_CONCURRENCY` jobs, from its
 *    start to the last arrival — against `fetch` posting as many deliveries on
 *    as many loops.
 * 2. Latency: approvals at a steady `BENCH_RATE` per second with the worker
 *    running, from each approval's commit to its arrival at the sink (p50,
 *    p99) — against each `fetch`'s send → arrival.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { createApp } from '../../src/app.ts';
import { PLATFORM_ACTOR } from '../../src/auth/actor.ts';
import { parseConfig } from '../../src/config.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { decideDirective } from '../../src/directives/transitions.ts';
import { updatePolicy } from '../../src/policy/store.ts';
import { generateMasterKeys } from '../../src/secrets/keys.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { benchDatabase, percentile, printTable, startWorkerProcess } from './support.ts';

const DELIVERIES = Number(process.env.BENCH_DELIVERIES ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const APPROVERS = 8;
const RATE = Number(process.env.BENCH_RATE ?? 50);
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

async function bareFetch(sink: Sink): Promise<{ rate: number; latencies: number[] }> {
  sink.arrivals.clear();
  const latencies: number[] = [];
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let index = next++; index < DELIVERIES; index = next++) {
        const sent = Date.now();
        const response = await fetch(sink.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body(index)),
          redirect: 'manual',
        });
        await response.arrayBuffer();
        if (response.status !== 204) throw new Error(`sink answered ${response.status}`);
        latencies.push(Date.now() - sent);
      }
    }),
  );
  return { rate: (DELIVERIES * 1000) / (Date.now() - started), latencies };
}

export async function runExecutorsBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  const masterKeys = generateMasterKeys('bench');
  const env = {
    LOG_LEVEL: 'warn',
    SIGNALBUS_ENCRYPTION_KEYS: masterKeys,
    SIGNALBUS_ALLOW_PRIVATE_TARGETS: 'true',
    SIGNALBUS_WORKER_CONCURRENCY: String(CONCURRENCY),
  };
  const config = parseConfig(env);
  const app = await createApp(config, { databaseUrl: database.url, logger: createLogger('warn') });
  const sink = await startSink();
  try {
    const { tenant } = await provisionOrg(app.deps, { input: { slug: 'bench', name: 'Bench' } });
    const ctx = { tenant, actor: PLATFORM_ACTOR, source: 'system' };
    await updatePolicy(app.deps.bus.emit, { ctx, input: { rules: [{ id: 'review-webhooks', match: 'webhook.*', effect: 'require_approval' }] } });
    await putSecret(app.deps.vault, { tenant, name: 'webhook_signing_secret', input: { value: SIGNING_SECRET } });

    console.log(`bare fetch: ${DELIVERIES} POSTs on ${CONCURRENCY} loops…`);
    await bareFetch(sink); // warm-up: sockets, JIT
    const bare = await bareFetch(sink);

    const approve = async (id: string) => {
      await decideDirective(app.deps.bus.directives, { ctx, id, action: 'approve', reason: 'bench' });
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
    const arrived = async (ids: string[]) => {
      const deadline = Date.now() + 300_000;
      while (ids.some((id) => !sink.arrivals.has(id))) {
        if (Date.now() > deadline) throw new Error(`only ${ids.filter((id) => sink.arrivals.has(id)).length} of ${ids.length} deliveries arrived`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };

    console.log(`webhook.post throughput: ${DELIVERIES} directives proposed and approved before the worker starts (untimed)…`);
    const backlog = await propose(DELIVERIES, 'backlog');
    for (let index = 0; index < backlog.length; index += APPROVERS) await Promise.all(backlog.slice(index, index + APPROVERS).map(approve));
    sink.arrivals.clear();
    const worker = await startWorkerProcess(database.url, env);
    await arrived(backlog);
    // From the first arrival, so the worker's start-up is not counted.
    const arrivals = backlog.map((id) => sink.arrivals.get(id)!);
    const rate = ((DELIVERIES - 1) * 1000) / (Math.max(...arrivals) - Math.min(...arrivals));

    console.log(`webhook.post latency: approvals at ${RATE}/s for ${LATENCY_SECONDS} s with the worker running…`);
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

    printTable(`webhook.post vs bare fetch to a loopback sink, concurrency ${CONCURRENCY}`, [
      { path: 'bare fetch → sink', 'deliveries/s': Math.round(bare.rate), 'p50 ms': percentile(bare.latencies, 50), 'p99 ms': percentile(bare.latencies, 99) },
      { path: 'approved → webhook.post → sink', 'deliveries/s': Math.round(rate), 'p50 ms': percentile(latencies, 50), 'p99 ms': percentile(latencies, 99) },
    ]);
    console.log(`latency: webhook.post from approval commit to arrival at ${RATE}/s; fetch from send to arrival`);
    const ratio = rate / bare.rate;
    console.log(`throughput ratio (webhook.post / bare fetch): ${ratio.toFixed(2)} (target ≥ 0.5) ${ratio >= 0.5 ? 'met' : 'NOT met'}`);
  } finally {
    await sink.close();
    await app.close();
    await database.stop();
  }
}
