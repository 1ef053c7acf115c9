/**
 * The execute job of a directive: the only path from an approved directive to
 * its executor. Two transactions bracket the executor call. The first claims
 * the attempt (`directive.executing`, `execution.started`) under the row
 * lock; the second records the outcome. Finding an attempt claimed but never
 * finished means a worker died mid-call with the outcome unknown: an executor
 * whose provider honours idempotency keys is simply called again with the
 * same key; any other directive fails as `needs_reconcile` rather than risk
 * doing it twice.
 */
import { z } from 'zod';
import { backoffMs } from '../core/backoff.ts';
import { addJobs } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import type { Credentials, ExecuteResult, Executor, ResultSignal } from '../executors/registry.ts';
import { admit, settleCircuit, type CircuitOutcome } from './circuit.ts';
import { readSecret } from '../secrets/vault.ts';
import { emitBatch } from '../signals/emit.ts';
import { DomainError } from '../core/errors.ts';
import type { Tx } from '../db/transaction.ts';
import type { ExecutionFailed, ExecutionStarted, ExecutionSucceeded } from '../handlers/execution-model.ts';
import { PLATFORM_ACTOR } from '../auth/actor.ts';
import { inSpan } from '../telemetry/tracing.ts';
import type { TenantRef } from '../tenancy/tenant-migrations.ts';
import { executeJob, nowOf, type DirectiveDeps } from './deps.ts';
import { emitSystem, findDirective, type Directive, type LifecycleContext } from './store.ts';

export const ExecuteDirectivePayload = z.object({
  org_id: z.string().min(1),
  directive_id: z.string().min(1),
  traceparent: z.string().nullish(),
});
export type ExecuteDirectivePayload = z.infer<typeof ExecuteDirectivePayload>;

export const executionIdOfDirective = (directiveId: string) => `exe_${directiveId.slice(directiveId.indexOf('_') + 1)}`;
const DEFAULT_MAX_ATTEMPTS = 5;
const MAX_BACKOFF_MS = 10 * 60_000;

type Claim =
  | { kind: 'skip' }
  | { kind: 'deferred' }
  | { kind: 'run'; directive: Directive; attempt: number; startedAt: Date; firstAttemptAt: Date; priorOutcomeUnknown: boolean }
  | { kind: 'unrecoverable'; directive: Directive; message: string };

const NEEDS_RECONCILE = 'needs_reconcile';

