/**
 * Shadow projections: a schema of its own per replay holding empty copies of
 * the org's projection tables, into which the log is folded through the same
 * reducers live writes use — each projection is handed a tenant whose schema
 * is the shadow one. Rebuild swaps the copies in; as-of keeps them to read.
 */
import type { Queryable, Sql } from '../db/client.ts';
import { withTransaction, type Tx } from '../db/transaction.ts';
import type { Projection } from '../projections/registry.ts';
import { SIGNAL_COLUMNS, type Cursor, type SignalRow } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import { ReplayStepError } from './modes.ts';

export { BEGINNING as LOG_START, type Cursor } from '../signals/model.ts';

export type PagedSignal = SignalRow & { tx_id: string; seq_raw: string };

/** The shadow schema of a replay: derived from its id alone, so a resumed or discarding run finds it. */
export function shadowSchemaOf(replayId: string, kind: 'rebuild' | 'as_of'): string {
  const body = replayId.slice(replayId.indexOf('_') + 1);
  if (!/^[0-9a-z]{1,40}$/.test(body)) throw new Error(`not a replay id: ${replayId}`);
  return `${kind === 'rebuild' ? 'rb' : 'asof'}_${body}`;
}

export async function createShadow(db: Queryable, tenant: Tenant, schema: string, projections: readonly Projection[]): Promise<void> {
  await db`drop schema if exists ${db(schema)} cascade`;
  await db`create schema ${db(schema)}`;
  for (const projection of projections) {
    await db`create table ${db(`${schema}.${projection.table}`)} (like ${db(`${tenant.schema}.${projection.table}`)} including all)`;
  }
}

/** Makes a materialized shadow schema refuse every write to any of its tables, so as-of state stays what it was. */
export async function freezeShadow(db: Queryable, schema: string): Promise<void> {
  await db`
    create function ${db(`${schema}.refuse_writes`)}() returns trigger language plpgsql as $$
    begin raise exception 'as-of state is read-only'; end $$`;
  const tables = await db<{ name: string }[]>`select tablename as name from pg_tables where schemaname = ${schema} order by tablename`;
  for (const { name } of tables) {
    await db`
      create trigger read_only before insert or update or delete or truncate on ${db(`${schema}.${name}`)}
      for each statement execute function ${db(`${schema}.refuse_writes`)}()`;
  }
}

export async function dropShadow(db: Queryable, schema: string): Promise<void> {
  await db`drop schema if exists ${db(schema)} cascade`;
}

export interface PageBounds {
  /** Read only below the visibility horizon, so no signal committing later at an earlier position is skipped. */
  horizon: boolean;
  /** Inclusive upper position. */
  until?: Cursor | null;
  /** Only signals recorded at or before this time. */
  recordedBy?: string | null;
}

