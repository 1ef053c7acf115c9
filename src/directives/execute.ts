/**
 * The execute job of a directive: the only path from an approved directive to
 * its executor. A claimed attempt has two transactions around the executor
 * call. The first claims the attempt (`directive.executing`,
 * `execution.started`) under the row lock; the second records the outcome.
 * Finding an attempt claimed but never finished means a worker died mid-call
 * with the outcome unknown: an executor whose provider honours idempotency
 * keys is simply called again with the same key (or asked to look its effect
 * up first); any other directive fails as `needs_reconcile` rather than risk
 * doing it twice.
 *
 * An executor whose provider deduplicates by the directive id for good
 * (`claimBeforeCall: false`) is called on a read of the directive, without a
 * claim: dying mid-call can only cause the same call again, so the attempt is
 * recorded once, with its outcome. Such a directive takes the claimed path
 * whenever there is more to decide — its endpoint's circuit is not closed, or
 * an earlier attempt was claimed. Under load the reads, claims and outcomes
 * of concurrent jobs share statements and transactions (group commit).
 */
import { z } from 'zod';
import { backoffMs } from '../core/backoff.ts';
import { deferJobs } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import type { CircuitPolicy, ExecuteResult, Executor, ResultSignal } from '../executors/registry.ts';
import { circuitGate, circuitsNotClosed, settleCircuit, type CircuitOutcome } from './circuit.ts';
import { createGroupRunner, type GroupRunner } from '../core/group-runner.ts';
import { ORG_OWNER } from '../secrets/vault.ts';
import { credentialsFor, CredentialUnreadableError } from './credentials.ts';
import { emitBatch } from '../signals/emit.ts';
import { DomainError } from '../core/errors.ts';
import type { Tx } from '../db/transaction.ts';
import type { ExecutionFailed, ExecutionStarted, ExecutionSucceeded } from '../handlers/execution-model.ts';
import { PLATFORM_ACTOR } from '../auth/actor.ts';
import { inSpan } from '../telemetry/tracing.ts';
import type { TenantRef } from '../tenancy/tenant-migrations.ts';
import { executeJob, nowOf, type DirectiveDeps } from './deps.ts';
import { DIRECTIVE_SELECT, emitSystem, type Directive, type LifecycleContext, type SystemSignal } from './store.ts';

export const ExecuteDirectivePayload = z.object({
  org_id: z.string().min(1),
  directive_id: z.string().min(1),
  traceparent: z.string().nullish(),
  /** The attempt a retry job makes first, for directives executed without claims. */
  attempt: z.number().int().positive().optional(),
});
export type ExecuteDirectivePayload = z.infer<typeof ExecuteDirectivePayload>;

export const executionIdOfDirective = (directiveId: string) => `exe_${directiveId.slice(directiveId.indexOf('_') + 1)}`;
const DEFAULT_MAX_ATTEMPTS = 5;
const MAX_BACKOFF_MS = 10 * 60_000;

type Claim =
  | { kind: 'skip' }
  | { kind: 'deferred' }
  | { kind: 'run'; directive: Directive; attempt: number; startedAt: Date; firstAttemptAt: Date; priorOutcomeUnknown: boolean }
  | { kind: 'unrecoverable'; directive: Directive; message: string; attempt?: number };

const NEEDS_RECONCILE = 'needs_reconcile';

interface ExecuteRequestRef {
  tenant: TenantRef;
  directiveId: string;
  traceparent: string | null;
  /**
   * Which attempt this run is, by its job: what a directive executed without
   * claims goes by, as no claim counted the runs a worker died in.
   */
  attempt?: number | undefined;
}

interface Outcome {
  directive: Directive;
  attempt: number;
  startedAt: Date;
  result: ExecuteResult;
  /** False when the executor was not called: nothing was learnt about its endpoint. */
  called: boolean;
}

/**
 * Claims and outcomes of one tenant's executions are group-committed: under
 * load, the directives a worker runs at once share one claiming and one
 * recording transaction. Only signals of one trace share a group, so each
 * keeps its traceparent.
 */
interface Groups {
  claims: GroupRunner<ExecuteRequestRef, Claim>;
  outcomes: GroupRunner<{ ctx: LifecycleContext; outcome: Outcome }, void>;
}
const groupsByDeps = new WeakMap<DirectiveDeps, Groups>();

