/** Reading executions: one by id, or a page in enqueue order. */
import { notFound } from '../core/errors.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { readerOf } from '../db/transaction.ts';
import { isoTimestamp, SIGNAL_COLUMNS, toSignal, type Signal } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import type { ExecutionRow, ExecutionStatus } from './model.ts';
import type { SignalRow } from '../signals/model.ts';

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
  { status, handler, signalId, directiveId, after, limit }: ExecutionFilter,
): Promise<{ data: Execution[]; next_cursor: string | null }> {
  const rows = await db<Execution[]>`
    select ${db.unsafe(EXECUTION_SELECT)} from ${db(`${tenant.schema}.executions`)}
     where true
       ${status ? db`and status = ${status}` : db``}
       ${handler ? db`and handler = ${handler}` : db``}
       ${signalId ? db`and signal_id = ${signalId}` : db``}
       ${directiveId ? db`and directive_id = ${directiveId}` : db``}
       ${after ? db`and id > ${after}` : db``}
     order by id limit ${limit + 1}`;
  const data = rows.slice(0, limit);
  return { data, next_cursor: rows.length > limit ? data[data.length - 1]!.id : null };
}

export type ExecutionFilter = { status?: ExecutionStatus; handler?: string; signalId?: string; directiveId?: string; after?: string; limit: number };

/** At most this many lifecycle signals of one execution are read: a page, not an unbounded list. */
export const EXECUTION_HISTORY_LIMIT = 200;

/**
 * The execution's lifecycle signals in log order — each attempt's start,
 * failure or success, and retries asked for. Found through an index: an
 * executor run's signals share its directive's subject, a handler run's
 * name its input signal as their cause.
 */
export async function executionHistory(db: Queryable, tenant: Tenant, execution: Execution): Promise<Signal[]> {
  const scope = execution.directive_id
    ? db`subject = ${`directive:${execution.directive_id}`}`
    : db`causation_id = ${execution.signal_id ?? ''}`;
  const rows = await db<SignalRow[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)} from ${db(`${tenant.schema}.signals`)}
     where ${scope} and type like 'execution.%' and payload->>'execution_id' = ${execution.id}
     order by tx_id, seq limit ${EXECUTION_HISTORY_LIMIT}`;
  return rows.map(toSignal);
}

/** The read verbs: in the caller's transaction when it has one. */
export function showExecution(deps: { sql: Sql }, { ctx, input }: VerbCall<{ id: string }>): Promise<Execution> {
  return getExecution(readerOf(deps.sql, ctx.tx), ctx.tenant, input.id);
}

/** One execution with its lifecycle signals: what the console's execution page shows. */
export async function showExecutionHistory(deps: { sql: Sql }, { ctx, input }: VerbCall<{ id: string }>): Promise<{ execution: Execution; history: Signal[] }> {
  const db = readerOf(deps.sql, ctx.tx);
  const execution = await getExecution(db, ctx.tenant, input.id);
  return { execution, history: await executionHistory(db, ctx.tenant, execution) };
}

export function showExecutions(deps: { sql: Sql }, { ctx, input }: VerbCall<ExecutionFilter>): Promise<{ data: Execution[]; next_cursor: string | null }> {
  return listExecutions(readerOf(deps.sql, ctx.tx), ctx.tenant, input);
}
