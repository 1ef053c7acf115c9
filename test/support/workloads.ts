/**
 * Randomized workloads for the rebuild-equals-live properties: executors and
 * handlers whose fate each step chooses, policies to switch between, and
 * fast-check arbitraries of steps run concurrently in groups — emits,
 * proposals, approvals, rejections, cancels, expiries, retries, policy
 * changes, in-place rebuilds and pauses.
 */
import fc from 'fast-check';
import { z } from 'zod';
import type { Actor } from '../../src/signals/actor.ts';
import { DomainError } from '../../src/core/errors.ts';
import type { DirectiveDeps } from '../../src/directives/deps.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { decideDirective, expireDirective, type DirectiveAction } from '../../src/directives/transitions.ts';
import type { Executor, ExecuteResult } from '../../src/executors/registry.ts';
import { retryExecution } from '../../src/handlers/retry-execution.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import { rebuildProjections } from '../../src/projections/rebuild.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import type { TestApp } from './harness.ts';
import { waitQuiescent } from './quiescent.ts';

export const ANA: Actor = { type: 'human', id: 'ana@rebuild.test' };
export const ROUTES = ['allow', 'review', 'deny'] as const;
export const BEHAVIORS = ['ok', 'flaky', 'exhaust', 'permanent', 'reauth', 'throw'] as const;

export const ActParams = z.object({
  route: z.enum(ROUTES),
  behavior: z.enum(BEHAVIORS),
  fail_attempts: z.number().int().min(0).max(5),
  cost: z.number().min(0),
  tag: z.string(),
});
export type ActParams = z.infer<typeof ActParams>;

/** `fuzz.act`: its params say how it behaves, so a workload chooses each directive's fate. */
export const fuzzExecutor: Executor<ActParams> = {
  kinds: ['fuzz.act'],
  params: ActParams,
  estimateCostUsd: (_kind, params) => params.cost,
  honorsIdempotencyKey: true,
  maxAttempts: 3,
  // One endpoint for all: faults open and close its circuit, so circuits are folded too.
  circuit: { key: () => 'https://fuzz.example/endpoint', failureThreshold: 2, cooldownMs: 50 },
  async execute({ params, attempt }): Promise<ExecuteResult> {
    const retryable: ExecuteResult = { outcome: 'retryable', error: { code: 'busy', message: `attempt ${attempt} busy` } };
    // Costs like 1/3 · 1.1 exercise numeric round trips through jsonb and numeric columns.
    const succeeded: ExecuteResult = { outcome: 'succeeded', result: { tag: params.tag, attempt }, costUsd: params.cost * 1.1, usage: { tokens_in: 3, tokens_out: attempt } };
    switch (params.behavior) {
      case 'ok':
        return succeeded;
      case 'flaky':
        return attempt <= params.fail_attempts ? retryable : succeeded;
      case 'exhaust':
        return retryable;
      case 'permanent':
        return { outcome: 'permanent', error: { code: 'refused', message: 'the provider refused' } };
      case 'reauth':
        return { outcome: 'needs_reauthorization', error: { code: 'token_revoked', message: 'grant revoked' }, credential: 'fuzz_token' };
      case 'throw':
        throw new Error(`executor blew up on attempt ${attempt}`);
    }
  },
};

/** `fuzz.gated`: holds its call open until the test opens the gate, to place its outcome in time. */
export const gate = { calls: 0, open: () => {}, opened: Promise.resolve(), outcome: 'succeeded' as 'succeeded' | 'permanent' };
export const gatedExecutor: Executor<Record<string, unknown>> = {
  kinds: ['fuzz.gated'],
  params: z.record(z.string(), z.unknown()),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  async execute() {
    gate.calls += 1;
    await gate.opened;
    if (gate.outcome === 'permanent') return { outcome: 'permanent', error: { code: 'refused', message: 'refused' } };
    return { outcome: 'succeeded', result: { calls: gate.calls } };
  },
};

export const FAILS = ['none', 'transient', 'until_retried', 'always', 'permanent'] as const;
export type Fail = (typeof FAILS)[number];
export interface Task {
  fail: Fail;
  ordered: boolean;
  derive: boolean;
  proposals: ActParams[];
}