function groupsOf(deps: DirectiveDeps): Groups {
  let groups = groupsByDeps.get(deps);
  if (!groups) {
    groups = {
      claims: createGroupRunner((_key, requests) => startGroup(deps, requests)),
      outcomes: createGroupRunner(async (_key, items) => {
        await recordOutcomes(deps, items[0]!.ctx, items.map((item) => item.outcome));
        return items.map(() => undefined);
      }),
    };
    groupsByDeps.set(deps, groups);
  }
  return groups;
}

const groupKey = (tenant: TenantRef, traceparent: string | null | undefined) => `${tenant.schema} ${traceparent ?? ''}`;

export async function executeDirective(
  deps: DirectiveDeps,
  { tenant, directiveId, traceparent, attempt }: ExecuteRequestRef,
): Promise<void> {
  const ctx: LifecycleContext = { tenant, actor: PLATFORM_ACTOR, source: 'system', traceparent };
  const groups = groupsOf(deps);
  const key = groupKey(tenant, traceparent);
  const claim = await groups.claims.run(key, { tenant, directiveId, traceparent, attempt });

  if (claim.kind === 'skip' || claim.kind === 'deferred') return;
  if (claim.kind === 'unrecoverable') {
    const outcome: Outcome = {
      directive: claim.directive,
      attempt: claim.attempt ?? claim.directive.attempts,
      startedAt: nowOf(deps),
      result: { outcome: 'permanent', error: { code: NEEDS_RECONCILE, message: claim.message } },
      called: false,
    };
    await groups.outcomes.run(key, { ctx, outcome });
    return;
  }

  const executor = deps.executors.require(claim.directive.kind);
  let result: ExecuteResult;
  try {
    const request = {
      directiveId,
      kind: claim.directive.kind,
      params: claim.directive.params,
      idempotencyKey: directiveId,
      attempt: claim.attempt,
      firstAttemptAt: claim.firstAttemptAt,
      priorOutcomeUnknown: claim.priorOutcomeUnknown,
      installationId: claim.directive.installation_id,
      orgId: tenant.id,
      credentials: credentialsFor(deps, tenant, claim.directive.installation_id),
    };
    result = deps.tracer
      ? await inSpan(deps.tracer, `executor ${claim.directive.kind}`, { attributes: { 'signalbus.directive': directiveId, 'signalbus.attempt': claim.attempt } }, async (span) => {
          const outcome = await executor.execute(request);
          span.setAttribute('signalbus.outcome', outcome.outcome);
          return outcome;
        })
      : await executor.execute(request);
  } catch (error) {
    // An executor should return failures; a throw is a bug or an unexpected fault, retried.
    result = error instanceof CredentialUnreadableError
      ? { outcome: 'permanent', error: { code: 'credential_unreadable', message: error.message } }
      : { outcome: 'retryable', error: { code: 'executor_error', message: error instanceof Error ? error.message.slice(0, 500) : 'executor threw' } };
  }
  await groups.outcomes.run(key, { ctx, outcome: { directive: claim.directive, attempt: claim.attempt, startedAt: claim.startedAt, result, called: true } });
}

/**
 * Starts the requested executions: on one read, without a lock, those that
 * may call without a claim; the rest through `claimGroup`. A directive that
 * is neither approved nor executing is skipped here already.
 */
