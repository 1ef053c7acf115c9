/**
 * Worker liveness. graphile-worker leaves a killed worker's jobs locked for
 * hours (its own recovery waits four hours). Each worker process writes a
 * heartbeat for its workers; every process sweeps: a worker whose jobs are
 * locked but whose heartbeat is stale (or never came) is presumed dead and
 * its jobs and queues are force-unlocked, to run again elsewhere. Jobs are
 * idempotent by our own keys, so running one twice after a false alarm costs
 * time, not correctness.
 */
import { makeWorkerUtils, type WorkerUtils } from 'graphile-worker';
import type { Logger } from 'pino';
import type { Pool } from 'pg';
import { EXECUTE_DIRECTIVE } from '../core/jobs.ts';
import type { Sql } from '../db/client.ts';

export interface LivenessOptions {
  sql: Sql;
  /** graphile-worker's pool, which the caller owns and ends. */
  pgPool: Pool;
  logger: Logger;
  processId: string;
  workerIds: () => string[];
  heartbeatMs: number;
  /** A heartbeat older than this marks its worker dead. */
  staleAfterMs: number;
}

export interface Liveness {
  stop(): Promise<void>;
  /** One sweep now; returns the worker ids unlocked. */
  sweep(): Promise<string[]>;
}

export async function startLiveness(options: LivenessOptions): Promise<Liveness> {
  const { sql, logger } = options;
  let utils: WorkerUtils | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const beat = async () => {
    const ids = options.workerIds();
    if (ids.length === 0) return;
    await sql`
      insert into public.worker_heartbeats (worker_id, process, last_seen)
      select id, ${options.processId}, now() from unnest(${ids}::text[]) as id
      on conflict (worker_id) do update set last_seen = now()`;
  };

  const sweep = async (): Promise<string[]> => {
    const stale = `${options.staleAfterMs} milliseconds`;
    const dead = await sql<{ worker_id: string }[]>`
      select distinct locked_by as worker_id from graphile_worker._private_jobs
       where locked_by is not null and locked_at < now() - ${stale}::interval
         and not exists (select 1 from public.worker_heartbeats h
                          where h.worker_id = locked_by and h.last_seen > now() - ${stale}::interval)`;
    const ids = dead.map((row) => row.worker_id);
    if (ids.length > 0) {
      // graphile-worker counts an attempt when a job is fetched, and the
      // directive runner fetches a batch ahead: a process that keeps dying
      // would spend the attempts of every job it held until they were dead,
      // their directives left approved. Those attempts are given back; the
      // job is marked released, so its directive's next attempt is claimed
      // and counted against the directive's own limit (directives/execute.ts).
      await sql`
        update graphile_worker._private_jobs j
           set attempts = greatest(j.attempts - 1, 0),
               payload = (j.payload::jsonb || jsonb_build_object('released', coalesce((j.payload::jsonb ->> 'released')::int, 0) + 1))::json
          from graphile_worker._private_tasks t
         where t.id = j.task_id and t.identifier = ${EXECUTE_DIRECTIVE} and j.locked_by = any(${ids}::text[])`;
      utils ??= await makeWorkerUtils({ pgPool: options.pgPool });
      await utils.forceUnlockWorkers(ids);
      logger.warn({ workers: ids }, 'released the jobs of workers whose heartbeat stopped');
    }
    await sql`delete from public.worker_heartbeats where last_seen < now() - interval '1 day'`;
    return ids;
  };

  let inFlight: Promise<void> | undefined;
  const tick = async () => {
    try {
      await beat();
      await sweep();
    } catch (error) {
      logger.warn({ err: error }, 'worker heartbeat or sweep failed');
    }
    if (!stopped) timer = setTimeout(() => void (inFlight = tick()), options.heartbeatMs);
  };
  await (inFlight = tick());

  return {
    sweep,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      // A sweep under way may be opening its utils pool: wait, so the release below sees it.
      await inFlight;
      const ids = options.workerIds();
      if (ids.length > 0) await sql`delete from public.worker_heartbeats where worker_id = any(${ids}::text[])`.catch(() => {});
      await utils?.release();
    },
  };
}
