/**
 * A handler run's outputs and how they are written: collected while the
 * handler runs, then derived signals and proposed directives written in the
 * caller's transaction under keys derived from (signal, handler, local key).
 * A retried, redelivered or replayed run therefore resolves to the rows the
 * first run wrote; each output says whether this write created it. The live
 * runtime and redelivery share this, so they key outputs alike.
 */
import { canonicalJson, sha256Hex } from '../core/canonical-json.ts';
import type { Tx } from '../db/transaction.ts';
import type { DirectiveDeps } from '../directives/deps.ts';
import { proposeDirective } from '../directives/propose.ts';
import type { ExecutionError, ExecutionSucceeded } from '../executions/model.ts';
import type { Decision } from '../policy/model.ts';
import { emit, type EmitDeps } from '../signals/emit.ts';
import type { SignalRow } from '../signals/model.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import type { RegisteredHandler } from './registry.ts';

const DEDUPE_KEY_LIMIT = 256;

export interface Outputs {
  signals: Array<{ type: string; subject?: string | null; payload: Record<string, unknown>; key: string }>;
  directives: Array<{ kind: string; params: Record<string, unknown>; key: string }>;
}

/** A stable key from (signal, handler, local key), hashed when it would not fit. */
export function derivedKey(prefix: string, signalId: string, handler: string, key: string): string {
  const plain = `${prefix}${signalId}:${handler}:${key}`;
  return plain.length <= DEDUPE_KEY_LIMIT ? plain : `${prefix}${sha256Hex(canonicalJson([signalId, handler, key]))}`;
}

export async function collect(handler: RegisteredHandler, signal: SignalRow, attempt: number): Promise<Outputs> {
  const outputs: Outputs = { signals: [], directives: [] };
  await handler.handle(signal, {
    attempt,
    emit: (input) => void outputs.signals.push(input),
    propose: (input) => void outputs.directives.push(input),
  });
  return outputs;
}

/** Why `signal` may not have outputs (the loop guard), or null. */
export function depthExceeded(signal: SignalRow, outputs: Outputs, maxCausationDepth: number): ExecutionError | null {
  if (outputs.signals.length + outputs.directives.length === 0 || signal.causation_depth + 1 <= maxCausationDepth) return null;
  return {
    code: 'causation_depth_exceeded',
    message: `signal ${signal.id} is ${signal.causation_depth} steps from its origin; outputs would pass the limit of ${maxCausationDepth}`,
  };
}

/** A rule may propose only its package's scopes: anything else fails the run, writing nothing. */
export function scopeViolation(handler: Pick<RegisteredHandler, 'id' | 'scopes'>, outputs: Outputs): ExecutionError | null {
  const outside = handler.scopes && outputs.directives.find((directive) => !handler.scopes!.includes(directive.kind));
  if (!outside) return null;
  return {
    code: 'scope_violation',
    message: `${handler.id} proposed ${outside.kind}, which is outside its package's scopes (${handler.scopes!.join(', ') || 'none'})`,
  };
}

export interface WrittenSignal {
  id: string;
  type: string;
  subject: string | null;
  dedupe_key: string;
  created: boolean;
}

export interface WrittenDirective {
  id: string;
  kind: string;
  idempotency_key: string;
  created: boolean;
  /** When created: the decision recorded and the policy's own. */
  decision?: Decision;
  policy?: Decision;
}

export interface WrittenOutputs {
  signals: WrittenSignal[];
  directives: WrittenDirective[];
}

/** Writes `outputs` of `handler` on `signal` in `tx`; `hold` (a reason) holds new directives for approval. */
export async function writeOutputs(
  deps: { emit: EmitDeps; directives: DirectiveDeps },
  ctx: VerbContext,
  tx: Tx,
  { handler, signal, outputs, hold }: { handler: RegisteredHandler; signal: SignalRow; outputs: Outputs; hold?: string },
): Promise<WrittenOutputs> {
  const written: WrittenOutputs = { signals: [], directives: [] };
  // A rule's outputs are its installation's: directives carry it to policy and to the executor's credentials.
  if (handler.installationId) ctx = { ...ctx, installationId: handler.installationId };
  for (const output of outputs.signals) {
    const dedupeKey = derivedKey('derived:', signal.id, handler.id, output.key);
    const { signal: derived, deduplicated } = await emit(deps.emit, {
      ctx: { ...ctx, tx },
      input: { type: output.type, subject: output.subject ?? null, payload: output.payload, dedupe_key: dedupeKey, causation_id: signal.id },
    });
    written.signals.push({ id: derived.id, type: output.type, subject: output.subject ?? null, dedupe_key: dedupeKey, created: !deduplicated });
  }
  for (const output of outputs.directives) {
    const idempotencyKey = derivedKey('', signal.id, handler.id, output.key);
    const { directive, created, decision, policy } = await proposeDirective(deps.directives, {
      read: false,
      ctx: { ...ctx, tx },
      cause: { signalId: signal.id, correlationId: signal.correlation_id },
      input: { kind: output.kind, params: output.params, idempotency_key: idempotencyKey },
      ...(hold ? { hold } : {}),
    });
    written.directives.push({ id: directive.id, kind: output.kind, idempotency_key: idempotencyKey, created, ...(decision ? { decision, policy } : {}) });
  }
  return written;
}

/** Records a run's success with its outputs, in the transaction that wrote them. */
export async function recordSucceeded(
  deps: { emit: EmitDeps },
  ctx: VerbContext,
  tx: Tx,
  run: { executionId: string; handler: string; signal: SignalRow; attempt: number; startedAt: Date; finishedAt: Date; outputs: WrittenOutputs },
): Promise<void> {
  const succeeded: ExecutionSucceeded = {
    execution_id: run.executionId,
    handler: run.handler,
    signal_id: run.signal.id,
    directive_id: null,
    attempt: run.attempt,
    started_at: run.startedAt.toISOString(),
    finished_at: run.finishedAt.toISOString(),
    duration_ms: run.finishedAt.getTime() - run.startedAt.getTime(),
    outputs: { signals: run.outputs.signals.map((output) => output.id), directives: run.outputs.directives.map((output) => output.id) },
  };
  await emitSystem(deps.emit, ctx, tx, {
    type: 'execution.succeeded',
    subject: run.signal.subject,
    payload: succeeded,
    dedupe_key: `execution:${run.executionId}:succeeded`,
    causation_id: run.signal.id,
  });
}
