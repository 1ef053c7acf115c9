/**
 * The rule-handler pipeline of `npm run bench -- hooks`: signed Stripe
 * deliveries through `POST /v1/hooks/:id` until each one's refund has been
 * executed by the Stripe executor (the real SDK, against the loopback fake),
 * against the built-in handler pipeline `fanout` measures, in the same run,
 * on the same server and worker, rounds alternating.
 *
 * stripe-revenue's shipped rule reacts to `stripe.refund.requested`, which
 * no Stripe delivery produces, so the bench serves a copy of the registry
 * whose stripe-revenue@1.0.0 carries one more rule: every
 * `stripe.charge.succeeded` proposes a refund of its payment intent. The
 * webhook mapping, the package policy and the executor are the shipped ones;
 * the org policy allows the refund, so it runs without approval.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import type { Sql } from '../../src/db/client.ts';
import { manifestDigest, manifestPath, readIndex, REGISTRY_DIR, writeIndex } from '../../src/packages/registry-files.ts';
import { startStripeFake } from '../../test/fakes/stripe.ts';
import { builtinPipeline, measurePipeline, PIPELINE_SIGNALS, type PipelineResult } from './pipeline.ts';
import { median, printTable, startWorkerProcess, type ServerProcess } from './support.ts';

export const FAKE_STRIPE_KEY = 'sk_test_signalbus_fake';
const PIPELINE_ROUNDS = Number(process.env.BENCH_PIPELINE_ROUNDS ?? 3);

/**
 * A temp copy of the shipped registry whose stripe-revenue@1.0.0 (its digest
 * re-pinned) has the bench rule added (`refundRule`) and/or its entity
 * projections removed (`entities: false`: its signals then append without a
 * transaction of their own, through group commit, as before entities).
 */
export async function benchRegistry({ refundRule, entities }: { refundRule: boolean; entities: boolean }): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'signalbus-bench-registry-'));
  await cp(REGISTRY_DIR, dir, { recursive: true });
  const file = manifestPath(dir, 'stripe-revenue', '1.0.0');
  const manifest = JSON.parse(await readFile(file, 'utf8'));
  if (!entities) manifest.projections = [];
  if (refundRule) {
    manifest.handlers.push({
      id: 'bench-refund-each-charge',
      description: 'Bench only: every successful charge is refunded.',
      on: ['stripe.charge.succeeded'],
      propose: {
        kind: 'stripe.refund.create',
        params: {
          payment_intent: 'signal.payload.payment_intent',
          amount: 'signal.payload.amount',
          reason: "'requested_by_customer'",
          metadata: "{'signalbus_signal': signal.id}",
        },
      },
    });
  }
  await writeFile(file, `${JSON.stringify(manifest, null, 2)}\n`);
  const read = await readIndex(dir);
  if (!read.ok) throw new Error(read.message);
  read.index.packages['stripe-revenue']!.versions['1.0.0']!.sha256 = manifestDigest(manifest);
  await writeIndex(dir, read.index);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

interface PipelineRun {
  databaseUrl: string;
  sql: Sql;
  server: ServerProcess;
  org: string;
  apiKey: string;
  masterKeys: string;
  registryDir: string;
  /** A signed delivery of a new `charge.succeeded`, as the ingest phases send it. */
  hook: () => { path: string; headers: Record<string, string>; body: string };
}

/** Sends `signals` deliveries over 16 connections, each to be answered 2xx. */
async function deliver(server: ServerProcess, hook: PipelineRun['hook'], signals: number) {
  const result = await autocannon({
    url: server.url,
    connections: 16,
    amount: signals,
    requests: [
      {
        method: 'POST',
        setupRequest: (request) => {
          const { path: to, headers, body } = hook();
          return { ...request, path: to, body, headers: { ...request.headers, 'content-type': 'application/json', ...headers } };
        },
      },
    ],
  });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`deliveries had ${result.non2xx} non-2xx answers and ${result.errors} errors`);
}

export async function runHooksPipeline({ databaseUrl, sql, server, org, apiKey, masterKeys, registryDir, hook }: PipelineRun): Promise<Record<string, unknown>> {
  const stripe = await startStripeFake({ apiKeys: [FAKE_STRIPE_KEY] });
  const worker = await startWorkerProcess(databaseUrl, {
    BENCH_HANDLERS: 'proposer',
    SIGNALBUS_REGISTRY_DIR: registryDir,
    SIGNALBUS_STRIPE_API_BASE: stripe.url,
    SIGNALBUS_ENCRYPTION_KEYS: masterKeys,
  });
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
  const builtin = (signals = PIPELINE_SIGNALS) => builtinPipeline({ sql, serverUrl: server.url, org, headers, signals });
  const rules = (signals = PIPELINE_SIGNALS) =>
    measurePipeline({ sql, schema: `org_${org}`, kind: 'stripe.refund.create', signals }, () => deliver(server, hook, signals));
  try {
    console.log('pipelines: warming up (500 signals each)…');
    await builtin(500);
    await rules(500);
    const rounds: Array<{ builtin: PipelineResult; rules: PipelineResult }> = [];
    for (let round = 1; round <= PIPELINE_ROUNDS; round++) {
      console.log(`pipeline round ${round}/${PIPELINE_ROUNDS}: ${PIPELINE_SIGNALS} signals through each pipeline…`);
      if (round % 2 === 1) {
        const a = await builtin();
        rounds.push({ builtin: a, rules: await rules() });
      } else {
        const b = await rules();
        rounds.push({ builtin: await builtin(), rules: b });
      }
    }
    const refunds = stripe.effects.filter((effect) => effect.type === 'refund.created').length;
    const expected = 500 + PIPELINE_ROUNDS * PIPELINE_SIGNALS;
    if (refunds !== expected) throw new Error(`the Stripe fake made ${refunds} refunds, not ${expected}`);
    const rate = (result: PipelineResult) => result.signals_to_executed_directives_per_s;
    const summary = {
      rules_per_s: median(rounds.map((round) => rate(round.rules))),
      builtin_per_s: median(rounds.map((round) => rate(round.builtin))),
      ratio: +median(rounds.map((round) => rate(round.rules) / rate(round.builtin))).toFixed(2),
    };
    printTable('pipelines, signal → executed directive (signals/s, medians of the rounds; ratio paired per round)', [
      { pipeline: 'signed Stripe delivery → rule → stripe.refund.create executed (fake)', per_s: summary.rules_per_s },
      { pipeline: 'batch emit → built-in handler → noop.record executed (fanout)', per_s: summary.builtin_per_s },
      { pipeline: 'ratio (rule / built-in)', per_s: summary.ratio },
    ]);
    return { ...summary, rounds, signals: PIPELINE_SIGNALS };
  } finally {
    await worker.stop();
    await stripe.close();
  }
}
