/**
 * Recording what an execution's attempt came to: its execution and
 * directive signals, a retry job while attempts remain, the executor's
 * result signals, and the verdict on its endpoint's circuit — for the
 * outcomes of many attempts in one transaction.
 */
import { backoffMs } from '../core/backoff.ts';
import { DomainError } from '../core/errors.ts';
import { deferJobs } from '../db/jobs.ts';
import { withTransaction, type Tx } from '../db/transaction.ts';
import type { ExecuteResult, Executor, ResultSignal } from '../executors/registry.ts';
import type { ExecutionFailed, ExecutionSucceeded } from '../executions/model.ts';
import { ORG_OWNER } from '../secrets/vault.ts';
import { emitBatch } from '../signals/emit.ts';
import { DEFAULT_MAX_ATTEMPTS } from './claim.ts';
import { circuitKeyOf, settleCircuits, type CircuitOutcome, type EndpointVerdict } from './circuit.ts';
import { executeJob, nowOf, type DirectiveDeps } from './deps.ts';
import { type Directive } from './store.ts';
import { emitSystem, type SystemSignal } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';

export const executionIdOfDirective = (directiveId: string) => `exe_${directiveId.slice(directiveId.indexOf('_') + 1)}`;
const MAX_BACKOFF_MS = 10 * 60_000;

/** What one attempt came to. */
export interface Outcome {
  directive: Directive;
  attempt: number;
  startedAt: Date;
  result: ExecuteResult;
  /** False when the executor was not called: nothing was learnt about its endpoint. */
  called: boolean;
}

/**
 * Records outcomes in one transaction: the execution and directive signals
 * (with a retry job where attempts remain), the executors' result signals,
 * and the verdict on each endpoint's circuit.
 */
export async function recordOutcomes(deps: DirectiveDeps, ctx: VerbContext, outcomes: Outcome[]): Promise<void> {
  const finishedAt = nowOf(deps);
  await withTransaction(deps.sql, ctx.tx, async (tx) => {
    const signals: SystemSignal[] = [];
    const retries: ReturnType<typeof executeJob>[] = [];
    /** Per endpoint, whether its last answer in this group showed it healthy. */
    const endpoints = new Map<string, EndpointVerdict>();
    for (const outcome of outcomes) {
      const executor = deps.executors.require(outcome.directive.kind);
      const endpoint = outcome.called ? circuitKeyOf(executor, outcome.directive) : null;
      if (endpoint) endpoints.set(endpoint, { endpoint, healthy: outcome.result.outcome !== 'retryable', policy: executor.circuit! });
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
    await settleCircuits(deps.emit, ctx, tx, [...endpoints.values()], finishedAt);
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
async function recordResultSignals(deps: DirectiveDeps, ctx: VerbContext, tx: Tx, directive: Directive, signals: ResultSignal[]): Promise<string[]> {
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
