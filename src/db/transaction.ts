/**
 * Explicit transactions. A verb that writes takes an optional `tx`; when given,
 * its writes join the caller's transaction, otherwise it opens its own.
 * `afterCommit` hooks run once the outermost transaction has committed (never
 * on rollback), which is where the log's wake-up belongs.
 */
import type postgres from 'postgres';
import type { Queryable, Sql } from './client.ts';

export interface Tx {
  sql: postgres.TransactionSql;
  afterCommit(hook: () => void): void;
  /**
   * Sends a write whose result nobody reads and lets the transaction go on
   * without waiting for it: later statements queue behind it on the
   * connection, COMMIT goes out without a round trip of its own, and its
   * failure fails the transaction, reported as the error.
   */
  defer(write: postgres.PendingQuery<postgres.Row[]>): void;
}

/**
 * Errors after which the session is gone, and its transaction with it:
 * postgres.js's own, the socket's, and PostgreSQL's connection-exception
 * (08) and operator-intervention (57P) classes.
 */
export function lostSession(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return /^CONNECTION_|^ECONN|^EPIPE$|^08|^57P0[1-4]$/.test(code);
}

/**
 * BEGIN goes out in the same socket write as the transaction's first
 * statement instead of costing a round trip of its own (postgres.js's
 * `begin` awaits it): on a reserved connection, unawaited, it is pipelined.
 *
 * When the session is lost mid-transaction, PostgreSQL has already rolled it
 * back, and nothing more is written to that connection nor is it handed back:
 * postgres.js 3.4 throws an uncatchable TypeError for a write to a closed
 * socket (porsager/postgres#1208), and retires the connection itself.
 */
export async function withTransaction<T>(sql: Sql, tx: Tx | undefined, fn: (tx: Tx) => Promise<T>): Promise<T> {
  if (tx) return fn(tx);
  const hooks: Array<() => void> = [];
  const deferred: Promise<unknown>[] = [];
  const connection = await sql.reserve();
  let sessionLost = false;
  let result: T;
  /** A deferred write's failure is the cause of whatever failed after it in the transaction. */
  const firstCause = async (error: unknown) => {
    for (const settled of await Promise.allSettled(deferred)) if (settled.status === 'rejected') return settled.reason as unknown;
    return error;
  };
  try {
    const begun = connection`begin`.execute();
    // Its failure also fails every statement after it; it is reported through them or below.
    begun.catch(() => {});
    let commit: Promise<postgres.RowList<postgres.Row[]>>;
    try {
      result = await fn({
        sql: connection as unknown as postgres.TransactionSql,
        afterCommit: (hook) => hooks.push(hook),
        defer(write) {
          const sent = write.execute();
          // Awaited below; a failure before then is reported there.
          sent.catch(() => {});
          deferred.push(sent);
        },
      });
      // Pipelined behind the deferred writes: they and COMMIT share a round trip.
      commit = connection`commit`.execute();
      commit.catch(() => {});
      await begun;
      await Promise.all(deferred);
    } catch (error) {
      const cause = await firstCause(error);
      if (!lostSession(cause)) await connection`rollback`.catch(() => {});
      throw cause;
    }
    // COMMIT of a transaction a failed statement aborted answers ROLLBACK, not an error.
    const committed = await commit;
    if (committed.command !== 'COMMIT') throw new Error('the transaction was rolled back: a statement in it failed');
  } catch (error) {
    sessionLost = lostSession(error);
    throw error;
  } finally {
    if (!sessionLost) connection.release();
  }
  for (const hook of hooks) hook();
  return result;
}

/** Quotes an identifier that was already checked against a strict pattern. */
export function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`refusing to quote identifier ${JSON.stringify(name)}`);
  return `"${name}"`;
}

/** Where a read runs: in the caller's transaction when it has one, so it sees that transaction's writes. */
export function readerOf(sql: Sql, tx: Tx | undefined): Queryable {
  return tx ? tx.sql : sql;
}