export function failIfAsked(fail: Fail, attempt: number) {
  if (fail === 'permanent') throw new DomainError('validation_failed', 'the task is malformed');
  if (fail === 'always') throw new Error(`attempt ${attempt} failed`);
  if (fail === 'transient' && attempt < 2) throw new Error('transient failure');
  // Fails every automatic attempt (max 3); the operator's retry (attempt 4) succeeds.
  if (fail === 'until_retried' && attempt <= 3) throw new Error('needs an operator');
}

export const relay: Handler = {
  id: 'fuzz.relay',
  on: ['fuzz.task'],
  start: 'beginning',
  maxAttempts: 3,
  retryBaseMs: 5,
  handle(signal, tools) {
    const task = signal.payload as unknown as Task;
    failIfAsked(task.fail, tools.attempt);
    task.proposals.forEach((params, index) => tools.propose({ kind: 'fuzz.act', params, key: `p${index}` }));
    if (task.derive) tools.emit({ type: 'fuzz.derived', subject: signal.subject, payload: { from: signal.id }, key: 'derived' });
  },
};

/** Ordered, so its retries happen inside the job; reads the payload in its condition. */
export const ordered: Handler = {
  id: 'fuzz.ordered',
  on: ['fuzz.task'],
  when: 'signal.payload.ordered == true',
  ordered: true,
  start: 'beginning',
  maxAttempts: 2,
  retryBaseMs: 5,
  handle(signal, tools) {
    const task = signal.payload as unknown as Task;
    if (task.fail === 'transient' && tools.attempt < 2) throw new Error('transient failure');
    tools.emit({ type: 'fuzz.ordered_seen', subject: signal.subject, payload: { attempt: tools.attempt }, key: 'seen' });
  },
};
export const HANDLERS = [relay, ordered];

export const POLICIES = [
  { rules: [
    { id: 'deny-route', match: 'fuzz.act', when: "params.route == 'deny'", effect: 'deny' },
    { id: 'review-route', match: 'fuzz.act', when: "params.route == 'review'", effect: 'require_approval' },
    { id: 'allow-fuzz', match: 'fuzz.*', effect: 'allow' },
  ] },
  { rules: [
    { id: 'deny-route', match: 'fuzz.act', when: "params.route == 'deny'", effect: 'deny' },
    { id: 'review-all', match: '*', effect: 'require_approval', reason: 'freeze' },
  ] },
  { rules: [{ id: 'allow-fuzz', match: 'fuzz.*', effect: 'allow' }], guards: { rate_limits: [{ match: 'fuzz.act', limit: 3, window_seconds: 3600 }] } },
  { rules: [{ id: 'allow-fuzz', match: 'fuzz.*', effect: 'allow' }], guards: { budgets: [{ match: 'fuzz.*', monthly_usd: 1.5 }] } },
  { rules: [] },
];

export type Action =
  | { type: 'emit'; subject: number; task: Task }
  | { type: 'propose'; params: ActParams; key: number | null }
  | { type: 'decide'; action: DirectiveAction; pick: number }
  | { type: 'expire'; pick: number }
  | { type: 'retry'; pick: number }
  | { type: 'policy'; variant: number }
  | { type: 'rebuild' }
  | { type: 'settle' };

export const actParams = fc.record({
  route: fc.constantFrom(...ROUTES),
  behavior: fc.constantFrom(...BEHAVIORS),
  fail_attempts: fc.integer({ min: 0, max: 3 }),
  cost: fc.constantFrom(0, 0.1, 1 / 3, 2.5, 1e-7, 12345.6789),
  tag: fc.string({ maxLength: 6 }),
});
export const pick = fc.nat({ max: 50 });
export const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant('emit' as const), subject: fc.nat({ max: 3 }), task: fc.record({
    fail: fc.constantFrom(...FAILS), ordered: fc.boolean(), derive: fc.boolean(), proposals: fc.array(actParams, { maxLength: 2 }),
  }) }) },
  { weight: 4, arbitrary: fc.record({ type: fc.constant('propose' as const), params: actParams, key: fc.option(fc.nat({ max: 3 })) }) },
  { weight: 4, arbitrary: fc.record({ type: fc.constant('decide' as const), action: fc.constantFrom<DirectiveAction>('approve', 'reject', 'cancel'), pick }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('expire' as const), pick }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('retry' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('policy' as const), variant: fc.nat({ max: POLICIES.length - 1 }) }) },
  { weight: 1, arbitrary: fc.constant({ type: 'rebuild' as const }) },
  { weight: 1, arbitrary: fc.constant({ type: 'settle' as const }) },
);
/** Groups run concurrently, one group after another: 5–16 groups of 1–3. */
export const workload = fc.array(fc.array(action, { minLength: 1, maxLength: 3 }), { minLength: 5, maxLength: 16 });