/** One page of the log after `cursor`, in position order. */
export function readLogPage(db: Queryable, tenant: Tenant, cursor: Cursor, limit: number, bounds: PageBounds): Promise<PagedSignal[]> {
  return db<PagedSignal[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)}, tx_id::text as tx_id, seq::text as seq_raw
      from ${db(`${tenant.schema}.signals`)}
     where (tx_id, seq) > (${cursor.txId}::xid8, ${cursor.seq}::bigint)
       -- Replay's own record is no projection a replay refolds: skipping it keeps totals the same however a run went.
       and type not like 'replay.%'
       ${bounds.horizon ? db`and tx_id < pg_snapshot_xmin(pg_current_snapshot())` : db``}
       ${bounds.until ? db`and (tx_id, seq) <= (${bounds.until.txId}::xid8, ${bounds.until.seq}::bigint)` : db``}
       ${bounds.recordedBy ? db`and recorded_at <= ${bounds.recordedBy}::timestamptz` : db``}
     -- Qualified: a bare tx_id would sort by its text alias above ('10' < '9').
     order by signals.tx_id, signals.seq
     limit ${limit}`;
}

/** Signals after `cursor` within `bounds`: a replay's total. */
export async function countLog(db: Queryable, tenant: Tenant, cursor: Cursor, bounds: PageBounds): Promise<number> {
  const [row] = await db<{ count: number }[]>`
    select count(*)::float8 as count from ${db(`${tenant.schema}.signals`)}
     where (tx_id, seq) > (${cursor.txId}::xid8, ${cursor.seq}::bigint) and type not like 'replay.%'
       ${bounds.until ? db`and (tx_id, seq) <= (${bounds.until.txId}::xid8, ${bounds.until.seq}::bigint)` : db``}
       ${bounds.recordedBy ? db`and recorded_at <= ${bounds.recordedBy}::timestamptz` : db``}`;
  return row!.count;
}

export const cursorAfter = (page: PagedSignal[]): Cursor => {
  const last = page[page.length - 1]!;
  return { txId: last.tx_id, seq: last.seq_raw };
};

/** A reducer threw while folding: not a database failure. */
class FoldFailure extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** Folds signals (position order) into the shadow tables. */
export async function foldPage(db: Queryable, shadow: Tenant, projections: readonly Projection[], signals: SignalRow[]): Promise<void> {
  for (const projection of projections) {
    const mine = signals.filter((signal) => projection.handles(signal.type));
    if (mine.length === 0) continue;
    try {
      await projection.apply(db, shadow, mine);
    } catch (error) {
      if (!(error instanceof Error) || 'severity' in error) throw error;
      throw new FoldFailure(`${projection.name}: ${error.message}`);
    }
  }
}

export interface FoldTarget {
  sql: Sql;
  tenant: Tenant;
  shadow: Tenant;
  projections: readonly Projection[];
  pageSize: number;
}

/**
 * Folds the log after `from` into the shadow tables below the horizon, one
 * page and its checkpoint (`checkpoint(next, processed, tx)`) per
 * transaction, until a page comes back empty; a reducer's failure is named
 * by its signal. Answers where it stopped.
 */
export async function foldCheckpointed(
  target: FoldTarget,
  from: { cursor: Cursor; processed: number },
  bounds: Omit<PageBounds, 'horizon'>,
  checkpoint: (next: Cursor, processed: number, tx: Tx) => Promise<void>,
): Promise<{ cursor: Cursor; processed: number }> {
  let { cursor, processed } = from;
  for (;;) {
    const page = await readLogPage(target.sql, target.tenant, cursor, target.pageSize, { ...bounds, horizon: true });
    if (page.length === 0) return { cursor, processed };
    const next = cursorAfter(page);
    const done = processed + page.length;
    await withTransaction(target.sql, undefined, async (tx) => {
      await foldPage(tx.sql, target.shadow, target.projections, page);
      await checkpoint(next, done, tx);
    }).catch(async (error: unknown) => {
      throw await pageFailure(target.sql, target.shadow, target.projections, page, error);
    });
    cursor = next;
    processed = done;
  }
}

const ROLLBACK = Symbol('rollback');

/**
 * The failure of a page whose fold threw, named by the signal it threw on:
 * once the page's transaction has rolled back, the page is refolded one
 * signal at a time in a transaction that is rolled back too.
 */
export async function pageFailure(sql: Sql, shadow: Tenant, projections: readonly Projection[], page: PagedSignal[], error: unknown): Promise<unknown> {
  if (!(error instanceof FoldFailure)) return error;
  let culprit: PagedSignal | undefined;
  await withTransaction(sql, undefined, async (tx) => {
    for (const signal of page) {
      try {
        await foldPage(tx.sql, shadow, projections, [signal]);
      } catch {
        culprit = signal;
        break;
      }
    }
    throw ROLLBACK;
  }).catch(() => {});
  return new ReplayStepError('reducer_failed', `a reducer failed: ${error.reason}`.slice(0, 2000), culprit ? { position: culprit.position, signal_id: culprit.id } : {});
}
