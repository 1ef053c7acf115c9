/**
 * The postgres.js pool and the drizzle instance over it. Pools are small and
 * connections recycled: each connection caches catalog entries for every
 * tenant schema it touches (ARCHITECTURE.md, Scale).
 */
import postgres from 'postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import * as schema from './schema.ts';

export type Sql = postgres.Sql;
/** A connection that can run queries: the pool itself or a transaction. */
export type Queryable = postgres.Sql | postgres.TransactionSql;

export interface DatabaseOptions {
  max?: number;
  /** Application name shown in pg_stat_activity. */
  applicationName?: string;
}

export function createSql(url: string, options: DatabaseOptions = {}): Sql {
  return postgres(url, {
    max: options.max ?? 10,
    // Recycle connections so per-connection catalog caches stay bounded.
    max_lifetime: 60 * 30,
    idle_timeout: 60,
    connect_timeout: 10,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? 'signalbus' },
  });
}

export function createDrizzle(sql: Sql) {
  return drizzle(sql, { schema });
}
