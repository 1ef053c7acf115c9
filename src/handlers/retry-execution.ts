/**
 * Retrying a failed execution by hand: the request is a signal
 * (`execution.retry_requested`, by the operator's actor) committed with the
 * job that runs the next attempt. That attempt is past the handler's bound,
 * so it runs once: a failure is final again, not a new retry series.
 */
import { DomainError, notFound } from '../core/errors.ts';
import { addJobs } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import type { ExecutionRetryRequested } from '../executions/model.ts';
import { findExecution, type Execution } from '../executions/read.ts';
import type { EmitDeps } from '../signals/emit.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import { HANDLE_SIGNAL, type HandleSignalPayload } from '../core/jobs.ts';
import { orderedQueueName } from './dispatch-plan.ts';
import type { OrgHandlers } from './org-handlers.ts';

/** Re-runs a failed execution as its next attempt. 409 unless it failed for good. */
export async function retryExecution(
  bus: { emit: EmitDeps; handlers: OrgHandlers },
  { ctx, input: { id, reason } }: VerbCall<{ id: string; reason?: string | null }>,
): Promise<Execution> {
  return withTransaction(bus.emit.sql, ctx.tx, async (tx) => {
    const execution = await findExecution(tx.sql, ctx.tenant, id, { lock: true });
    if (!execution) throw notFound('execution');
    if (execution.status !== 'failed') throw new DomainError('invalid_transition', `cannot retry an execution that is ${execution.status}`);
    if (execution.directive_id) {
      // Its directive failed with it; running the executor again would need a new approval.
      throw new DomainError('invalid_transition', 'an executor run is retried by proposing its directive again');
    }
    const attempt = execution.attempts + 1;
    const requested: ExecutionRetryRequested = {
      execution_id: id,
      handler: execution.handler,
      signal_id: execution.signal_id,
      directive_id: execution.directive_id,
      attempt: execution.attempts,
      reason: reason ?? null,
    };
    await emitSystem(bus.emit, ctx, tx, {
      type: 'execution.retry_requested',
      payload: requested,
      dedupe_key: `execution:${id}:retry:${attempt}`,
      causation_id: execution.signal_id,
    });
    const [signal] = await tx.sql<{ subject: string | null; trace: string | null }[]>`
      select subject, trace from ${tx.sql(`${ctx.tenant.schema}.signals`)} where id = ${execution.signal_id}`;
    const job: HandleSignalPayload = {
      org_id: ctx.tenant.id,
      handler: execution.handler,
      signal_id: execution.signal_id!,
      execution_id: id,
      attempt,
      traceparent: ctx.traceparent ?? signal?.trace ?? null,
    };
    const ordered = (await bus.handlers.forOrg(ctx.tenant)).get(execution.handler)?.ordered === true;
    await addJobs(tx.sql, [
      {
        identifier: HANDLE_SIGNAL,
        payload: job,
        queue_name: ordered ? orderedQueueName(ctx.tenant.id, execution.handler, signal?.subject ?? null) : null,
      },
    ]);
    return (await findExecution(tx.sql, ctx.tenant, id))!;
  });
}
