/**
 * The one helper every lifecycle step uses to record itself: a bus-owned
 * signal emitted in the step's transaction, so the projection it folds into
 * changes in that same transaction. Directives, executions, policy, secrets
 * and the worker all record their steps through it.
 */
import { DomainError } from '../core/errors.ts';
import type { Tx } from '../db/transaction.ts';
import type { VerbContext } from './verb-context.ts';
import { emit, emitBatch, type EmitDeps } from './emit.ts';
import type { SignalRow } from './model.ts';

/**
 * The payload of each bus-owned signal type, by type (Emmett's
 * `Event<'Type', data>`). Empty here: each domain folder adds its own types
 * with `declare module '…/signals/system.ts'` beside its model, so the log
 * stays ignorant of the domains while every `emitSystem` call and every
 * reducer is checked by the compiler.
 */
export interface SystemSignalPayloads {}

export type SystemSignalType = keyof SystemSignalPayloads;

/** A bus-owned signal to record, its payload checked against its type. */
export type SystemSignal<T extends SystemSignalType = SystemSignalType> = {
  [K in T]: {
    type: K;
    subject?: string | null;
    payload: SystemSignalPayloads[K];
    dedupe_key: string;
    causation_id?: string | null;
    correlation_id?: string | null;
  };
}[T];

/** A stored bus-owned signal, its payload typed by its type. */
export type SystemSignalRow<T extends SystemSignalType = SystemSignalType> = {
  [K in T]: Omit<SignalRow, 'type' | 'payload'> & { type: K; payload: SystemSignalPayloads[K] };
}[T];

/**
 * A stored signal as one of `types`, or undefined when it is of another type.
 * Reserved types are written only through `emitSystem`, whose payloads the
 * compiler checks (API callers may not emit them), so a signal's type names
 * its payload's shape: this is the one place that trust is spelled out.
 */
export function systemSignalOf<T extends SystemSignalType>(signal: SignalRow, types: readonly T[]): SystemSignalRow<T> | undefined {
  return (types as readonly string[]).includes(signal.type) ? (signal as SignalRow & SystemSignalRow<T>) : undefined;
}

/**
 * Emits bus-owned signals inside `tx` — several in one append when given a
 * list. Lifecycle keys name a step (`…:succeeded`, `…:failed:2`); a repeat
 * of that step — a redelivered job, a retried run — carries other timings,
 * and the step recorded first stands.
 */
export async function emitSystem(deps: EmitDeps, ctx: VerbContext, tx: Tx, input: SystemSignal | SystemSignal[]): Promise<void> {
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
