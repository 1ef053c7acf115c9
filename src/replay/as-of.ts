/**
 * The `as_of` mode: the org's projections as they stood at a position (or a
 * time), folded from the log into a schema of their own and kept read-only
 * for a TTL (default one hour), then dropped — by a job at `expires_at`, or
 * on demand by cancelling the finished replay. Reads reach it through the
 * normal GET routes with `?as_of=<replay id>`.
 */
import { DomainError, notFound } from '../core/errors.ts';
import { DROP_REPLAY_STATE } from '../core/jobs.ts';
import type { Tenant } from '../core/tenant.ts';
import { addJobs } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import { checksumProjections } from '../projections/rebuild.ts';
import { decodeCursor, encodeCursor } from '../signals/model.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import { nowOf, type ReplayDeps } from './deps.ts';
import type { ReplayMode, ReplayRun } from './modes.ts';
import { beginShadow, chooseProjections, refuseSelection, type ProjectionModeDeps } from './rebuild.ts';
import { dropShadow, foldCheckpointed, freezeShadow, LOG_START, shadowSchemaOf, type Cursor } from './shadow.ts';
import { getReplay } from './store.ts';

export const AS_OF_DEFAULT_TTL_S = 3600;

export interface AsOfCheckpoint {
  cursor: Cursor;
  /** Fixed on the first run, so a resumed one folds to the same point. */
  until: Cursor | null;
  recordedBy: string | null;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createAsOfMode(deps: ProjectionModeDeps & Pick<ReplayDeps, 'now'>): ReplayMode<AsOfCheckpoint> {
  /** Waits (a while) until every transaction below `until` has ended, so none of its signals is missed. */
  const horizonPassed = async (until: Cursor) => {
    for (let tries = 0; tries < 300; tries++) {
      const [row] = await deps.sql<{ passed: boolean }[]>`select pg_snapshot_xmin(pg_current_snapshot()) > ${until.txId}::xid8 as passed`;
      if (row!.passed) return;
      await sleep(100);
    }
  };
  return {
    name: 'as_of',
    plan(request) {
      refuseSelection(request, ['until', 'before']);
      if (request.selection.until && request.selection.before) {
        throw new DomainError('validation_failed', 'as_of takes a position or a time, not both', [{ path: 'selection', message: 'give until or before' }]);
      }
      if (request.selection.until) decodeCursor(request.selection.until, 'selection.until');
      // Each as-of state has its own schema: only the same projection at the same point would be duplicate work.
      const point = request.selection.until ?? request.selection.before ?? 'now';
      return { scope: chooseProjections(deps.projections, request.projections).map((projection) => `${projection.name}@${point}`) };
    },
    async discard(replay) {
      await dropShadow(deps.sql, shadowSchemaOf(replay.id, 'as_of'));
    },
    async run(run: ReplayRun<AsOfCheckpoint>) {
      const { tenant, replay } = run;
      const projections = chooseProjections(deps.projections, replay.request.projections);
      const schema = shadowSchemaOf(replay.id, 'as_of');
      const shadow: Tenant = { ...tenant, schema };
      const { selection } = replay.request;
      let checkpoint = run.checkpoint;
      let total = replay.total ?? 0;
      if (!checkpoint) {
        // No point given: as the log stands now, every signal below the horizon.
        const [now] = await deps.sql<{ xmin: string }[]>`select (pg_snapshot_xmin(pg_current_snapshot())::text::numeric - 1)::text as xmin`;
        const until = selection.until ? decodeCursor(selection.until, 'selection.until') : selection.before ? null : { txId: now!.xmin, seq: '9223372036854775807' };
        const start: AsOfCheckpoint = { cursor: LOG_START, until, recordedBy: selection.before ?? null };
        total = await beginShadow(deps.sql, run, { schema, projections, checkpoint: start, bounds: { ...start, horizon: false } });
        checkpoint = start;
      }
      const { until, recordedBy } = checkpoint;
      if (until) await horizonPassed(until);
      const target = { sql: deps.sql, tenant, shadow, projections, pageSize: deps.pageSize };
      const { cursor, processed } = await foldCheckpointed(target, { cursor: checkpoint.cursor, processed: run.processed }, { until, recordedBy }, (next, done, tx) =>
        run.progress({ processed: done, total: Math.max(total, done), checkpoint: { cursor: next, until, recordedBy } }, tx));
      const ttl = replay.request.ttl_s ?? AS_OF_DEFAULT_TTL_S;
      const expiresAt = new Date(Date.parse(nowOf(deps)) + ttl * 1000).toISOString();
      await withTransaction(deps.sql, undefined, async (tx) => {
        for (const projection of projections) await projection.materializeReads?.(tx.sql, tenant, shadow);
        const report = {
          projections: projections.map((projection) => projection.name),
          signals: processed,
          as_of: selection.until ? { position: selection.until } : recordedBy ? { time: recordedBy } : { position: processed > 0 ? encodeCursor(cursor) : null },
          last_position: processed > 0 ? encodeCursor(cursor) : null,
          checksums: await checksumProjections(tx.sql, shadow, projections),
        };
        await freezeShadow(tx.sql, schema);
        await addJobs(tx.sql, [{ identifier: DROP_REPLAY_STATE, payload: { org_id: tenant.id, replay_id: replay.id }, run_at: expiresAt, job_key: `replay:${replay.id}:drop` }]);
        await run.complete(report, { tx, processed, total: processed, expiresAt });
      });
    },
  };
}

/** Drops a finished as-of replay's state (TTL or on demand), once: a `replay.dropped` signal records it. */
export async function dropReplayState(deps: Pick<ReplayDeps, 'sql' | 'emit' | 'now'>, { ctx, input }: VerbCall<{ id: string }>): Promise<void> {
  await withTransaction(deps.sql, ctx.tx, async (tx) => {
    const replay = await getReplay(tx.sql, ctx.tenant, input.id, { lock: true });
    if (replay.mode !== 'as_of' || replay.dropped_at) return;
    await dropShadow(tx.sql, shadowSchemaOf(replay.id, 'as_of'));
    await emitSystem(deps.emit, ctx, tx, {
      type: 'replay.dropped',
      subject: `replay:${replay.id}`,
      payload: { replay_id: replay.id, at: nowOf(deps) },
      dedupe_key: `replay:${replay.id}:dropped`,
    });
  });
}

/**
 * The tenant a GET with `?as_of=<replay id>` reads: the org with its schema
 * replaced by the replay's materialized one. Only a succeeded as-of replay
 * of this org, before it expires or is dropped.
 */
export async function asOfTenant(deps: Pick<ReplayDeps, 'sql' | 'now'>, { ctx, input }: VerbCall<{ id: string }>): Promise<Tenant> {
  const replay = await getReplay(deps.sql, ctx.tenant, input.id).catch(() => {
    throw notFound('as-of replay');
  });
  if (replay.mode !== 'as_of') throw new DomainError('validation_failed', `replay ${replay.id} is a ${replay.mode}, not an as_of`, [{ path: 'as_of', message: 'an as_of replay id' }]);
  if (replay.status !== 'succeeded') throw new DomainError('conflict', `as-of replay ${replay.id} is ${replay.status}, not readable yet`);
  if (replay.dropped_at || (replay.expires_at && Date.parse(replay.expires_at) <= Date.parse(nowOf(deps)))) throw notFound('as-of replay (expired)');
  return { ...ctx.tenant, schema: shadowSchemaOf(replay.id, 'as_of') };
}