async function startGroup(deps: DirectiveDeps, requests: ExecuteRequestRef[]): Promise<Claim[]> {
  const { tenant } = requests[0]!;
  const ids = [...new Set(requests.map((request) => request.directiveId))];
  // Both reads at once: which circuits are not closed need not wait for the directives' endpoints.
  const [read, notClosed] = await Promise.all([
    deps.sql<Directive[]>`
      select ${deps.sql.unsafe(DIRECTIVE_SELECT)} from ${deps.sql(`${tenant.schema}.directives`)} where id = any(${ids}::text[])`,
    circuitsNotClosed(deps.sql, tenant),
  ]);
  const byId = new Map(read.map((directive) => [directive.id, directive]));
  const unclaimed = new Map<string, Directive>();
  for (const directive of read) {
    if (directive.status !== 'approved') continue;
    const executor = deps.executors.require(directive.kind);
    if (executor.claimBeforeCall !== false) continue;
    // Only a closed circuit lets a call go without a claim: opening, probing and deferring are decided under its lock.
    const endpoint = circuitKeyOf(executor, directive);
    if (endpoint === null || !notClosed.has(endpoint)) unclaimed.set(directive.id, directive);
  }

  const startedAt = nowOf(deps);
  const seen = new Set<string>();
  const toClaim: ExecuteRequestRef[] = [];
  const claims = requests.map((request): Claim | null => {
    const directive = byId.get(request.directiveId);
    if (!directive || (directive.status !== 'approved' && directive.status !== 'executing')) return { kind: 'skip' };
    if (!unclaimed.has(directive.id)) {
      toClaim.push(request);
      return null;
    }
    // A second job of one directive in the same group: the first one runs it.
    if (seen.has(directive.id)) return { kind: 'skip' };
    seen.add(directive.id);
    const attempt = Math.max(request.attempt ?? 1, directive.attempts + 1);
    // Runs that never recorded an outcome count too: a directive that stops its worker every time stops here.
    const maxAttempts = deps.executors.require(directive.kind).maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    if (attempt > maxAttempts) {
      return { kind: 'unrecoverable', directive, attempt, message: `workers stopped during its execution ${attempt - 1} times; reconcile by hand` };
    }
    return { kind: 'run', directive, attempt, startedAt, firstAttemptAt: startedAt, priorOutcomeUnknown: false };
  });
  const claimed = toClaim.length === 0 ? [] : await claimGroup(deps, toClaim);
  return claims.map((claim) => claim ?? claimed.shift()!);
}

/**
 * Claims the next attempt of each requested directive in one transaction,
 * under their row locks (taken in id order): `directive.executing` and
 * `execution.started` for those that run, a later job for those whose
 * endpoint's circuit is open, a verdict for those whose last attempt's
 * outcome cannot be known safely.
 */
async function claimGroup(deps: DirectiveDeps, requests: ExecuteRequestRef[]): Promise<Claim[]> {
  const { tenant, traceparent } = requests[0]!;
  const ctx: LifecycleContext = { tenant, actor: PLATFORM_ACTOR, source: 'system', traceparent };
  return withTransaction(deps.sql, undefined, async (tx) => {
    const ids = [...new Set(requests.map((request) => request.directiveId))];
    const locked = await tx.sql<Directive[]>`
      select ${tx.sql.unsafe(DIRECTIVE_SELECT)} from ${tx.sql(`${tenant.schema}.directives`)}
       where id = any(${ids}::text[]) order by id for update`;
    const byId = new Map(locked.map((directive) => [directive.id, directive]));
    const resumed = locked.filter((directive) => directive.status === 'executing').map((directive) => executionIdOfDirective(directive.id));
    const executions = resumed.length === 0
      ? []
      : await tx.sql<{ id: string; status: string; attempts: number; started_at: Date | null }[]>`
          select id, status, attempts, started_at from ${tx.sql(`${tenant.schema}.executions`)} where id = any(${resumed}::text[])`;
    const executionById = new Map(executions.map((execution) => [execution.id, execution]));
    const endpoints = new Map(locked.map((directive) => [directive.id, circuitKeyOf(deps.executors.require(directive.kind), directive)]));
    const circuits = await circuitGate(tx, tenant, [...endpoints.values()].filter((endpoint) => endpoint !== null));

    const signals: SystemSignal[] = [];
    const deferred: ReturnType<typeof executeJob>[] = [];
    const seen = new Set<string>();
    const startedAt = nowOf(deps);
    const claims = requests.map((request): Claim => {
      const directive = byId.get(request.directiveId);
      // A second job of one directive in the same group: the first one runs it.
      if (seen.has(request.directiveId)) return { kind: 'skip' };
      seen.add(request.directiveId);
      if (!directive || (directive.status !== 'approved' && directive.status !== 'executing')) return { kind: 'skip' };
      const executor = deps.executors.require(directive.kind);
      const executionId = executionIdOfDirective(directive.id);
      let firstAttemptAt = startedAt;
      let priorOutcomeUnknown = false;
      if (directive.status === 'executing') {
        const execution = executionById.get(executionId);
        firstAttemptAt = execution?.started_at ?? startedAt;
        priorOutcomeUnknown = !execution || (execution.status === 'running' && execution.attempts >= directive.attempts);
        if (priorOutcomeUnknown && !executor.honorsIdempotencyKey && !executor.looksUpPriorEffect) {
          return { kind: 'unrecoverable', directive, message: 'a worker stopped during execution and the provider cannot deduplicate a repeat; reconcile by hand' };
        }
        // Past the provider's memory of the key a repeat could take effect twice.
        if (executor.idempotencyWindowMs !== undefined && startedAt.getTime() - firstAttemptAt.getTime() >= executor.idempotencyWindowMs) {
          return { kind: 'unrecoverable', directive, message: "the provider's idempotency window has passed since the first attempt; reconcile by hand" };
        }
      }
      const endpoint = endpoints.get(directive.id);
      if (endpoint) {
        const admission = circuits.admit({ endpoint, directiveId: directive.id, policy: executor.circuit!, now: startedAt });
        if (admission.probing) signals.push(admission.probing);
        if (!admission.admitted) {
          // The endpoint's circuit is open: try again once it may probe, without spending an attempt.
          deferred.push(executeJob(tenant.id, directive.id, request.traceparent, admission.until));
          return { kind: 'deferred' };
        }
      }
      const attempt = directive.attempts + 1;
      const subject = `directive:${directive.id}`;
      const started: ExecutionStarted = {
        execution_id: executionId, handler: `executor:${directive.kind}`, signal_id: null, directive_id: directive.id, attempt,
        started_at: startedAt.toISOString(),
      };
      signals.push(
        {
          type: 'directive.executing',
          subject,
          payload: { directive_id: directive.id, execution_id: executionId, attempt },
          dedupe_key: `directive:${directive.id}:executing:${attempt}`,
          correlation_id: directive.correlation_id,
        },
        {
          type: 'execution.started',
          subject,
          payload: started,
          dedupe_key: `execution:${executionId}:started:${attempt}`,
          correlation_id: directive.correlation_id,
        },
      );
      return { kind: 'run', directive, attempt, startedAt, firstAttemptAt, priorOutcomeUnknown };
    });
    if (signals.length > 0) await emitSystem(deps.emit, ctx, tx, signals);
    deferJobs(tx, deferred);
    return claims;
  });
}

