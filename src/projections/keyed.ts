/**
 * A projection of rows keyed by an id carried in each signal: the pure
 * `evolve(row, signal)` decides, this module does the I/O. A batch of
 * signals costs two statements — read the touched rows, write them back —
 * whether it holds one signal (live) or a thousand (rebuild).
 */
import type { Queryable } from '../db/client.ts';
import type { SignalRow } from '../signals/model.ts';
import type { TenantRef } from '../tenancy/tenant-migrations.ts';
import type { Projection } from './registry.ts';

export interface KeyedProjectionSpec<Row extends { id: string }> {
  name: string;
  table: string;
  /** Every column of the table, so the upsert writes whole rows. */
  columns: readonly (keyof Row & string)[];
  handles(type: string): boolean;
  /** The row a signal is about, or null when it is about none. */
  keyOf(signal: SignalRow): string | null;
  /** Pure: the row after `signal`, given the row before it (null when absent). */
  evolve(row: Row | null, signal: SignalRow): Row | null;
  /**
   * True for a signal that only ever creates its row: `evolve(row, signal)`
   * returns `row` unchanged whenever it exists. A batch of only such signals
   * is written without reading first (insert, or nothing when present).
   */
  creates?(signal: SignalRow): boolean;
}

export function keyedProjection<Row extends { id: string }>(spec: KeyedProjectionSpec<Row>): Projection {
  const updates = spec.columns
    .filter((column) => column !== 'id')
    .map((column) => `${column} = excluded.${column}`)
    .join(', ');
  return {
    name: spec.name,
    table: spec.table,
    handles: spec.handles,
    async apply(db, tenant, signals) {
      const table = `${tenant.schema}.${spec.table}`;
      const keys = [...new Set(signals.map(spec.keyOf).filter((key): key is string => key !== null))];
      if (keys.length === 0) return;
      if (spec.creates && keys.length === signals.length && signals.every(spec.creates)) {
        const rows = signals.map((signal) => spec.evolve(null, signal)).filter((row): row is Row => row !== null);
        await db`
          insert into ${db(table)}
          select * from jsonb_populate_recordset(null::${db(table)}, ${JSON.stringify(rows)}::text::jsonb)
          on conflict (id) do nothing`;
        return;
      }
      // FOR UPDATE: two transactions folding into one row take turns, each
      // starting from the other's committed result.
      const current = await db<{ row: Row }[]>`
        select to_jsonb(t) as row from ${db(table)} t where id = any(${keys}::text[]) order by id for update`;
      const state = new Map<string, Row | null>(current.map(({ row }) => [row.id, row]));
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
        await db`
          insert into ${db(table)}
          select * from jsonb_populate_recordset(null::${db(table)}, ${JSON.stringify(rows)}::text::jsonb)
          on conflict (id) do update set ${db.unsafe(updates)}`;
      }
      if (removed.length > 0) await db`delete from ${db(table)} where id = any(${removed}::text[])`;
    },
  };
}
