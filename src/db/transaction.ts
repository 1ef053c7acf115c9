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

/**
 * BEGIN goes out in the same socket write as the transaction's first
 * statement instead of costing a round trip of its own (postgres.js's
 * `begin` awaits it): on a reserved connection, unawaited, it is pipelined.
 */
export async function withTransaction<T>(sql: Sql, tx: Tx | undefined, fn: (tx: Tx) => Promise<T>): Promise<T> {
  if (tx) return fn(tx);
  const hooks: Array<() => void> = [];
  const connection = await sql.reserve();
  let result: T;
  try {
    const begun = connection`begin`.execute();
    // Its failure also fails every statement after it; it is reported through them or below.
    begun.catch(() => {});
    try {
      result = await fn({ sql: connection as unknown as postgres.TransactionSql, afterCommit: (hook) => hooks.push(hook) });
      await begun;
    } catch (error) {
      await connection`rollback`.catch(() => {});
      throw error;
    }
    // COMMIT of a transaction a failed statement aborted answers ROLLBACK, not an error.
    const committed = await connection`commit`;
    if (committed.command !== 'COMMIT') throw new Error('the transaction was rolled back: a statement in it failed');
  } finally {
    connection.release();
  }
  for (const hook of hooks) hook();
  return result;
}

/** Quotes an identifier that was already checked against a strict pattern. */
export function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`refusing to quote identifier ${JSON.stringify(name)}`);
  return `"${name}"`;
}
