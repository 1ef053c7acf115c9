/**
 * Reading the log in commit order. Every read by position stops below the
 * visibility horizon `pg_snapshot_xmin(pg_current_snapshot())`: all
 * transactions with a smaller xid have ended, so no row can later appear
 * behind a position a reader has passed. A row above the horizon is delivered
 * once the transactions below it end — late, never skipped.
 */
import type postgres from 'postgres';
import type { Queryable, Sql } from '../db/client.ts';
import { readerOf } from '../db/transaction.ts';
import { notFound } from '../core/errors.ts';
import type { Tenant } from '../core/tenant.ts';
import { BEGINNING, encodeCursor, SIGNAL_COLUMNS, toSignal, type Cursor, type Signal, type SignalRow, type TypeFilter } from './model.ts';
import type { VerbCall } from './verb-context.ts';

export interface SignalFilter {
  types?: TypeFilter;
  subject?: string;
  correlationId?: string;
  /** Recorded at or after this time. */
  recordedFrom?: Date;
  /** Recorded before this time. */
  recordedBefore?: Date;
  /** Last position to read, inclusive: a catch-up stops where a shared feed begins. */
  until?: Cursor;
}

/** Reads up to `limit` signals after `cursor`, in position order, below the horizon. */
export async function readSignalsAfter(
  db: Queryable,
  tenant: Tenant,
  cursor: Cursor,
  limit: number,
  filter: SignalFilter = {},
): Promise<SignalRow[]> {
  return db<SignalRow[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)}
      from ${db(`${tenant.schema}.signals`)}
     where (tx_id, seq) > (${cursor.txId}::xid8, ${cursor.seq}::bigint)
       and tx_id < pg_snapshot_xmin(pg_current_snapshot())
       ${matching(db, filter)}
     order by tx_id, seq
     limit ${limit}`;
}

/**
 * What a page adds to a response besides its payloads' JSON: ids, type,
 * subject, actor, keys and timestamps are short (their inputs are capped).
 */
const ROW_ENVELOPE_BYTES = 512;

export interface SignalPageRows {
  rows: SignalRow[];
  /** More signals match past this page: it was cut by `limit` or by `maxBytes`. */
  more: boolean;
}

/**
 * Reads up to `limit` signals after `cursor`, stopping before the one that
 * would take the page's JSON past `maxBytes` — but always at least one. The
 * running sum of payload sizes is taken in PostgreSQL by walking the log one
 * position at a time, so the walk ends at the budget: rows past it are
 * neither sent here nor even read (detoasting and printing a large payload
 * is the expensive part). Only the rows kept are then read whole.
 */
export async function readSignalPage(
  db: Queryable,
  tenant: Tenant,
  cursor: Cursor,
  { limit, maxBytes, filter = {} }: { limit: number; maxBytes: number; filter?: SignalFilter },
): Promise<SignalPageRows> {
  const table = db(`${tenant.schema}.signals`);
  const rows = await db<(SignalRow & { walked: number })[]>`
    with recursive walk (tx_id, seq, n, upto) as (${walkOf(db, db('walk'), table, cursor, limit, maxBytes, filter)})
    select ${db.unsafe(SIGNAL_COLUMNS)}, (select count(*)::int from walk) as walked
      from walk join ${table} signal using (tx_id, seq)
     where ${keptOf(db, db('walk'), limit, maxBytes)}
     order by tx_id, seq`;
  return { rows, more: rows.length > 0 && rows[0]!.walked > rows.length };
}

/**
 * The walk of `readSignalPage` over `table` after `cursor`, as the body of
 * the recursive CTE named `walk`. The walk goes on while it keeps rows, so it
 * takes one step past the page (by count or by bytes): that step says
 * whether more follow.
 */
function walkOf(db: Queryable, walk: postgres.Helper<string>, table: postgres.Helper<string>, cursor: Cursor, limit: number, maxBytes: number, filter: SignalFilter) {
  const size = (alias: string) => db.unsafe(`octet_length(${alias}.payload::text) + ${ROW_ENVELOPE_BYTES}`);
  return db`
      (select tx_id, seq, 1, ${size('origin')}
         from ${table} origin
        where (tx_id, seq) > (${cursor.txId}::xid8, ${cursor.seq}::bigint)
          and tx_id < pg_snapshot_xmin(pg_current_snapshot())
          ${matching(db, filter)}
        order by tx_id, seq
        limit 1)
      union all
      (select step.tx_id, step.seq, ${walk}.n + 1, ${walk}.upto + ${size('step')}
         from ${walk}
        cross join lateral (
          select tx_id, seq, payload
            from ${table} candidate
           where (candidate.tx_id, candidate.seq) > (${walk}.tx_id, ${walk}.seq)
             and candidate.tx_id < pg_snapshot_xmin(pg_current_snapshot())
             ${matching(db, filter)}
           order by tx_id, seq
           limit 1) step
        where ${keptOf(db, walk, limit, maxBytes)})`;
}

/** The walk's steps that belong to the page. */
const keptOf = (db: Queryable, walk: postgres.Helper<string>, limit: number, maxBytes: number) =>
  db`${walk}.n <= ${limit} and (${walk}.upto <= ${maxBytes} or ${walk}.n = 1)`;

export interface TailPage extends SignalPageRows {
  /**
   * Committed signals wait above the horizon, past this page: a tail looks
   * again shortly, since the transaction holding the horizon back may not be
   * an emit and then no wake-up comes. Asked in the read's own statement, so
   * of the same snapshot: a page that was not cut read every row below the
   * horizon, and the rows left are exactly those above it.
   */
  heldBack: boolean;
}

/**
 * `readSignalPage` for a live tail, with the held-back check in the same
 * statement. One org per statement, on purpose: its text is fixed per org,
 * so its plan is prepared once per connection, while a statement over the
 * orgs woken together has a new text each time and is planned each time
 * (measured: about 0.5 ms of planning per org of the statement, more than a
 * prepared single read costs in all).
 */
export async function readTailPage(
  db: Queryable,
  tenant: Tenant,
  after: Cursor,
  { limit, maxBytes }: { limit: number; maxBytes: number },
): Promise<TailPage> {
  const table = db(`${tenant.schema}.signals`);
  // One row with the walk's length and the held-back flag even when the
  // page is empty, and the page's rows joined to it.
  const rows = await db<(SignalRow & { walked: number; held_back: boolean })[]>`
    with recursive walk (tx_id, seq, n, upto) as (${walkOf(db, db('walk'), table, after, limit, maxBytes, {})})
    select summary.walked, summary.held_back, page.*
      from (select (select count(*)::int from walk) as walked,
                   exists (select 1 from ${table}
                            where (tx_id, seq) > (${after.txId}::xid8, ${after.seq}::bigint)
                              and tx_id >= pg_snapshot_xmin(pg_current_snapshot())) as held_back) summary
      left join lateral (
        select ${db.unsafe(SIGNAL_COLUMNS)}
          from walk join ${table} signal using (tx_id, seq)
         where ${keptOf(db, db('walk'), limit, maxBytes)}) page on true
     order by page.position`;
  const page: TailPage = { rows: [], more: false, heldBack: rows[0]!.held_back };
  for (const { walked, held_back: _, ...row } of rows) if (row.position !== null) page.rows.push(row);
  page.more = page.rows.length > 0 && rows[0]!.walked > page.rows.length;
  return page;
}

/**
 * True when committed signals matching `filter` lie after `position` — after
 * a short page, those are rows held above the horizon. A tail looks again
 * shortly when this holds, since the transaction holding the horizon back
 * may not be an emit and then no wake-up comes. It asks about rows past the
 * page rather than comparing with the horizon: this statement's snapshot is
 * newer than the read's, and the horizon may have moved past rows the read
 * could not return. The filter keeps rows this reader never returns from
 * looking held forever.
 */
export async function hasSignalsAfter(
  db: Queryable,
  tenant: Tenant,
  position: Cursor,
  filter: SignalFilter = {},
): Promise<boolean> {
  const [row] = await db<{ found: boolean }[]>`
    select exists (
      select 1 from ${db(`${tenant.schema}.signals`)}
       where (tx_id, seq) > (${position.txId}::xid8, ${position.seq}::bigint) ${matching(db, filter)}
    ) as found`;
  return row!.found;
}

function matching(db: Queryable, { types, subject, correlationId, recordedFrom, recordedBefore, until }: SignalFilter) {
  return db`
    ${until ? db`and (tx_id, seq) <= (${until.txId}::xid8, ${until.seq}::bigint)` : db``}
    ${types ? db`and (type = any(${types.exact}::text[]) or type like any(${types.prefixes}::text[]))` : db``}
    ${subject !== undefined ? db`and subject = ${subject}` : db``}
    ${correlationId !== undefined ? db`and correlation_id = ${correlationId}` : db``}
    ${recordedFrom ? db`and recorded_at >= ${recordedFrom}` : db``}
    ${recordedBefore ? db`and recorded_at < ${recordedBefore}` : db``}`;
}

/**
 * "From now on": the cursor below which everything is the past, and the rows
 * above it that are the past too. The horizon alone is not the present: while
 * an older transaction is open, rows that committed before this call sit
 * above it, and a reader starting there would deliver them as new.
 */
export interface Present {
  /** Everything that commits after this call is after it. */
  cursor: Cursor;
  /** True for a position above `cursor` whose transaction had already committed at the call. */
  isPast(position: string): boolean;
  /** No position from here on is past: its transaction had not started at the call. */
  pastEnds: string;
}

export async function currentHorizon(db: Queryable): Promise<Present> {
  const [row] = await db<{ xmin: string; xmax: string; xip: string[] }[]>`
    select pg_snapshot_xmin(s)::text as xmin, pg_snapshot_xmax(s)::text as xmax,
           array(select pg_snapshot_xip(s)::text) as xip
      from pg_current_snapshot() as s`;
  const xmax = BigInt(row!.xmax);
  const running = new Set(row!.xip);
  return {
    cursor: { txId: (BigInt(row!.xmin) - 1n).toString(), seq: '9223372036854775807' },
    pastEnds: encodeCursor({ txId: xmax.toString(), seq: '0' }),
    // Committed before the call = not yet started at xmax, nor still running.
    isPast(position) {
      const txId = BigInt(`0x${position.slice(0, 16)}`);
      return txId < xmax && !running.has(txId.toString());
    },
  };
}

export interface SignalListPage {
  data: Signal[];
  next_cursor: string | null;
  has_more: boolean;
}

/** A page of at most `limit` signals whose JSON stays within `maxBytes` (or one signal, when that alone is larger). */
export async function listSignals(
  db: Queryable,
  tenant: Tenant,
  { after, limit, maxBytes, filter }: { after?: Cursor; limit: number; maxBytes: number; filter?: SignalFilter },
): Promise<SignalListPage> {
  let from = after ?? BEGINNING;
  if (filter?.recordedFrom) {
    const start = await firstRecordedSince(db, tenant, from, filter.recordedFrom);
    if (!start) return { data: [], next_cursor: after && after !== BEGINNING ? encodeCursor(after) : null, has_more: false };
    from = start;
  }
  const { rows, more } = await readSignalPage(db, tenant, from, { limit, maxBytes, ...(filter ? { filter } : {}) });
  const last = rows[rows.length - 1];
  return {
    data: rows.map(toSignal),
    // The cursor to continue from, also at the end of the stream: a tailing
    // client keeps polling with it and sees nothing twice.
    next_cursor: last ? last.position : after && after !== BEGINNING ? encodeCursor(after) : null,
    has_more: more,
  };
}

/**
 * Where a walk for signals recorded since `since` may start: just before the
 * first position after `after` holding one, or null when none is. The walk in
 * position order would otherwise step over every older row one index probe
 * at a time (a recent window of a long log: 250 ms for 100,000 rows); the
 * recording times' BRIN index (tenants/0012) finds the start at once. Positions follow
 * commit order and recording times only nearly so, hence the least position
 * of all the matches rather than the position of the earliest time; the walk
 * still applies the time filter to every row. The `offset 0` fence keeps the
 * planner from answering the `order by … limit 1` through the position index,
 * which is that same step-by-step walk.
 */
async function firstRecordedSince(db: Queryable, tenant: Tenant, after: Cursor, since: Date): Promise<Cursor | null> {
  // Not a prepared statement: planned for this bound each time, so a recent
  // window reads the BRIN index's last ranges and an old one scans (a generic
  // plan would pick one way for every bound).
  const rows = await db.unsafe<{ tx_id: string; seq: string }[]>(
    `select recent.tx_id::text as tx_id, (recent.seq - 1)::text as seq
       from (select tx_id, seq from "${tenant.schema}".signals
              where recorded_at >= $1 and (tx_id, seq) > ($2::xid8, $3::bigint)
             offset 0) recent
      order by recent.tx_id, recent.seq limit 1`,
    [since.toISOString(), after.txId, after.seq],
  );
  const row = rows[0];
  return row ? { txId: row.tx_id, seq: row.seq } : null;
}

export async function getSignal(db: Queryable, tenant: Tenant, id: string): Promise<Signal> {
  const [row] = await db<SignalRow[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)} from ${db(`${tenant.schema}.signals`)} where id = ${id}`;
  if (!row) throw notFound('signal');
  return toSignal(row);
}

/** The signal `input.id` of the caller's org: what `GET …/signals/{id}` answers. */
export function showSignal(deps: { sql: Sql }, { ctx, input }: VerbCall<{ id: string }>): Promise<Signal> {
  return getSignal(readerOf(deps.sql, ctx.tx), ctx.tenant, input.id);
}

/** A page of the caller's org's log: what `GET …/signals` answers. */
export function showSignals(
  deps: { sql: Sql },
  { ctx, input }: VerbCall<{ after?: Cursor; limit: number; maxBytes: number; filter?: SignalFilter }>,
): Promise<SignalListPage> {
  return listSignals(readerOf(deps.sql, ctx.tx), ctx.tenant, input);
}
