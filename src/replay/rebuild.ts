/**
 * The `rebuild` mode: projections (all, or the named ones) refolded from the
 * log into shadow tables, page by page in position order — each page and its
 * checkpoint one transaction, so a run killed anywhere resumes exactly —
 * until caught up with live writes; then one transaction locks the live
 * tables against writers (readers go on), folds the last signals, reports
 * checksums and drift, and swaps the shadow tables in with the completion.
 * Until that commits, reads are served from the old tables; a reducer that
 * throws fails the replay and leaves them untouched.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DomainError } from '../core/errors.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { withTransaction } from '../db/transaction.ts';
import type { Projection, ProjectionRegistry } from '../projections/registry.ts';
import { checksumProjections, type Checksums } from '../projections/rebuild.ts';
import { projectionDrift, type Drift } from './drift.ts';
import type { ReplayMode, ReplayRun } from './modes.ts';
import type { ReplayRequest } from './model.ts';
import { countLog, createShadow, cursorAfter, dropShadow, foldCheckpointed, foldPage, LOG_START, pageFailure, readLogPage, shadowSchemaOf, type Cursor, type PageBounds, type PagedSignal } from './shadow.ts';

export interface RebuildCheckpoint {
  cursor: Cursor;
}

export interface RebuildReport {
  projections: string[];
  signals: number;
  checksums_before: Checksums;
  checksums_after: Checksums;
  drift: Record<string, Drift>;
  [key: string]: unknown;
}

export interface ProjectionModeDeps {
  sql: Sql;
  projections: ProjectionRegistry;
  /** Signals per page (and per checkpoint). */
  pageSize: number;
}

/** The named projections in registry order (the order live writes lock them in), all when none are named. */
export function chooseProjections(registry: ProjectionRegistry, names: readonly string[] | undefined): Projection[] {
  const known = registry.projections.map((projection) => projection.name);
  const unknown = (names ?? []).filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    throw new DomainError('validation_failed', `unknown projection ${unknown.join(', ')}`, [{ path: 'projections', message: `one of ${known.join(', ')}` }]);
  }
  return registry.projections.filter((projection) => !names || names.includes(projection.name));
}

/**
 * The first step of a run that folds into shadow tables: counts what it will
 * fold and creates the tables, recording the starting checkpoint with them.
 */
export async function beginShadow<Checkpoint>(
  sql: Sql,
  run: ReplayRun<Checkpoint>,
  { schema, projections, checkpoint, bounds }: { schema: string; projections: readonly Projection[]; checkpoint: Checkpoint; bounds: PageBounds },
): Promise<number> {
  const total = await countLog(sql, run.tenant, LOG_START, bounds);
  await withTransaction(sql, undefined, async (tx) => {
    await createShadow(tx.sql, run.tenant, schema, projections);
    await run.progress({ processed: 0, total, checkpoint }, tx);
  });
  return total;
}

function refuseSelection(request: ReplayRequest, allowed: readonly string[]): void {
  const given = Object.keys(request.selection).filter((key) => !allowed.includes(key));
  if (given.length > 0) throw new DomainError('validation_failed', `${request.mode} takes no selection ${given.join(', ')}`, [{ path: 'selection', message: 'a rebuild folds the whole log' }]);
  if (request.handlers) throw new DomainError('validation_failed', `${request.mode} runs no handlers`, [{ path: 'handlers', message: 'only redeliver takes handlers' }]);
}
export { refuseSelection };

/** Index names of a table by what they index, so the swapped-in copy keeps the names migrations know. */
async function indexNames(db: Queryable, schema: string, table: string): Promise<Map<string, string>> {
  const rows = await db<{ name: string; shape: string }[]>`
    select indexname as name, regexp_replace(indexdef, '^CREATE (UNIQUE )?INDEX \\S+ ON \\S+', 'CREATE \\1INDEX ON') as shape
      from pg_indexes where schemaname = ${schema} and tablename = ${table}`;
  return new Map(rows.map((row) => [row.shape, row.name]));
}

/** PostgreSQL's SQLSTATE for a transaction it aborted to break a deadlock. */
const DEADLOCK_DETECTED = '40P01';
/** Swaps tried before the rebuild fails: each deadlock needs a live transaction racing this one's lock upgrade. */
const SWAP_ATTEMPTS = 5;

