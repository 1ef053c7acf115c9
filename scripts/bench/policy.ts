/**
 * Policy decisions: `decide` with its conditions compiled by signalbus's
 * bounded CEL (step counter, deadline, RE2) against the same `decide` with
 * the same conditions as bare cel-js programs — what decisions cost before
 * the budget — in alternating batches of the same run. A pure CPU benchmark:
 * no database.
 *
 * `BENCH_DECISIONS` decisions per batch, `BENCH_ROUNDS` batches of each.
 */
import { Environment } from '@marcbachmann/cel-js';
import { compilePolicy, type CompiledPolicy } from '../../src/policy/compile.ts';
import { decide } from '../../src/policy/evaluate.ts';
import type { DecisionInput, GuardUsage } from '../../src/policy/model.ts';
import { median, printTable } from './support.ts';

const DECISIONS = Number(process.env.BENCH_DECISIONS ?? 20_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);

// A tenant policy of the usual shape: thresholds, recipient checks over a
// list, a pattern, the actor, and usage counters.
const DOCUMENT = {
  rules: [
    { id: 'big-refunds', match: 'stripe.refund.*', when: 'params.amount > 10000', effect: 'require_approval' },
    { id: 'internal-mail', match: 'gmail.send', when: 'params.to.all(r, r.endsWith("@acme.test"))', effect: 'allow' },
    { id: 'no-noreply', match: 'gmail.send', when: 'params.to.exists(r, r.matches("^no-?reply@"))', effect: 'deny' },
    { id: 'agents-hold', match: '*', when: 'actor.type == "agent" && directive.estimated_cost_usd > 1.0', effect: 'require_approval' },
    { id: 'subject-tag', match: 'gmail.send', when: 'has(params.subject) && params.subject.matches("\\\\[(urgent|ops)\\\\]")', effect: 'require_approval' },
    { id: 'rate', match: 'gmail.*', when: 'usage.rate_limits.all(l, !has(l.count) || l.count < 90)', effect: 'allow' },
  ],
  guards: { rate_limits: [{ match: 'gmail.*', limit: 100, window_seconds: 3600 }] },
};

const INPUT: DecisionInput = {
  directive: { kind: 'gmail.send', idempotency_key: 'k-1', causation_id: null, installation_id: null, estimated_cost_usd: 0 },
  params: { to: ['ana@acme.test', 'bo@acme.test', 'cy@acme.test'], subject: 'Weekly [ops] report', body: 'hello' },
  actor: { type: 'human', id: 'ana@acme.test' },
  installation: null,
  org: { id: 'org_1', slug: 'acme' },
};
const USAGE: GuardUsage = { rate_limits: [12], budgets: [] };

/** The same document with every condition a bare cel-js program: no steps counted, no deadline, JS RegExp. */
function unbounded(policy: CompiledPolicy): CompiledPolicy {
  const environment = new Environment()
    .registerVariable('directive', 'map')
    .registerVariable('params', 'map')
    .registerVariable('actor', 'map')
    .registerVariable('installation', 'dyn')
    .registerVariable('org', 'map')
    .registerVariable('usage', 'map');
  const conditions = policy.document.rules.map((rule) => {
    if (rule.when === undefined) return null;
    const program = environment.parse(rule.when);
    if (!program.check().valid) throw new Error(`${rule.id} does not compile`);
    return (context: Record<string, unknown>) => program(context);
  });
  return { document: policy.document, conditions };
}

function batchMicros(policy: CompiledPolicy): number {
  const started = performance.now();
  for (let i = 0; i < DECISIONS; i++) decide(policy, INPUT, USAGE);
  return ((performance.now() - started) * 1000) / DECISIONS;
}

export async function runPolicyBench(): Promise<void> {
  const bounded = compilePolicy(DOCUMENT);
  const bare = unbounded(bounded);
  const expected = decide(bare, INPUT, USAGE);
  if (JSON.stringify(decide(bounded, INPUT, USAGE)) !== JSON.stringify(expected)) throw new Error('the two paths decide differently');
  // Warm both up before measuring.
  batchMicros(bare);
  batchMicros(bounded);
  const before: number[] = [];
  const after: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const b = batchMicros(bare);
    const a = batchMicros(bounded);
    before.push(b);
    after.push(a);
    ratios.push(a / b);
  }
  console.log(`policy decide: ${DOCUMENT.rules.length} rules (decision: ${expected.effect} by ${expected.rule}), ${DECISIONS} decisions per batch, ${ROUNDS} rounds`);
  const row = (path: string, micros: number[]) => ({
    path,
    'µs/decision (median)': median(micros).toFixed(2),
    min: Math.min(...micros).toFixed(2),
    max: Math.max(...micros).toFixed(2),
  });
  printTable('µs per decision', [row('bare cel-js (before)', before), row('bounded (after)', after)]);
  console.log(`after / before, median of paired rounds: ${median(ratios).toFixed(2)}`);
}
