/**
 * Hooks: signed Stripe deliveries through `POST /v1/hooks/:installation_id`
 * of an installed stripe-revenue, against the plain emit route
 * (`POST /v1/orgs/:org/signals`) with the same events, at the same
 * concurrency, on one `signalbus serve` process, in one run. Every request
 * carries a new event (a new id, so a new signal on both sides); deliveries
 * are signed as they are sent, as Stripe would. A third server, the floor
 * (scripts/bench/hooks-floor-server.ts), takes the same emits and writes a
 * delivery log row in each one's transaction. Rounds rotate the three; the
 * ratios are taken per round and their medians reported.
 *
 * Before that (scripts/bench/hooks-pipeline.ts), the pipeline phase: the
 * same deliveries carried through to executed refunds by a rule handler,
 * against the built-in handler pipeline of `fanout`.
 *
 * BENCH_SECONDS (default 3) per phase, BENCH_ROUNDS (default 3);
 * BENCH_PHASES `pipeline,ingest` (default both); BENCH_PIPELINE_SIGNALS
 * (default 5000) and BENCH_PIPELINE_ROUNDS (default 3); BENCH_HOOKS_ENTITIES=0
 * serves stripe-revenue without its entity projections.
 */
import autocannon from 'autocannon';
import Stripe from 'stripe';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { createApp } from '../../src/app.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { parseConfig } from '../../src/config.ts';
import { migratePublicSchema } from '../../src/db/migrate.ts';
import { runInstallationJob } from '../../src/packages/installation-job.ts';
import { getInstallation } from '../../src/packages/installation-read.ts';
import { installPackage } from '../../src/packages/installations.ts';
import { generateMasterKeys } from '../../src/secrets/keys.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import { benchRegistry, FAKE_STRIPE_KEY, runHooksPipeline } from './hooks-pipeline.ts';
import { benchDatabase, median, printTable, startServer, type ServerProcess } from './support.ts';

const CONCURRENCY = 16;
const PHASE_SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WHSEC = 'whsec_bench_hooks_signing_secret';
const PHASES = new Set((process.env.BENCH_PHASES ?? 'pipeline,ingest').split(','));
const ENTITIES = process.env.BENCH_HOOKS_ENTITIES !== '0';

let sequence = 0;
/** A Stripe `charge.succeeded` event, new each call. */
function stripeEvent() {
  sequence++;
  return {
    id: `evt_bench_${sequence}_${process.hrtime.bigint()}`,
    object: 'event',
    type: 'charge.succeeded',
    created: Math.floor(Date.now() / 1000),
    data: { object: { id: `ch_bench_${sequence}`, object: 'charge', amount: 4200, currency: 'eur', customer: 'cus_bench_42', payment_intent: `pi_bench_${sequence}` } },
  };
}

async function load(server: ServerProcess, next: () => { path: string; headers: Record<string, string>; body: string }, seconds = PHASE_SECONDS): Promise<number> {
  const result = await autocannon({
    url: server.url,
    connections: CONCURRENCY,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        setupRequest: (request) => {
          const { path, headers, body } = next();
          return { ...request, path, body, headers: { ...request.headers, 'content-type': 'application/json', ...headers } };
        },
      },
    ],
  });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`load run had ${result.non2xx} non-2xx answers and ${result.errors} errors`);
  return Math.round(result['2xx'] / result.duration);
}

