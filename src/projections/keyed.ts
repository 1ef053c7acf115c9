/**
 * A projection of rows keyed by an id carried in each signal: the pure
 * `evolve(row, signal)` decides, this module does the I/O. A batch of
 * signals costs two statements — read the touched rows, write them back —
 * whether it holds one signal (live) or a thousand (rebuild).
 */
import type postgres from 'postgres';
import type { Queryable } from '../db/client.ts';
import type { Tx } from '../db/transaction.ts';
import type { SignalFacts, SignalRow } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Prefetched, Projection } from './registry.ts';

export interface KeyedProjectionSpec<Row extends { id: string }> {
  name: string;
  table: string;
  /** Every column of the table, so the upsert writes whole rows. */
  columns: readonly (keyof Row & string)[];
  handles(type: string): boolean;
  /** The row a signal is about, or null when it is about none: known before it is appended. */
  keyOf(signal: SignalFacts): string | null;
  /** Pure: the row after `signal`, given the row before it (null when absent). */
  evolve(row: Row | null, signal: SignalRow): Row | null;
  /**
   * True for a signal that only ever creates its row: `evolve(row, signal)`
   * returns `row` unchanged whenever it exists. A batch of only such signals
   * is written without reading first (insert, or nothing when present).
   */
  creates?(signal: SignalFacts): boolean;
}

export function keyedProjection<Row extends { id: string }>(spec: KeyedProjectionSpec<Row>): Projection {
  const updates = spec.columns
    .filter((column) => column !== 'id')
    .map((column) => `${column} = excluded.${column}`)
    .join(', ');
  const keysOf = (signals: SignalFacts[]) => [...new Set(signals.map(spec.keyOf).filter((key): key is string => key !== null))];
  const onlyCreates = (signals: SignalFacts[], keys: string[]) => spec.creates !== undefined && keys.length === signals.length && signals.every(spec.creates);
  // FOR UPDATE: two transactions folding into one row take turns, each
  // starting from the other's committed result.
  const readRows = async (db: Queryable, table: string, keys: string[]) => {
    const current = await db<{ row: Row }[]>`
      select to_jsonb(t) as row from ${db(table)} t where id = any(${keys}::text[]) order by id for update`;
    return new Map<string, unknown>(current.map(({ row }) => [row.id, row]));
  };
  return {
    name: spec.name,
    table: spec.table,
    handles: spec.handles,
    prefetch(db, tenant, signals) {
      const keys = keysOf(signals);
      if (keys.length === 0 || onlyCreates(signals, keys)) return undefined;
      const rows = readRows(db, `${tenant.schema}.${spec.table}`, keys);
      // Awaited by apply; should the transaction fail before, its error is reported there.
      rows.catch(() => {});
      return { keys: new Set(keys), rows };
    },
    async apply(db, tenant, signals, prefetched?: Prefetched, defer?: Tx['defer']) {
      const table = `${tenant.schema}.${spec.table}`;
      const keys = keysOf(signals);
      if (keys.length === 0) return;
      const write = async (statement: postgres.PendingQuery<postgres.Row[]>) => (defer ? defer(statement) : void (await statement));
      if (onlyCreates(signals, keys)) {
        const rows = signals.map((signal) => spec.evolve(null, signal)).filter((row): row is Row => row !== null);
        await write(db`
          insert into ${db(table)}
          select * from jsonb_populate_recordset(null::${db(table)}, ${JSON.stringify(rows)}::text::jsonb)
          on conflict (id) do nothing`);
        return;
      }
      const covered = prefetched !== undefined && keys.every((key) => prefetched.keys.has(key));
      const state = (await (covered ? prefetched.rows : readRows(db, table, keys))) as Map<string, Row | null>;
      const touched = new Set<string>();
      for (const signal of signals) {
        const key = spec.keyOf(signal);
        if (key === null) continue;
        const before = state.get(key) ?? null;
        const after = spec.evolve(before, signal);
        if (after !== before) {
          state.set(key, after);
          touched.add(key);
        }
      }
      const rows = [...touched].map((key) => state.get(key)).filter((row): row is Row => row !== null && row !== undefined);
      const removed = [...touched].filter((key) => state.get(key) === null);
      if (rows.length > 0) {
        await write(db`
          insert into ${db(table)}
          select * from jsonb_populate_recordset(null::${db(table)}, ${JSON.stringify(rows)}::text::jsonb)
          on conflict (id) do update set ${db.unsafe(updates)}`);
      }
      if (removed.length > 0) await write(db`delete from ${db(table)} where id = any(${removed}::text[])`);
    },
  };
}
