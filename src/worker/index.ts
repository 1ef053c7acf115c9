/**
 * worker — the graphile-worker runner and its task list. Tasks parse their
 * payloads with zod on arrival; idempotency lives in our own unique keys,
 * not in job keys. Started by the cli (`worker`, `start`).
 */
export { createTaskList, startWorker, type WorkerDeps, type WorkerProcess } from './runner.ts';
