/** Reading directives: one by id, or a page in proposal order. */
import { notFound } from '../core/errors.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { readerOf } from '../db/transaction.ts';
import { isoTimestamp, SIGNAL_COLUMNS, toSignal, type Signal, type SignalRow } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import type { DirectiveRow, DirectiveStatus } from './model.ts';

export type Directive = DirectiveRow;

export const DIRECTIVE_SELECT = `
  id, kind, params, idempotency_key, actor, causation_id, correlation_id, installation_id, status, decision,
  estimated_cost_usd::float8 as estimated_cost_usd, cost_usd::float8 as cost_usd, result, error, attempts,
  ${isoTimestamp('expires_at')} as expires_at, decided_by, decision_reason,
  ${isoTimestamp('proposed_at')} as proposed_at, ${isoTimestamp('updated_at')} as updated_at`;

export async function findDirective(db: Queryable, tenant: Tenant, id: string, { lock = false } = {}): Promise<Directive | undefined> {
  const [row] = await db<Directive[]>`
    select ${db.unsafe(DIRECTIVE_SELECT)} from ${db(`${tenant.schema}.directives`)} where id = ${id}
    ${lock ? db`for update` : db``}`;
  return row;
}

export async function getDirective(db: Queryable, tenant: Tenant, id: string): Promise<Directive> {
  const row = await findDirective(db, tenant, id);
  if (!row) throw notFound('directive');
  return row;
}

export async function listDirectives(
  db: Queryable,
  tenant: Tenant,
  { status, kind, after, limit }: DirectiveFilter,
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

export type DirectiveFilter = { status?: DirectiveStatus; kind?: string; after?: string; limit: number };

/** The read verbs: in the caller's transaction when it has one. */
export function showDirective(deps: { sql: Sql }, { ctx, input }: VerbCall<{ id: string }>): Promise<Directive> {
  return getDirective(readerOf(deps.sql, ctx.tx), ctx.tenant, input.id);
}

export function showDirectives(deps: { sql: Sql }, { ctx, input }: VerbCall<DirectiveFilter>): Promise<{ data: Directive[]; next_cursor: string | null }> {
  return listDirectives(readerOf(deps.sql, ctx.tx), ctx.tenant, input);
}

/** At most this many lifecycle signals of one directive are read. */
export const DIRECTIVE_HISTORY_LIMIT = 200;

/**
 * The directive's status changes in log order: its `directive.*` signals,
 * which all carry the subject `directive:<id>` (read through the subject index).
 */
export async function directiveHistory(db: Queryable, tenant: Tenant, id: string): Promise<Signal[]> {
  const rows = await db<SignalRow[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)} from ${db(`${tenant.schema}.signals`)}
     where subject = ${`directive:${id}`} and type like 'directive.%'
     order by tx_id, seq limit ${DIRECTIVE_HISTORY_LIMIT}`;
  return rows.map(toSignal);
}

/** One directive with its status history: what the console's directive page shows. */
export async function showDirectiveHistory(deps: { sql: Sql }, { ctx, input }: VerbCall<{ id: string }>): Promise<{ directive: Directive; history: Signal[] }> {
  const db = readerOf(deps.sql, ctx.tx);
  const directive = await getDirective(db, ctx.tenant, input.id);
  return { directive, history: await directiveHistory(db, ctx.tenant, input.id) };
}