export async function executeDirective(
  deps: DirectiveDeps,
  { tenant, directiveId, traceparent }: { tenant: TenantRef; directiveId: string; traceparent: string | null },
): Promise<void> {
  const ctx: LifecycleContext = { tenant, actor: PLATFORM_ACTOR, source: 'system', traceparent };
  const executionId = executionIdOfDirective(directiveId);
  const handler = (directive: Directive) => `executor:${directive.kind}`;

  const claim = await withTransaction<Claim>(deps.sql, undefined, async (tx) => {
    const directive = await findDirective(tx.sql, tenant, directiveId, { lock: true });
    if (!directive || (directive.status !== 'approved' && directive.status !== 'executing')) return { kind: 'skip' };
    const executor = deps.executors.require(directive.kind);
    const startedAt = nowOf(deps);
    let firstAttemptAt = startedAt;
    let priorOutcomeUnknown = false;
    if (directive.status === 'executing') {
      const [execution] = await tx.sql<{ status: string; attempts: number; started_at: Date | null }[]>`
        select status, attempts, started_at from ${tx.sql(`${tenant.schema}.executions`)} where id = ${executionId}`;
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
    const endpoint = circuitKeyOf(executor, directive);
    if (endpoint) {
      const admission = await admit(deps.emit, ctx, tx, { endpoint, directiveId, policy: executor.circuit!, now: startedAt });
      if (!admission.admitted) {
        // The endpoint's circuit is open: try again once it may probe, without spending an attempt.
        await addJobs(tx.sql, [executeJob(tenant.id, directiveId, traceparent, admission.until)]);
        return { kind: 'deferred' };
      }
    }
    const attempt = directive.attempts + 1;
    const started: ExecutionStarted = {
      execution_id: executionId, handler: handler(directive), signal_id: null, directive_id: directiveId, attempt,
      started_at: startedAt.toISOString(),
    };
    await emitSystem(deps.emit, ctx, tx, [
      {
        type: 'directive.executing',
        subject: `directive:${directiveId}`,
        payload: { directive_id: directiveId, execution_id: executionId, attempt },
        dedupe_key: `directive:${directiveId}:executing:${attempt}`,
        correlation_id: directive.correlation_id,
      },
      {
        type: 'execution.started',
        subject: `directive:${directiveId}`,
        payload: started,
        dedupe_key: `execution:${executionId}:started:${attempt}`,
        correlation_id: directive.correlation_id,
      },
    ]);
    return { kind: 'run', directive, attempt, startedAt, firstAttemptAt, priorOutcomeUnknown };
  });

  if (claim.kind === 'skip' || claim.kind === 'deferred') return;
  if (claim.kind === 'unrecoverable') {
    await recordOutcome(deps, ctx, claim.directive, claim.directive.attempts, nowOf(deps), {
      outcome: 'permanent',
      error: { code: NEEDS_RECONCILE, message: claim.message },
    }, { called: false });
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
    result = { outcome: 'retryable', error: { code: 'executor_error', message: error instanceof Error ? error.message.slice(0, 500) : 'executor threw' } };
  }
  await recordOutcome(deps, ctx, claim.directive, claim.attempt, claim.startedAt, result);
}

async function recordOutcome(
  deps: DirectiveDeps,
  ctx: LifecycleContext,
  directive: Directive,
  attempt: number,
  startedAt: Date,
  result: ExecuteResult,
  { called = true }: { called?: boolean } = {},
): Promise<void> {
  const executionId = executionIdOfDirective(directive.id);
  const finishedAt = nowOf(deps);
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
  const executor = deps.executors.require(directive.kind);
  const maxAttempts = executor.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  // Only a call tells anything about the endpoint's health.
  const endpoint = called ? circuitKeyOf(executor, directive) : null;
  const endpointFault = result.outcome === 'retryable';
  const circuit = endpoint ? { circuit: endpoint, endpoint_fault: endpointFault } : {};
  await withTransaction(deps.sql, undefined, async (tx) => {
    await recordFinish(tx);
    if (endpoint) {
      await settleCircuit(deps.emit, ctx, tx, { endpoint, healthy: !endpointFault, policy: executor.circuit!, now: finishedAt });
    }
  });

  async function recordFinish(tx: Tx): Promise<void> {
    if (result.outcome === 'succeeded') {
      const derived = await recordResultSignals(deps, ctx, tx, directive, result.signals ?? []);
      const succeeded: ExecutionSucceeded & CircuitOutcome = {
        ...timing,
        ...circuit,
        outputs: { signals: derived, directives: [directive.id] },
        usage: { ...result.usage, ...(result.costUsd !== undefined ? { cost_usd: result.costUsd } : {}) },
      };
      await emitSystem(deps.emit, ctx, tx, [
        { type: 'execution.succeeded', subject, payload: succeeded, dedupe_key: `execution:${executionId}:succeeded`, correlation_id },
        {
          type: 'directive.succeeded',
          subject,
          payload: { directive_id: directive.id, execution_id: executionId, result: result.result, cost_usd: result.costUsd ?? null },
          dedupe_key: `directive:${directive.id}:finished`,
          correlation_id,
        },
      ]);
      return;
    }
    const retry = result.outcome === 'retryable' && attempt < maxAttempts;
    const retryAt = retry
      ? new Date(finishedAt.getTime() + backoffMs(attempt, { baseMs: deps.retryBaseMs, maxMs: MAX_BACKOFF_MS, retryAfterMs: result.retryAfterMs }))
      : null;
    const failed: ExecutionFailed & CircuitOutcome = { ...timing, ...circuit, error: result.error, final: !retry, retry_at: retryAt?.toISOString() ?? null };
    const executionFailed = { type: 'execution.failed', subject, payload: failed, dedupe_key: `execution:${executionId}:failed:${attempt}`, correlation_id };
    if (retryAt) {
      await emitSystem(deps.emit, ctx, tx, executionFailed);
      await addJobs(tx.sql, [executeJob(ctx.tenant.id, directive.id, ctx.traceparent ?? null, retryAt)]);
      return;
    }
    const code = result.outcome === 'needs_reauthorization' ? 'needs_reauthorization' : result.error.code;
    // One append: its projections apply in registry order (directives, then
    // executions), the order a rebuild locks them in. Writing executions
    // first deadlocked with a rebuild waiting between the two tables.
    await emitSystem(deps.emit, ctx, tx, [
      executionFailed,
      {
        type: 'directive.failed',
        subject,
        payload: { directive_id: directive.id, execution_id: executionId, error: { code, message: result.error.message } },
        dedupe_key: `directive:${directive.id}:finished`,
        correlation_id,
      },
      ...(result.outcome === 'needs_reauthorization'
        ? [
            {
              type: 'secret.reauthorization_required',
              subject: `secret:${directive.installation_id ?? 'org'}/${result.credential}`,
              payload: {
                name: result.credential,
                owner: directive.installation_id ?? 'org',
                directive_id: directive.id,
                kind: directive.kind,
                error: result.error,
              },
              dedupe_key: `directive:${directive.id}:reauthorization`,
              correlation_id,
            },
          ]
        : []),
    ]);
  }
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

function credentialsFor(deps: DirectiveDeps, tenant: TenantRef, installationId: string | null): Credentials {
  return { get: (name) => readSecret(deps.vault, { tenant, name, installationId }) };
}
