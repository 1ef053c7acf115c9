/**
 * Enqueueing graphile-worker jobs by SQL inside the caller's transaction, so a
 * job exists exactly when the writes that called for it commit. Many jobs go
 * in one `add_jobs` call: one statement however many jobs.
 */
import type { TaskName, TaskPayloads } from '../core/jobs.ts';
import type { Queryable } from './client.ts';
import type { Tx } from './transaction.ts';

/** A job to enqueue: a task name and that task's payload. */
export type JobSpec = { [K in TaskName]: JobSpecOf<K> }[TaskName];

interface JobSpecOf<K extends TaskName> {
  /** Task name, snake_case. */
  identifier: K;
  payload: TaskPayloads[K];
  /** Jobs sharing a queue run one at a time, in order. */
  queue_name?: string | null;
  run_at?: string | null;
  max_attempts?: number | null;
  /** Collapses pending duplicates only; real idempotency lives in our own unique keys. */
  job_key?: string | null;
  priority?: number | null;
}

const addJobsStatement = (db: Queryable, specs: readonly { identifier: string; payload: unknown }[]) => db`
  select 1 from graphile_worker.add_jobs(array(
    select json_populate_record(null::graphile_worker.job_spec, spec)
      from json_array_elements(${JSON.stringify(specs)}::text::json) as spec))`;

export async function addJobs(db: Queryable, specs: JobSpec[]): Promise<void> {
  if (specs.length > 0) await addJobsStatement(db, specs);
}

/** Enqueues with `tx`'s other deferred writes: sent now, awaited with its COMMIT. */
export function deferJobs(tx: Tx, specs: JobSpec[]): void {
  if (specs.length > 0) tx.defer(addJobsStatement(tx.sql, specs));
}

/**
 * Enqueues jobs whose payloads the task list does not type: a benchmark's own
 * task, or a test's deliberately malformed payload. Signalbus's code uses `addJobs`.
 */
export async function addUncheckedJobs(db: Queryable, specs: { identifier: string; payload: unknown }[]): Promise<void> {
  if (specs.length > 0) await addJobsStatement(db, specs);
}