/**
 * Records outcomes in one transaction: the execution and directive signals
 * (with a retry job where attempts remain), the executors' result signals,
 * and the verdict on each endpoint's circuit.
 */
async function recordOutcomes(deps: DirectiveDeps, ctx: LifecycleContext, outcomes: Outcome[]): Promise<void> {
  const finishedAt = nowOf(deps);
  await withTransaction(deps.sql, undefined, async (tx) => {
    const signals: SystemSignal[] = [];
    const retries: ReturnType<typeof executeJob>[] = [];
    /** Per endpoint, whether its last answer in this group showed it healthy. */
    const endpoints = new Map<string, { healthy: boolean; policy: CircuitPolicy<unknown> }>();
    for (const outcome of outcomes) {
      const executor = deps.executors.require(outcome.directive.kind);
      const endpoint = outcome.called ? circuitKeyOf(executor, outcome.directive) : null;
      if (endpoint) endpoints.set(endpoint, { healthy: outcome.result.outcome !== 'retryable', policy: executor.circuit! });
      const derived = outcome.result.outcome === 'succeeded' ? await recordResultSignals(deps, ctx, tx, outcome.directive, outcome.result.signals ?? []) : [];
      const recorded = outcomeSignals(deps, outcome, { executor, endpoint, finishedAt, derived });
      signals.push(...recorded.signals);
      if (recorded.retryAt) retries.push(executeJob(ctx.tenant.id, outcome.directive.id, ctx.traceparent ?? null, recorded.retryAt, outcome.attempt + 1));
    }
    // One append: its projections apply in registry order (directives, then
    // executions), the order a rebuild locks them in. Writing executions
    // first deadlocked with a rebuild waiting between the two tables.
    await emitSystem(deps.emit, ctx, tx, signals);
    deferJobs(tx, retries);
    // In id order, as every transaction takes circuit locks.
    for (const [endpoint, { healthy, policy }] of [...endpoints].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      await settleCircuit(deps.emit, ctx, tx, { endpoint, healthy, policy, now: finishedAt });
    }
  });
}

