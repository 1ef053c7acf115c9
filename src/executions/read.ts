/** Reading executions: one by id, or a page in enqueue order. */
import { notFound } from '../core/errors.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { readerOf } from '../db/transaction.ts';
import { isoTimestamp } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import type { ExecutionRow, ExecutionStatus } from './model.ts';

export type Execution = ExecutionRow;

const EXECUTION_SELECT = `
  id, handler, signal_id, directive_id, status, attempts, ${isoTimestamp('started_at')} as started_at,
  ${isoTimestamp('finished_at')} as finished_at, duration_ms, error, outputs, tokens_in, tokens_out,
  cost_usd::float8 as cost_usd, ${isoTimestamp('updated_at')} as updated_at`;

export async function findExecution(db: Queryable, tenant: Tenant, id: string, { lock = false } = {}): Promise<Execution | undefined> {
  const [row] = await db<Execution[]>`
    select ${db.unsafe(EXECUTION_SELECT)} from ${db(`${tenant.schema}.executions`)} where id = ${id} ${lock ? db`for update` : db``}`;
  return row;
}

export async function getExecution(db: Queryable, tenant: Tenant, id: string): Promise<Execution> {
  const row = await findExecution(db, tenant, id);
  if (!row) throw notFound('execution');
  return row;
}

export async function listExecutions(
  db: Queryable,
  tenant: Tenant,
  { status, handler, signalId, after, limit }: ExecutionFilter,
): Promise<{ data: Execution[]; next_cursor: string | null }> {
  const rows = await db<Execution[]>`
    select ${db.unsafe(EXECUTION_SELECT)} from ${db(`${tenant.schema}.executions`)}
     where true
       ${status ? db`and status = ${status}` : db``}
       ${handler ? db`and handler = ${handler}` : db``}
       ${signalId ? db`and signal_id = ${signalId}` : db``}
       ${after ? db`and id > ${after}` : db``}
     order by id limit ${limit + 1}`;
  const data = rows.slice(0, limit);
  return { data, next_cursor: rows.length > limit ? data[data.length - 1]!.id : null };
}

export type ExecutionFilter = { status?: ExecutionStatus; handler?: string; signalId?: string; after?: string; limit: number };

/** The read verbs: in the caller's transaction when it has one. */
export function showExecution(deps: { sql: Sql }, { ctx, input }: VerbCall<{ id: string }>): Promise<Execution> {
  return getExecution(readerOf(deps.sql, ctx.tx), ctx.tenant, input.id);
}

export function showExecutions(deps: { sql: Sql }, { ctx, input }: VerbCall<ExecutionFilter>): Promise<{ data: Execution[]; next_cursor: string | null }> {
  return listExecutions(readerOf(deps.sql, ctx.tx), ctx.tenant, input);
}
