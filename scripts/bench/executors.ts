/**
 * Executors: `webhook.post` from approval to receipt at a loopback sink,
 * against a bare `fetch` loop to the same sink at the same concurrency, in
 * the same run.
 *
 * Directives are proposed under a require-approval rule (untimed), then
 * approved as fast as `BENCH_APPROVERS` loops can; a worker process with
 * `SIGNALBUS_WORKER_CONCURRENCY` jobs delivers them. The sink records when
 * each `webhook-id` arrives: latency is arrival − approval commit, throughput
 * is deliveries over first approval → last arrival. The baseline posts the
 * same signed-size body with `fetch` on as many loops as the worker runs jobs.
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
const APPROVERS = Number(process.env.BENCH_APPROVERS ?? 8);
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

    console.log(`webhook.post: proposing ${DELIVERIES} directives awaiting approval (untimed)…`);
    const ids: string[] = [];
    for (let index = 0; index < DELIVERIES; index += 100) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(100, DELIVERIES - index) }, (_, offset) =>
          proposeDirective(app.deps.bus.directives, {
            ctx,
            input: { kind: 'webhook.post', params: { url: sink.url, body: body(index + offset) }, idempotency_key: `bench-${index + offset}` },
            read: false,
          }),
        ),
      );
      ids.push(...batch.map((result) => result.directive.id));
    }
    sink.arrivals.clear();
    const worker = await startWorkerProcess(database.url, env);
    console.log(`webhook.post: approving on ${APPROVERS} loops, delivering on ${CONCURRENCY} worker jobs…`);
    const approvedAt = new Map<string, number>();
    const firstApproval = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: APPROVERS }, async () => {
        for (let index = next++; index < ids.length; index = next++) {
          const id = ids[index]!;
          await decideDirective(app.deps.bus.directives, { ctx, id, action: 'approve', reason: 'bench' });
          approvedAt.set(id, Date.now());
        }
      }),
    );
    const approvalsMs = Date.now() - firstApproval;
    const deadline = Date.now() + 300_000;
    while (ids.some((id) => !sink.arrivals.has(id))) {
      if (Date.now() > deadline) throw new Error(`only ${sink.arrivals.size} of ${ids.length} deliveries arrived`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const lastArrival = Math.max(...ids.map((id) => sink.arrivals.get(id)!));
    await worker.stop();
    const latencies = ids.map((id) => sink.arrivals.get(id)! - approvedAt.get(id)!);
    const rate = (DELIVERIES * 1000) / (lastArrival - firstApproval);

    printTable(`webhook.post vs bare fetch, ${DELIVERIES} deliveries, concurrency ${CONCURRENCY}`, [
      { path: 'bare fetch → sink', 'deliveries/s': Math.round(bare.rate), 'p50 ms': percentile(bare.latencies, 50), 'p99 ms': percentile(bare.latencies, 99) },
      { path: 'approve → webhook.post → sink', 'deliveries/s': Math.round(rate), 'p50 ms': percentile(latencies, 50), 'p99 ms': percentile(latencies, 99) },
    ]);
    console.log(`approvals: ${DELIVERIES} in ${approvalsMs} ms (${Math.round((DELIVERIES * 1000) / approvalsMs)}/s on ${APPROVERS} loops)`);
    const ratio = rate / bare.rate;
    console.log(`ratio (webhook.post / bare fetch): ${ratio.toFixed(2)} (target ≥ 0.5) ${ratio >= 0.5 ? 'met' : 'NOT met'}`);
  } finally {
    await sink.close();
    await app.close();
    await database.stop();
  }
}