/** The signals that record one outcome, and when to try again if attempts remain. */
function outcomeSignals(
  deps: DirectiveDeps,
  { directive, attempt, startedAt, result }: Outcome,
  { executor, endpoint, finishedAt, derived }: { executor: Executor; endpoint: string | null; finishedAt: Date; derived: string[] },
): { signals: SystemSignal[]; retryAt: Date | null } {
  const executionId = executionIdOfDirective(directive.id);
  const timing = {
    execution_id: executionId,
    handler: `executor:${directive.kind}`,
    signal_id: null,
    directive_id: directive.id,
    attempt,
    started_at: startedAt.toISOString(),
    finished_at: finishedAt.toISOString(),
    duration_ms: Math.max(0, finishedAt.getTime() - startedAt.getTime()),
  };
  const subject = `directive:${directive.id}`;
  const correlation_id = directive.correlation_id;
  const circuit: CircuitOutcome = endpoint ? { circuit: endpoint, endpoint_fault: result.outcome === 'retryable' } : {};
  if (result.outcome === 'succeeded') {
    const succeeded: ExecutionSucceeded & CircuitOutcome = {
      ...timing,
      ...circuit,
      outputs: { signals: derived, directives: [directive.id] },
      usage: { ...result.usage, ...(result.costUsd !== undefined ? { cost_usd: result.costUsd } : {}) },
    };
    return {
      retryAt: null,
      signals: [
        { type: 'execution.succeeded', subject, payload: succeeded, dedupe_key: `execution:${executionId}:succeeded`, correlation_id },
        {
          type: 'directive.succeeded',
          subject,
          payload: { directive_id: directive.id, execution_id: executionId, attempt, result: result.result, cost_usd: result.costUsd ?? null },
          dedupe_key: `directive:${directive.id}:finished`,
          correlation_id,
        },
      ],
    };
  }
  const maxAttempts = executor.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const retry = result.outcome === 'retryable' && attempt < maxAttempts;
  const retryAt = retry
    ? new Date(finishedAt.getTime() + backoffMs(attempt, { baseMs: deps.retryBaseMs, maxMs: MAX_BACKOFF_MS, retryAfterMs: result.retryAfterMs }))
    : null;
  const failed: ExecutionFailed & CircuitOutcome = { ...timing, ...circuit, error: result.error, final: !retry, retry_at: retryAt?.toISOString() ?? null };
  const executionFailed: SystemSignal = { type: 'execution.failed', subject, payload: failed, dedupe_key: `execution:${executionId}:failed:${attempt}`, correlation_id };
  if (retryAt) return { signals: [executionFailed], retryAt };
  const code = result.outcome === 'needs_reauthorization' ? 'needs_reauthorization' : result.error.code;
  const signals: SystemSignal[] = [
    executionFailed,
    {
      type: 'directive.failed',
      subject,
      payload: { directive_id: directive.id, execution_id: executionId, attempt, error: { code, message: result.error.message } },
      dedupe_key: `directive:${directive.id}:finished`,
      correlation_id,
    },
  ];
  if (result.outcome === 'needs_reauthorization') {
    const owner = directive.installation_id ?? ORG_OWNER;
    signals.push({
      type: 'secret.reauthorization_required',
      subject: `secret:${owner}/${result.credential}`,
      payload: { name: result.credential, owner, directive_id: directive.id, kind: directive.kind, error: result.error },
      dedupe_key: `directive:${directive.id}:reauthorization`,
      correlation_id,
    });
  }
  return { signals, retryAt: null };
}

/**
 * An executor's result signals, recorded with its outcome under keys derived
 * from the directive, so a repeated recording adds nothing. Caused by the
 * directive's proposal, they carry its correlation.
 */
async function recordResultSignals(deps: DirectiveDeps, ctx: LifecycleContext, tx: Tx, directive: Directive, signals: ResultSignal[]): Promise<string[]> {
  if (signals.length === 0) return [];
  const results = await emitBatch(deps.emit, {
    ctx: { ...ctx, system: true, tx },
    inputs: signals.map((signal, index) => ({
      type: signal.type,
      subject: signal.subject ?? `directive:${directive.id}`,
      payload: signal.payload,
      dedupe_key: `directive:${directive.id}:result:${index}`,
      causation_id: directive.causation_id,
      correlation_id: directive.correlation_id,
    })),
  });
  // A conflict is a second recording of this outcome with other content: the first stands.
  return results.flatMap((result) => {
    if ('signal' in result) return [result.signal.id];
    if (result.status === 'conflict') return [];
    throw new DomainError('validation_failed', `a result signal of ${directive.kind} is not valid: ${result.error.message}`);
  });
}

/** The circuit a directive's endpoint belongs to, when its executor declares one and its params name one. */
function circuitKeyOf(executor: Executor, directive: Directive): string | null {
  if (!executor.circuit) return null;
  try {
    return executor.circuit.key(directive.kind, directive.params);
  } catch {
    return null;
  }
}