export async function runHooksBench(): Promise<void> {
  const database = await benchDatabase();
  await migratePublicSchema(database.url);
  const masterKeys = generateMasterKeys('bench');
  // The pipeline needs the bench rule; the ingest phases alone, with entities, run the shipped registry.
  const registry = PHASES.has('pipeline') || !ENTITIES ? await benchRegistry({ refundRule: PHASES.has('pipeline'), entities: ENTITIES }) : undefined;
  const setup = await createApp(parseConfig({ LOG_LEVEL: 'warn' }), { databaseUrl: database.url, logger: createLogger('warn'), masterKeys, registryDir: registry?.dir });
  const { tenant } = await provisionOrg(setup.deps, { input: { slug: 'bench', name: 'Bench' } });
  const { secret } = await createApiKey(setup.deps, {
    tenant,
    input: { name: 'bench', role: 'operator', actor: { type: 'human', id: 'bench@acme.test' } },
    by: PLATFORM_ACTOR,
  });
  const ctx = { tenant, actor: PLATFORM_ACTOR, source: 'system' };
  const deps = setup.deps.bus.installations;
  const { installation } = await installPackage(deps, {
    ctx,
    input: { package: 'stripe-revenue', version: '1.0.0', config: { refund_approval_above: 10_000 }, secrets: { stripe_webhook_secret: WHSEC, stripe_api_key: FAKE_STRIPE_KEY } },
  });
  const row = await getInstallation(deps, { ctx, input: { id: installation.id } });
  await runInstallationJob(deps, { tenant, job: { org_id: tenant.id, installation_id: installation.id, operation: row.pending!.operation, version: row.pending!.version, attempt: row.pending!.attempt } });
  if ((await getInstallation(deps, { ctx, input: { id: installation.id } })).status !== 'installed') throw new Error('stripe-revenue did not install');
  // Both pipelines' directives run without approval: the bench handler's noop.record and the refunds (4,200, under refund_approval_above).
  await updatePolicy(setup.deps.bus.emit, {
    ctx,
    input: { rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }, { id: 'allow-refunds', match: 'stripe.refund.create', effect: 'allow' }] },
  });

  const serverEnv = {
    LOG_LEVEL: 'warn',
    SIGNALBUS_ENCRYPTION_KEYS: masterKeys,
    SIGNALBUS_RATE_LIMIT_HOOK_PER_S: '0',
    ...(registry ? { SIGNALBUS_REGISTRY_DIR: registry.dir } : {}),
  };
  const server = await startServer(database.url, serverEnv);
  const hook = () => {
    const body = JSON.stringify(stripeEvent());
    return { path: `/v1/hooks/${installation.id}`, body, headers: { 'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload: body, secret: WHSEC }) } };
  };
  // What the hook records, sent as an emit: the same type, subject, payload and dedupe key.
  const emit = () => {
    const event = stripeEvent();
    const body = JSON.stringify({
      type: `stripe.${event.type}`,
      subject: event.data.object.customer,
      payload: event.data.object,
      dedupe_key: `stripe-revenue:${event.id}`,
      occurred_at: new Date(event.created * 1000).toISOString(),
    });
    return { path: '/v1/orgs/bench/signals', body, headers: { authorization: `Bearer ${secret}` } };
  };
  const results: Record<string, unknown> = {};
  try {
    if (registry && PHASES.has('pipeline')) {
      results.pipeline = await runHooksPipeline({
        databaseUrl: database.url,
        sql: setup.deps.sql,
        server,
        org: 'bench',
        apiKey: secret,
        masterKeys,
        registryDir: registry.dir,
        hook,
      });
    }
    if (PHASES.has('ingest')) results.hooks = await ingestPhase();
    console.log(JSON.stringify(results, null, 2));
  } finally {
    await server.stop();
    await setup.close();
    await registry?.remove();
    await database.stop();
  }

  async function ingestPhase() {
    const floor = await startServer(database.url, serverEnv, { script: 'scripts/bench/hooks-floor-server.ts' });
    try {
      console.log(`warming up (${CONCURRENCY} connections)…`);
      // Every path warms (JIT, caches, the tables) before anything counts: a first round measured right after a short warm-up came out at half the later ones.
      await load(server, hook, 2 * PHASE_SECONDS);
      await load(server, emit, 2 * PHASE_SECONDS);
      await load(floor, emit, 2 * PHASE_SECONDS);
      const phases = { hooks: () => load(server, hook), emits: () => load(server, emit), floor: () => load(floor, emit) };
      const names = Object.keys(phases) as Array<keyof typeof phases>;
      const rounds: Array<Record<keyof typeof phases, number>> = [];
      for (let round = 0; round < ROUNDS; round++) {
        const order = names.map((_, index) => names[(index + round) % names.length]!);
        console.log(`round ${round + 1}/${ROUNDS}: ${order.join(', ')}…`);
        const measured: Partial<Record<keyof typeof phases, number>> = {};
        for (const name of order) measured[name] = await phases[name]();
        rounds.push(measured as Record<keyof typeof phases, number>);
      }
      const ratio = (of: (round: Record<keyof typeof phases, number>) => number) => +median(rounds.map(of)).toFixed(2);
      const result = {
        ratio: ratio((round) => round.hooks / round.emits),
        floor_ratio: ratio((round) => round.floor / round.emits),
        hooks_of_floor: ratio((round) => round.hooks / round.floor),
      };
      printTable(`signed Stripe deliveries vs plain emits${ENTITIES ? '' : ' (stripe-revenue without entity projections)'} (per second, medians of the rounds)`, [
        { route: 'POST /v1/hooks/:id (Stripe-signed)', per_s: median(rounds.map((round) => round.hooks)), of_emits: result.ratio },
        { route: 'POST /v1/orgs/:org/signals', per_s: median(rounds.map((round) => round.emits)), of_emits: 1 },
        { route: 'floor: the same emits, each with a delivery log row in its transaction', per_s: median(rounds.map((round) => round.floor)), of_emits: result.floor_ratio },
      ]);
      return { rounds, ...result, target: 0.8, entities: ENTITIES, concurrency: CONCURRENCY, phase_seconds: PHASE_SECONDS };
    } finally {
      await floor.stop();
    }
  }
}
