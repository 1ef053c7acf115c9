/**
 * Explicit transactions. A verb that writes takes an optional `tx`; when given,
 * its writes join the caller's transaction, otherwise it opens its own.
 * `afterCommit` hooks run once the outermost transaction has committed (never
 * on rollback), which is where the log's wake-up belongs.
 */
import type postgres from 'postgres';
import type { Sql } from './client.ts';

export interface Tx {
  sql: postgres.TransactionSql;
  afterCommit(hook: () => void): void;
}

export async function withTransaction<T>(sql: Sql, tx: Tx | undefined, fn: (tx: Tx) => Promise<T>): Promise<T> {
  if (tx) return fn(tx);
  const hooks: Array<() => void> = [];
  const result = await sql.begin(async (transactionSql) =>
    fn({ sql: transactionSql, afterCommit: (hook) => hooks.push(hook) }),
  );
  for (const hook of hooks) hook();
  return result as T;
}

/** Quotes an identifier that was already checked against a strict pattern. */
export function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`refusing to quote identifier ${JSON.stringify(name)}`);
  return `"${name}"`;
}
