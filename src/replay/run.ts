/**
 * The replay job: runs a replay's mode, or resumes it from its last
 * checkpoint after a worker died, and records its lifecycle as signals
 * attributed to the requesting actor. A cancel is seen at the next
 * checkpoint; the mode's leftovers are discarded on cancel and on failure.
 */
import { lostSession, withTransaction, type Tx } from '../db/transaction.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import type { Tenant } from '../core/tenant.ts';
import type { ReplayError, ReplayReport } from './model.ts';
import { ReplayCancelledError, ReplayStepError, type CompleteOptions, type ReplayMode, type ReplayRun } from './modes.ts';
import { findReplay, getReplay } from './store.ts';
import type { ReplayDeps } from './deps.ts';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function failureOf(error: unknown): ReplayError {
  if (error instanceof ReplayStepError) return { code: error.code, message: error.message, position: error.at.position ?? null, signal_id: error.at.signal_id ?? null };
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'replay_failed', message: message.slice(0, 2000) };
}

export async function runReplay(deps: ReplayDeps, { tenant, replayId }: { tenant: Tenant; replayId: string }): Promise<void> {
  const replay = await findReplay(deps.sql, tenant, replayId);
  if (!replay || replay.status === 'succeeded') return;
  const mode = deps.modes.get(replay.mode);
  if (replay.status === 'failed' || replay.status === 'cancelled') {
    // A cancel or failure seen by a run that died before discarding.
    await mode?.discard?.(replay, tenant);
    return;
  }
  const ctx: VerbContext = { tenant, actor: replay.actor, source: `replay:${replay.id}` };
  const now = () => (deps.now ? deps.now() : new Date()).toISOString();
  const subject = `replay:${replay.id}`;

  /** Locks the replay's row in `tx`; throws when it was cancelled (or ended) meanwhile. */
  const stillRunning = async (tx: Tx) => {
    const row = await getReplay(tx.sql, tenant, replay.id, { lock: true });
    if (row.status !== 'running') throw new ReplayCancelledError(replay.id);
    return row;
  };
  const recordFailure = async (error: ReplayError) => {
    await withTransaction(deps.sql, undefined, async (tx) => {
      const row = await getReplay(tx.sql, tenant, replay.id, { lock: true });
      if (row.status !== 'running' && row.status !== 'queued') return;
      await emitSystem(deps.emit, ctx, tx, { type: 'replay.failed', subject, payload: { replay_id: replay.id, error, finished_at: now() }, dedupe_key: `${subject}:failed` });
    });
  };

  if (!mode) {
    await recordFailure({ code: 'unknown_mode', message: `mode ${replay.mode} is not available in this build` });
    return;
  }
  if (replay.status === 'queued') {
    const started = await withTransaction(deps.sql, undefined, async (tx) => {
      const row = await getReplay(tx.sql, tenant, replay.id, { lock: true });
      if (row.status !== 'queued') return row.status === 'running';
      await emitSystem(deps.emit, ctx, tx, { type: 'replay.started', subject, payload: { replay_id: replay.id, started_at: now() }, dedupe_key: `${subject}:started` });
      return true;
    });
    if (!started) {
      await mode.discard?.(replay, tenant);
      return;
    }
  }

  const rate = replay.request.rate_per_s;
  const runStarted = performance.now();
  let checkpoints = replay.checkpoints;
  let processed = replay.processed;
  let total = replay.total;
  let completed = false;
  const run: ReplayRun = {
    replay,
    tenant,
    ctx,
    checkpoint: replay.checkpoint ?? null,
    processed: replay.processed,
    async progress(update, tx) {
      await withTransaction(deps.sql, tx, async (inner) => {
        await stillRunning(inner);
        await emitSystem(deps.emit, ctx, inner, {
          type: 'replay.progress',
          subject,
          payload: { replay_id: replay.id, processed: update.processed, total: update.total, checkpoint: update.checkpoint, at: now() },
          dedupe_key: `${subject}:progress:${checkpoints + 1}`,
        });
      });
      checkpoints += 1;
      processed = update.processed;
      total = update.total;
      if (rate) {
        // Held to the request's rate over this run, so a replay cannot starve live traffic.
        const due = ((processed - replay.processed) / rate) * 1000 - (performance.now() - runStarted);
        if (due > 0) await sleep(due);
      }
    },
    async complete(report: ReplayReport, options: CompleteOptions = {}) {
      await withTransaction(deps.sql, options.tx, async (tx) => {
        await stillRunning(tx);
        await emitSystem(deps.emit, ctx, tx, {
          type: 'replay.completed',
          subject,
          payload: {
            replay_id: replay.id,
            processed: options.processed ?? processed,
            total: options.total !== undefined ? options.total : total ?? options.processed ?? processed,
            report,
            finished_at: now(),
            expires_at: options.expiresAt ?? null,
          },
          dedupe_key: `${subject}:completed`,
        });
        if (options.tx) options.tx.afterCommit(() => (completed = true));
      });
      if (!options.tx) completed = true;
    },
    async cancelled() {
      const row = await findReplay(deps.sql, tenant, replay.id);
      return row?.status !== 'running';
    },
  };

  try {
    const report = await (mode as ReplayMode).run(run);
    if (!completed) await run.complete(report ?? {});
  } catch (error) {
    // The session or the database went away: the job is retried and resumes from its checkpoint.
    if (lostSession(error)) throw error;
    if (!(error instanceof ReplayCancelledError)) await recordFailure(failureOf(error));
    await mode.discard?.((await findReplay(deps.sql, tenant, replay.id)) ?? replay, tenant);
  }
}
