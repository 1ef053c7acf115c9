/**
 * Group commit for appends that need no transaction of their own (no caller
 * `tx`, no inline projection). Emits arriving in the same turn of the event
 * loop, or while earlier appends of the same tenant are in flight, go out
 * together as one INSERT — one round trip, one commit, one WAL flush for all
 * of them. An idle tenant's emit goes out at the end of the current turn, so
 * batching adds no measurable latency; under load it trades a little of it
 * for far fewer commits. Small appends wait while two statements of their
 * tenant are in flight, so single emits under load share statements; a
 * statement's worth of rows waiting (big batch requests) goes out beside up
 * to three others, so the database inserts them on several backends at once.
 *
 * Each submission (one emit, or one batch request) is a unit: merging keeps
 * every submission atomic, and if a merged statement fails, each submission is
 * retried alone so one bad submission cannot fail its neighbours. Items that
 * share a dedupe key across submissions resolve as if they had arrived one
 * after another (`appendSignals`).
 *
 * A submission may bring rows of another table that must commit with its
 * signals (`SideRows`, e.g. a webhook delivery's log row): a statement
 * carrying any is then a transaction, its side rows written behind the
 * append, one statement per kind for the whole group, sharing its commit.
 */
import type postgres from 'postgres';
import type { Queryable, Sql } from '../db/client.ts';
import { withTransaction, type Tx } from '../db/transaction.ts';
import type { Tenant } from '../core/tenant.ts';
import { appendSignals, type Outcome } from './append.ts';
import type { Prepared } from './prepare.ts';

/** Rows another table keeps of a submission, written in its signals' transaction. */
export interface SideRows {
  /** The rows for the submission's outcomes (none, if it keeps none of them). */
  rows(outcomes: Outcome[]): unknown[];
  /** Writes rows of this kind: side rows sharing `write` share one statement. */
  write(db: Queryable, rows: unknown[]): postgres.PendingQuery<postgres.Row[]>;
}

/** Hands each kind's rows of `submissions` to `tx`, one deferred statement per kind. */
export function deferSideRows(tx: Tx, submissions: Array<{ side?: SideRows | undefined; outcomes: Outcome[] }>): void {
  const byKind = new Map<SideRows['write'], unknown[]>();
  for (const { side, outcomes } of submissions) {
    if (!side) continue;
    const rows = side.rows(outcomes);
    if (rows.length === 0) continue;
    const kind = byKind.get(side.write);
    if (kind) kind.push(...rows);
    else byKind.set(side.write, [...rows]);
  }
  for (const [write, rows] of byKind) tx.defer(write(tx.sql, rows));
}

export interface AppendBatcher {
  append(tenant: Tenant, items: Prepared[], side?: SideRows): Promise<Outcome[]>;
}

interface Submission {
  items: Prepared[];
  side?: SideRows | undefined;
  resolve(outcomes: Outcome[]): void;
  reject(error: unknown): void;
}

interface TenantQueue {
  tenant: Tenant;
  waiting: Submission[];
  waitingRows: number;
  inFlight: number;
  flushScheduled: boolean;
}

export function createAppendBatcher(
  deps: { sql: Sql; onCommitted(tenantId: string): void },
  {
    maxInFlightPerTenant = 2,
    maxInFlightForFullStatements = 4,
    fullStatementRows = 500,
    maxRowsPerStatement = 1_000,
  }: { maxInFlightPerTenant?: number; maxInFlightForFullStatements?: number; fullStatementRows?: number; maxRowsPerStatement?: number } = {},
): AppendBatcher {
  const queues = new Map<string, TenantQueue>();

  const write = async (tenant: Tenant, submissions: Submission[]) => {
    const items = submissions.flatMap((submission) => submission.items);
    const split = (outcomes: Outcome[]) => {
      let offset = 0;
      return submissions.map((submission) => {
        const mine = outcomes.slice(offset, offset + submission.items.length);
        offset += submission.items.length;
        return mine;
      });
    };
    const { outcomes, inserted } = submissions.some((submission) => submission.side)
      ? await withTransaction(deps.sql, undefined, async (tx) => {
          const appended = await appendSignals(tx.sql, tenant, items);
          const each = split(appended.outcomes);
          deferSideRows(tx, submissions.map((submission, index) => ({ side: submission.side, outcomes: each[index]! })));
          return appended;
        })
      : await appendSignals(deps.sql, tenant, items);
    if (inserted.length > 0) deps.onCommitted(tenant.id);
    split(outcomes).forEach((mine, index) => submissions[index]!.resolve(mine));
  };

  const mayStart = (queue: TenantQueue) =>
    queue.waiting.length > 0 &&
    queue.inFlight < (queue.waitingRows >= fullStatementRows ? maxInFlightForFullStatements : maxInFlightPerTenant);

  const flush = (queue: TenantQueue) => {
    while (mayStart(queue)) start(queue);
  };

  const start = (queue: TenantQueue) => {
    const batch: Submission[] = [];
    let rows = 0;
    while (queue.waiting.length > 0) {
      const next = queue.waiting[0]!;
      if (batch.length > 0 && rows + next.items.length > maxRowsPerStatement) break;
      batch.push(queue.waiting.shift()!);
      rows += next.items.length;
    }
    queue.waitingRows -= rows;
    queue.inFlight++;
    void (async () => {
      try {
        await write(queue.tenant, batch);
      } catch (error) {
        if (batch.length === 1) batch[0]!.reject(error);
        // Alone, each submission succeeds or fails on its own merits.
        else
          await Promise.all(
            batch.map((submission) => write(queue.tenant, [submission]).catch((alone) => submission.reject(alone))),
          );
      } finally {
        queue.inFlight--;
        if (queue.waiting.length > 0) flush(queue);
        else if (queue.inFlight === 0) queues.delete(queue.tenant.id);
      }
    })();
  };

  return {
    append(tenant, items, side) {
      return new Promise<Outcome[]>((resolve, reject) => {
        let queue = queues.get(tenant.id);
        if (!queue) {
          queue = { tenant, waiting: [], waitingRows: 0, inFlight: 0, flushScheduled: false };
          queues.set(tenant.id, queue);
        }
        queue.waiting.push({ items, side, resolve, reject });
        queue.waitingRows += items.length;
        // Flush after this turn's I/O: requests read in the same turn of the
        // event loop go out as one statement, at no cost in latency.
        if (!queue.flushScheduled) {
          queue.flushScheduled = true;
          const scheduled = queue;
          setImmediate(() => {
            scheduled.flushScheduled = false;
            flush(scheduled);
          });
        }
      });
    },
  };
}