async function swapIn(db: Queryable, tenant: Tenant, shadow: string, projection: Projection): Promise<void> {
  const live = await indexNames(db, tenant.schema, projection.table);
  const copies = await indexNames(db, shadow, projection.table);
  await db`drop table ${db(`${tenant.schema}.${projection.table}`)}`;
  for (const [shape, name] of copies) {
    const original = live.get(shape);
    if (original && original !== name) await db`alter index ${db(`${shadow}.${name}`)} rename to ${db(original)}`;
  }
  await db`alter table ${db(`${shadow}.${projection.table}`)} set schema ${db(tenant.schema)}`;
}

export function createRebuildMode(deps: ProjectionModeDeps): ReplayMode<RebuildCheckpoint> {
  return {
    name: 'rebuild',
    plan(request) {
      refuseSelection(request, []);
      return { scope: chooseProjections(deps.projections, request.projections).map((projection) => projection.name) };
    },
    async discard(replay) {
      await dropShadow(deps.sql, shadowSchemaOf(replay.id, 'rebuild'));
    },
    async run(run: ReplayRun<RebuildCheckpoint>) {
      const { tenant, replay } = run;
      const projections = chooseProjections(deps.projections, replay.request.projections);
      const schema = shadowSchemaOf(replay.id, 'rebuild');
      const shadow: Tenant = { ...tenant, schema };
      let cursor = run.checkpoint?.cursor ?? LOG_START;
      let processed = run.processed;
      let total = replay.total ?? 0;
      let page: PagedSignal[] = [];
      const failed = async (error: unknown) => pageFailure(deps.sql, shadow, projections, page, error);

      if (!run.checkpoint) total = await beginShadow(deps.sql, run, { schema, projections, checkpoint: { cursor }, bounds: { horizon: false } });
      // Below the horizon, one page and its checkpoint per transaction, until caught up.
      const target = { sql: deps.sql, tenant, shadow, projections, pageSize: deps.pageSize };
      ({ cursor, processed } = await foldCheckpointed(target, { cursor, processed }, {}, async (next, done, tx) => {
        total = Math.max(total, done);
        await run.progress({ processed: done, total, checkpoint: { cursor: next } }, tx);
      }));

      // The swap: writers of these projections wait on the table locks and
      // then write into the swapped-in tables; whatever committed before the
      // locks were granted is visible here, so no horizon is needed.
      let report: RebuildReport | undefined;
      const caughtUp = { cursor, processed };
      const swap = () => withTransaction(deps.sql, undefined, async (tx) => {
        ({ cursor, processed } = caughtUp);
        const db = tx.sql;
        for (const projection of projections) await db`lock table ${db(`${tenant.schema}.${projection.table}`)} in exclusive mode`;
        for (;;) {
          page = await readLogPage(db, tenant, cursor, deps.pageSize, { horizon: false });
          if (page.length === 0) break;
          await foldPage(db, shadow, projections, page);
          processed += page.length;
          cursor = cursorAfter(page);
        }
        const drift: Record<string, Drift> = {};
        for (const projection of projections) {
          drift[projection.name] = await projectionDrift(db, `${tenant.schema}.${projection.table}`, `${schema}.${projection.table}`);
        }
        report = {
          projections: projections.map((projection) => projection.name),
          signals: processed,
          checksums_before: await checksumProjections(db, tenant, projections),
          checksums_after: await checksumProjections(db, shadow, projections),
          drift,
        };
        for (const projection of projections) await swapIn(db, tenant, schema, projection);
        await dropShadow(db, schema);
        await run.complete(report, { tx, processed, total: processed });
      });
      // The swap upgrades its table locks to drop the live tables, so a live
      // transaction that read one of them and then writes to it can deadlock
      // with it; PostgreSQL then aborts one side. Nothing of an aborted swap
      // stays: it is taken again from the caught-up shadow.
      for (let attempt = 1; ; attempt++) {
        try {
          await swap();
          break;
        } catch (error) {
          if ((error as { code?: string }).code === DEADLOCK_DETECTED && attempt < SWAP_ATTEMPTS) {
            await sleep(50 * attempt);
            continue;
          }
          throw await failed(error);
        }
      }
      return report;
    },
  };
}
