/**
 * Running a handler on a signal: one `handle_signal` job = one attempt of one
 * Execution. The handler only collects its outputs; they are written in one
 * transaction with `execution.succeeded`, under keys derived from (signal,
 * handler, local key), so a retried or redelivered run resolves to the rows
 * the first run wrote instead of writing new ones.
 *
 * Failures retry with backoff and jitter up to the handler's bound. An
 * unordered handler's retry is a new job scheduled for later, freeing the
 * worker; an ordered handler retries inside its job, because a later job of
 * the same subject must not overtake it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Tracer } from '@opentelemetry/api';
import { DomainError } from '../core/errors.ts';
import type { Sql } from '../db/client.ts';
import { addJobs } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import type { DirectiveDeps } from '../directives/deps.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import type { EmitDeps } from '../signals/emit.ts';
import { SIGNAL_COLUMNS, type SignalRow } from '../signals/model.ts';
import { currentTraceparent, inSpan } from '../telemetry/tracing.ts';
import type { Tenant } from '../core/tenant.ts';
import { HANDLE_SIGNAL, type HandleSignalPayload } from '../core/jobs.ts';
import { orderedQueueName } from './dispatch-plan.ts';
import type { ExecutionError, ExecutionFailed } from '../executions/model.ts';
import type { OrgHandlers } from './org-handlers.ts';
import type { RegisteredHandler } from './registry.ts';
import { planRetry } from './retry-plan.ts';
import { collect, depthExceeded, recordSucceeded, scopeViolation, writeOutputs, type Outputs } from './outputs.ts';


export interface RuntimeDeps {
  sql: Sql;
  emit: EmitDeps;
  directives: DirectiveDeps;
  handlers: OrgHandlers;
  /** Longest causation chain a handler may extend (default 16). */
  maxCausationDepth: number;
  onFailure?: (handler: string, final: boolean) => void;
  now?: () => Date;
  tracer?: Tracer;
}

class PermanentFailure extends Error {
  constructor(readonly failure: ExecutionError) {
    super(failure.message);
  }
}

function errorOf(error: unknown): ExecutionError {
  if (error instanceof PermanentFailure) return error.failure;
  if (error instanceof DomainError) {
    // Field errors (a proposal's bad params, say) are the reason: keep them in the record.
    const fields = error.errors?.map((field) => `${field.path}: ${field.message}`).join('; ');
    return { code: error.code, message: fields ? `${error.message} (${fields})`.slice(0, 1000) : error.message };
  }
  return { code: 'handler_error', message: error instanceof Error ? error.message.slice(0, 1000) : 'the handler failed' };
}

export async function runHandleSignal(deps: RuntimeDeps, { tenant, job }: { tenant: Tenant; job: HandleSignalPayload }): Promise<void> {
  const now = () => (deps.now ? deps.now() : new Date());
  const ctx: VerbContext = {
    tenant,
    actor: { type: 'system', id: `handler:${job.handler}` },
    source: `handler:${job.handler}`,
    traceparent: currentTraceparent() ?? job.traceparent ?? null,
  };
  // The run's state and its signal, in one round trip.
  const [state] = await deps.sql<{ execution: { status: string; attempts: number } | null; signal: SignalRow | null }[]>`
    select (select json_build_object('status', status, 'attempts', attempts)
              from ${deps.sql(`${tenant.schema}.executions`)} where id = ${job.execution_id}) as execution,
           (select to_json(s) from (select ${deps.sql.unsafe(SIGNAL_COLUMNS)}
                                      from ${deps.sql(`${tenant.schema}.signals`)} where id = ${job.signal_id}) s) as signal`;
  const execution = state!.execution;
  const signal = state!.signal ?? undefined;
  // A redelivered job of a run that already finished: nothing to do.
  if (execution && (execution.status === 'succeeded' || (execution.status === 'failed' && execution.attempts >= job.attempt))) return;

  const handler = await findHandler(deps.handlers, tenant, job.handler);

  for (let attempt = job.attempt; ; attempt++) {
    const startedAt = now();
    try {
      if (!handler) {
        throw new PermanentFailure({ code: 'unknown_handler', message: `no handler ${job.handler} is registered (or its installation is disabled or uninstalled)` });
      }
      if (!signal) throw new PermanentFailure({ code: 'signal_not_found', message: `signal ${job.signal_id} does not exist` });
      const outputs = deps.tracer
        ? await inSpan(deps.tracer, `handler ${handler.id}`, { attributes: { 'signalbus.signal': signal.id, 'signalbus.attempt': attempt } }, () =>
            collect(handler, signal, attempt),
          )
        : await collect(handler, signal, attempt);
      await commitSuccess(deps, ctx, { handler, signal, job, attempt, startedAt, finishedAt: now(), outputs });
      return;
    } catch (error) {
      const finishedAt = now();
      const permanent = error instanceof PermanentFailure || error instanceof DomainError;
      const { final, delayMs: delay, retryAt, inJob } = planRetry({ attempt, permanent, finishedAt, handler });
      const failed: ExecutionFailed = {
        execution_id: job.execution_id,
        handler: job.handler,
        signal_id: job.signal_id,
        directive_id: null,
        attempt,
        started_at: startedAt.toISOString(),
        finished_at: finishedAt.toISOString(),
        duration_ms: finishedAt.getTime() - startedAt.getTime(),
        error: errorOf(error),
        final,
        retry_at: retryAt?.toISOString() ?? null,
      };
      await withTransaction(deps.sql, ctx.tx, async (tx) => {
        await emitSystem(deps.emit, ctx, tx, {
          type: 'execution.failed',
          subject: signal?.subject ?? null,
          payload: failed,
          dedupe_key: `execution:${job.execution_id}:failed:${attempt}`,
          causation_id: signal ? job.signal_id : null,
        });
        if (retryAt && !inJob) {
          const next: HandleSignalPayload = { ...job, attempt: attempt + 1 };
          await addJobs(tx.sql, [
            {
              identifier: HANDLE_SIGNAL,
              payload: next,
              run_at: retryAt.toISOString(),
              queue_name: handler?.ordered ? orderedQueueName(tenant.id, job.handler, signal?.subject ?? null) : null,
            },
          ]);
        }
      });
      deps.onFailure?.(job.handler, final);
      if (!inJob) return;
      await sleep(delay);
    }
  }
}

/** The org's handler; a rule handler not known yet may belong to an installation made since its set was loaded. */
async function findHandler(handlers: OrgHandlers, tenant: Tenant, id: string): Promise<RegisteredHandler | undefined> {
  const found = (await handlers.forOrg(tenant)).get(id);
  if (found || !handlers.rules || handlers.builtins.get(id)) return found;
  handlers.invalidate(tenant.id);
  return (await handlers.forOrg(tenant)).get(id);
}

async function commitSuccess(
  deps: RuntimeDeps,
  ctx: VerbContext,
  run: { handler: RegisteredHandler; signal: SignalRow; job: HandleSignalPayload; attempt: number; startedAt: Date; finishedAt: Date; outputs: Outputs },
): Promise<void> {
  const { handler, signal, job, outputs } = run;
  const refused = scopeViolation(handler, outputs) ?? depthExceeded(signal, outputs, deps.maxCausationDepth);
  if (refused) throw new PermanentFailure(refused);
  await withTransaction(deps.sql, ctx.tx, async (tx) => {
    const written = await writeOutputs(deps, ctx, tx, { handler, signal, outputs });
    await recordSucceeded(deps, ctx, tx, { ...run, executionId: job.execution_id, handler: handler.id, outputs: written });
  });
}
