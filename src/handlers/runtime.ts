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
import { canonicalJson, sha256Hex } from '../core/canonical-json.ts';
import { DomainError } from '../core/errors.ts';
import type { Sql } from '../db/client.ts';
import { addJobs } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import type { DirectiveDeps } from '../directives/deps.ts';
import { proposeDirective } from '../directives/propose.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import { emit, type EmitDeps } from '../signals/emit.ts';
import { SIGNAL_COLUMNS, type SignalRow } from '../signals/model.ts';
import { currentTraceparent, inSpan } from '../telemetry/tracing.ts';
import type { Tenant } from '../core/tenant.ts';
import { HANDLE_SIGNAL, type HandleSignalPayload } from '../core/jobs.ts';
import { orderedQueueName } from './dispatch-plan.ts';
import type { ExecutionError, ExecutionFailed, ExecutionSucceeded } from '../executions/model.ts';
import type { HandlerRegistry, RegisteredHandler } from './registry.ts';
import { planRetry } from './retry-plan.ts';


export interface RuntimeDeps {
  sql: Sql;
  emit: EmitDeps;
  directives: DirectiveDeps;
  handlers: HandlerRegistry;
  /** Longest causation chain a handler may extend (default 16). */
  maxCausationDepth: number;
  onFailure?: (handler: string, final: boolean) => void;
  now?: () => Date;
  tracer?: Tracer;
}

const DEDUPE_KEY_LIMIT = 256;

interface Outputs {
  signals: Array<{ type: string; subject?: string | null; payload: Record<string, unknown>; key: string }>;
  directives: Array<{ kind: string; params: Record<string, unknown>; key: string }>;
}

/** A stable key from (signal, handler, local key), hashed when it would not fit. */
function derivedKey(prefix: string, signalId: string, handler: string, key: string): string {
  const plain = `${prefix}${signalId}:${handler}:${key}`;
  return plain.length <= DEDUPE_KEY_LIMIT ? plain : `${prefix}${sha256Hex(canonicalJson([signalId, handler, key]))}`;
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

  const handler = deps.handlers.get(job.handler);

  for (let attempt = job.attempt; ; attempt++) {
    const startedAt = now();
    try {
      if (!handler) throw new PermanentFailure({ code: 'unknown_handler', message: `no handler ${job.handler} is registered` });
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

async function collect(handler: RegisteredHandler, signal: SignalRow, attempt: number): Promise<Outputs> {
  const outputs: Outputs = { signals: [], directives: [] };
  await handler.handle(signal, {
    attempt,
    emit: (input) => void outputs.signals.push(input),
    propose: (input) => void outputs.directives.push(input),
  });
  return outputs;
}

async function commitSuccess(
  deps: RuntimeDeps,
  ctx: VerbContext,
  run: { handler: RegisteredHandler; signal: SignalRow; job: HandleSignalPayload; attempt: number; startedAt: Date; finishedAt: Date; outputs: Outputs },
): Promise<void> {
  const { handler, signal, job, outputs } = run;
  const producesOutputs = outputs.signals.length + outputs.directives.length > 0;
  if (producesOutputs && signal.causation_depth + 1 > deps.maxCausationDepth) {
    throw new PermanentFailure({
      code: 'causation_depth_exceeded',
      message: `signal ${signal.id} is ${signal.causation_depth} steps from its origin; outputs would pass the limit of ${deps.maxCausationDepth}`,
    });
  }
  await withTransaction(deps.sql, ctx.tx, async (tx) => {
    const signalIds: string[] = [];
    for (const output of outputs.signals) {
      const { signal: derived } = await emit(deps.emit, {
        ctx: { ...ctx, tx },
        input: {
          type: output.type,
          subject: output.subject ?? null,
          payload: output.payload,
          dedupe_key: derivedKey('derived:', signal.id, handler.id, output.key),
          causation_id: signal.id,
        },
      });
      signalIds.push(derived.id);
    }
    const directiveIds: string[] = [];
    for (const output of outputs.directives) {
      const { directive } = await proposeDirective(deps.directives, {
        read: false,
        ctx: { ...ctx, tx },
        cause: { signalId: signal.id, correlationId: signal.correlation_id },
        input: { kind: output.kind, params: output.params, idempotency_key: derivedKey('', signal.id, handler.id, output.key) },
      });
      directiveIds.push(directive.id);
    }
    const succeeded: ExecutionSucceeded = {
      execution_id: job.execution_id,
      handler: handler.id,
      signal_id: signal.id,
      directive_id: null,
      attempt: run.attempt,
      started_at: run.startedAt.toISOString(),
      finished_at: run.finishedAt.toISOString(),
      duration_ms: run.finishedAt.getTime() - run.startedAt.getTime(),
      outputs: { signals: signalIds, directives: directiveIds },
    };
    await emitSystem(deps.emit, ctx, tx, {
      type: 'execution.succeeded',
      subject: signal.subject,
      payload: succeeded,
      dedupe_key: `execution:${job.execution_id}:succeeded`,
      causation_id: signal.id,
    });
  });
}
