/**
 * Reading directives, and the one helper every lifecycle step uses to record
 * itself: a system signal emitted in the step's transaction, so the row (its
 * projection) changes in that same transaction.
 */
import type { Actor } from '../auth/actor.ts';
import { DomainError, notFound } from '../core/errors.ts';
import type { Queryable } from '../db/client.ts';
import type { Tx } from '../db/transaction.ts';
import { emit, emitBatch, type EmitDeps } from '../signals/emit.ts';
import { isoTimestamp } from '../signals/model.ts';
import type { TenantRef } from '../tenancy/tenant-migrations.ts';
import type { DirectiveRow, DirectiveStatus } from './model.ts';

export type Directive = DirectiveRow;

export const DIRECTIVE_SELECT = `
  id, kind, params, idempotency_key, actor, causation_id, correlation_id, installation_id, status, decision,
  estimated_cost_usd::float8 as estimated_cost_usd, cost_usd::float8 as cost_usd, result, error, attempts,
  ${isoTimestamp('expires_at')} as expires_at, decided_by, decision_reason,
  ${isoTimestamp('proposed_at')} as proposed_at, ${isoTimestamp('updated_at')} as updated_at`;

export async function findDirective(db: Queryable, tenant: TenantRef, id: string, { lock = false } = {}): Promise<Directive | undefined> {
  const [row] = await db<Directive[]>`
    select ${db.unsafe(DIRECTIVE_SELECT)} from ${db(`${tenant.schema}.directives`)} where id = ${id}
    ${lock ? db`for update` : db``}`;
  return row;
}

export async function getDirective(db: Queryable, tenant: TenantRef, id: string): Promise<Directive> {
  const row = await findDirective(db, tenant, id);
  if (!row) throw notFound('directive');
  return row;
}

export async function listDirectives(
  db: Queryable,
  tenant: TenantRef,
  { status, kind, after, limit }: { status?: DirectiveStatus; kind?: string; after?: string; limit: number },
): Promise<{ data: Directive[]; next_cursor: string | null }> {
  // Ids are time-sortable, so id order is proposal order.
  const rows = await db<Directive[]>`
    select ${db.unsafe(DIRECTIVE_SELECT)} from ${db(`${tenant.schema}.directives`)}
     where true
       ${status ? db`and status = ${status}` : db``}
       ${kind ? db`and kind = ${kind}` : db``}
       ${after ? db`and id > ${after}` : db``}
     order by id limit ${limit + 1}`;
  const data = rows.slice(0, limit);
  return { data, next_cursor: rows.length > limit ? data[data.length - 1]!.id : null };
}

export interface LifecycleContext {
  tenant: TenantRef;
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
