/**
 * The one helper every lifecycle step uses to record itself: a bus-owned
 * signal emitted in the step's transaction, so the projection it folds into
 * changes in that same transaction. Directives, executions, policy, secrets
 * and the worker all record their steps through it.
 */
import type { Tenant } from '../core/tenant.ts';
import { DomainError } from '../core/errors.ts';
import type { Tx } from '../db/transaction.ts';
import type { Actor } from './actor.ts';
import { emit, emitBatch, type EmitDeps } from './emit.ts';

export interface LifecycleContext {
  tenant: Tenant;
  actor: Actor;
  source: string;
  traceparent?: string | null;
  installationId?: string | null;
}

export interface SystemSignal {
  type: string;
  subject?: string | null;
  payload: object;
  dedupe_key: string;
  causation_id?: string | null;
  correlation_id?: string | null;
}

/**
 * Emits bus-owned signals inside `tx` — several in one append when given a
 * list. Lifecycle keys name a step (`…:succeeded`, `…:failed:2`); a repeat
 * of that step — a redelivered job, a retried run — carries other timings,
 * and the step recorded first stands.
 */
export async function emitSystem(deps: EmitDeps, ctx: LifecycleContext, tx: Tx, input: SystemSignal | SystemSignal[]): Promise<void> {
  const system = { ...ctx, system: true, tx };
  if (Array.isArray(input)) {
    const results = await emitBatch(deps, { ctx: system, inputs: input });
    const invalid = results.find((result) => result.status === 'invalid');
    if (invalid && 'error' in invalid) throw new DomainError('validation_failed', `a lifecycle signal is not valid: ${invalid.error.message}`);
    return;
  }
  try {
    await emit(deps, { ctx: system, input });
  } catch (error) {
    if (!(error instanceof DomainError && error.code === 'idempotency_conflict')) throw error;
  }
}