/** Refusals the verbs are allowed to answer with; anything else fails the run. */
export const EXPECTED_REFUSALS = new Set(['invalid_transition', 'idempotency_conflict', 'not_found']);
export async function tolerated(work: Promise<unknown>): Promise<void> {
  try {
    await work;
  } catch (error) {
    if (!(error instanceof DomainError && EXPECTED_REFUSALS.has(error.code))) throw error;
  }
}

export const fuzzCtxOf = (org: Tenant) => ({ tenant: org, actor: ANA, source: 'api' });
const ctxOf = fuzzCtxOf;

export async function setFuzzPolicy(t: TestApp, org: Tenant, variant: number) {
  await updatePolicy(t.app.deps.bus.emit, { ctx: ctxOf(org), input: POLICIES[variant] });
}

/** A row of the org's table chosen by `index`, preferring rows whose status is in `preferred`. */
async function choose(t: TestApp, org: Tenant, table: 'directives' | 'executions', preferred: string[], index: number, extra = t.app.deps.sql``) {
  const sql = t.app.deps.sql;
  const rows = await sql<{ id: string; preferred: boolean }[]>`
    select id, status = any(${preferred}::text[]) as preferred from ${sql(`${org.schema}.${table}`)} where true ${extra} order by id`;
  const candidates = rows.some((row) => row.preferred) ? rows.filter((row) => row.preferred) : rows;
  return candidates.length > 0 ? candidates[index % candidates.length]!.id : undefined;
}

/** Performs one step of a workload on `org`. */
export async function perform(t: TestApp, org: Tenant, step: Action): Promise<void> {
  const { bus } = t.app.deps;
  const ctx = ctxOf(org);
  switch (step.type) {
    case 'emit':
      await emit(bus.emit, { ctx, input: { type: 'fuzz.task', subject: `thing:${step.subject}`, payload: step.task } });
      return;
    case 'propose':
      await tolerated(proposeDirective(bus.directives, {
        ctx,
        input: { kind: 'fuzz.act', params: step.params, ...(step.key === null ? {} : { idempotency_key: `key-${step.key}` }) },
      }));
      return;
    case 'decide': {
      const from = step.action === 'cancel' ? ['awaiting_approval', 'approved'] : ['awaiting_approval'];
      const id = await choose(t, org, 'directives', from, step.pick);
      if (id) await tolerated(decideDirective(bus.directives, { ctx, input: { id, action: step.action, reason: `${step.action} by fuzz` } }));
      return;
    }
    case 'expire': {
      const id = await choose(t, org, 'directives', ['awaiting_approval'], step.pick);
      // A clock past any approval window, for this call only.
      const later: DirectiveDeps = { ...bus.directives, now: () => new Date(Date.now() + 400 * 86_400_000) };
      if (id) await expireDirective(later, { ctx: { ...ctx, actor: { type: 'system', id: 'signalbus' }, source: 'system' }, input: { id } });
      return;
    }
    case 'retry': {
      const id = await choose(t, org, 'executions', ['failed'], step.pick, t.app.deps.sql`and directive_id is null`);
      if (id) await tolerated(retryExecution(bus, { ctx, input: { id, reason: 'fuzz retry' } }));
      return;
    }
    case 'policy':
      await setFuzzPolicy(t, org, step.variant);
      return;
    case 'rebuild':
      // Mid-workload, beside the group's other steps and the worker's jobs.
      await rebuildProjections(t.app.deps.sql, org, t.app.deps.projections, { pageSize: 7 });
      return;
    case 'settle':
      await waitQuiescent(t.app.deps.sql, org, { handlers: HANDLERS.length });
      return;
  }
}

/** Log lines of the org's jobs that ended by throwing: a deadlock or a bug, never a planned failure. */
export function jobErrors(t: TestApp, org: Tenant): string[] {
  return t.logs.filter((line) => line.includes(`"org":"${org.slug}"`) && line.includes('"outcome":"error"'));
}
