/**
 * Reading the log in commit order. Every read by position stops below the
 * visibility horizon `pg_snapshot_xmin(pg_current_snapshot())`: all
 * transactions with a smaller xid have ended, so no row can later appear
 * behind a position a reader has passed. A row above the horizon is delivered
 * once the transactions below it end — late, never skipped.
 */
import type { Queryable } from '../db/client.ts';
import { notFound } from '../core/errors.ts';
import type { TenantRef } from '../tenancy/tenant-migrations.ts';
import { BEGINNING, encodeCursor, SIGNAL_COLUMNS, toSignal, type Cursor, type Signal, type SignalRow, type TypeFilter } from './model.ts';

export interface SignalFilter {
  types?: TypeFilter;
  subject?: string;
  correlationId?: string;
}

export interface SignalPage {
  rows: SignalRow[];
  /**
   * True when committed rows exist above the horizon: a reader that got less
   * than a full page should look again shortly even without a wake-up, since
   * the transaction holding the horizon back may not be an emit.
   */
  heldBack: boolean;
}

/** Reads up to `limit` signals after `cursor`, in position order. */
export async function readSignalsAfter(
  db: Queryable,
  tenant: TenantRef,
  cursor: Cursor,
  limit: number,
  filter: SignalFilter = {},
): Promise<SignalPage> {
  const table = db(`${tenant.schema}.signals`);
  const types = filter.types;
  const rows = await db<SignalRow[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)}
      from ${table}
     where (tx_id, seq) > (${cursor.txId}::xid8, ${cursor.seq}::bigint)
       and tx_id < pg_snapshot_xmin(pg_current_snapshot())
       ${types ? db`and (type = any(${types.exact}::text[]) or type like any(${types.prefixes}::text[]))` : db``}
       ${filter.subject !== undefined ? db`and subject = ${filter.subject}` : db``}
       ${filter.correlationId !== undefined ? db`and correlation_id = ${filter.correlationId}` : db``}
     order by tx_id, seq
     limit ${limit}`;
  if (rows.length === limit) return { rows, heldBack: false };
  const [held] = await db<{ held: boolean }[]>`
    select exists (select 1 from ${table} where tx_id >= pg_snapshot_xmin(pg_current_snapshot())) as held`;
  return { rows, heldBack: held!.held };
}

/** The cursor for "from now on": everything that commits after this call is after it. */
export async function currentHorizon(db: Queryable): Promise<Cursor> {
  const [row] = await db<{ tx: string }[]>`select (pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1)::text as tx`;
  return { txId: row!.tx, seq: '9223372036854775807' };
}

export interface SignalListPage {
  data: Signal[];
  next_cursor: string | null;
  has_more: boolean;
}

export async function listSignals(
  db: Queryable,
  tenant: TenantRef,
  { after, limit, filter }: { after?: Cursor; limit: number; filter?: SignalFilter },
): Promise<SignalListPage> {
  const page = await readSignalsAfter(db, tenant, after ?? BEGINNING, limit + 1, filter);
  const rows = page.rows.slice(0, limit);
  const last = rows[rows.length - 1];
  return {
    data: rows.map(toSignal),
    // The cursor to continue from, also at the end of the stream: a tailing
    // client keeps polling with it and sees nothing twice.
    next_cursor: last ? last.position : after && after !== BEGINNING ? encodeCursor(after) : null,
    has_more: page.rows.length > limit,
  };
}

export async function getSignal(db: Queryable, tenant: TenantRef, id: string): Promise<Signal> {
  const [row] = await db<SignalRow[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)} from ${db(`${tenant.schema}.signals`)} where id = ${id}`;
  if (!row) throw notFound('signal');
  return toSignal(row);
}
