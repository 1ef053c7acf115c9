/**
 * Every graphile-worker task signalbus enqueues: its name and its payload
 * schema, one name for a schema and its type. Enqueueing (`src/db/jobs.ts`)
 * and graphile-worker's task list (`src/worker`) are typed from here, so a
 * producer cannot send a payload its task would not read. Tasks still parse
 * on arrival: a stored job can predate the code.
 */
import { z } from 'zod';

export const HANDLE_SIGNAL = 'handle_signal';
export const EXECUTE_DIRECTIVE = 'execute_directive';
export const EXPIRE_DIRECTIVE = 'expire_directive';
export const RUN_REPLAY = 'run_replay';
export const DROP_REPLAY_STATE = 'drop_replay_state';
export const RUN_INSTALLATION = 'run_installation';

/** One attempt of one handler on one signal; the execution id is fixed when the job is first enqueued. */
export const HandleSignalPayload = z.object({
  org_id: z.string().min(1),
  handler: z.string().min(1),
  signal_id: z.string().min(1),
  execution_id: z.string().min(1),
  attempt: z.number().int().min(1).default(1),
  traceparent: z.string().nullish(),
});
export type HandleSignalPayload = z.infer<typeof HandleSignalPayload>;

export const ExecuteDirectivePayload = z.object({
  org_id: z.string().min(1),
  directive_id: z.string().min(1),
  traceparent: z.string().nullish(),
  /** The attempt a retry job makes first, for directives executed without claims. */
  attempt: z.number().int().positive().optional(),
  /** How often a sweep released this job from a worker that died holding it (src/worker/liveness.ts). */
  released: z.number().int().positive().optional(),
});
export type ExecuteDirectivePayload = z.infer<typeof ExecuteDirectivePayload>;

export const ExpireDirectivePayload = z.object({
  org_id: z.string().min(1),
  directive_id: z.string().min(1),
});
export type ExpireDirectivePayload = z.infer<typeof ExpireDirectivePayload>;

/** Runs (or resumes from its last checkpoint) one replay; `job_key` `replay:<id>`. */
export const RunReplayPayload = z.object({
  org_id: z.string().min(1),
  replay_id: z.string().min(1),
  traceparent: z.string().nullish(),
});
export type RunReplayPayload = z.infer<typeof RunReplayPayload>;

/** Drops an as-of replay's materialized state once its TTL has passed. */
export const DropReplayStatePayload = z.object({
  org_id: z.string().min(1),
  replay_id: z.string().min(1),
});
export type DropReplayStatePayload = z.infer<typeof DropReplayStatePayload>;

/**
 * One attempt of an installation's install, upgrade or uninstall. A job whose
 * (operation, version, attempt) is no longer the installation's pending one
 * completes without running: repeats change nothing.
 */
export const RunInstallationPayload = z.object({
  org_id: z.string().min(1),
  installation_id: z.string().min(1),
  operation: z.enum(['install', 'upgrade', 'uninstall']),
  version: z.string().min(1),
  attempt: z.number().int().min(1),
  traceparent: z.string().nullish(),
});
export type RunInstallationPayload = z.infer<typeof RunInstallationPayload>;

/** Task name → payload schema. */
export const TASK_PAYLOADS = {
  [HANDLE_SIGNAL]: HandleSignalPayload,
  [EXECUTE_DIRECTIVE]: ExecuteDirectivePayload,
  [EXPIRE_DIRECTIVE]: ExpireDirectivePayload,
  [RUN_REPLAY]: RunReplayPayload,
  [DROP_REPLAY_STATE]: DropReplayStatePayload,
  [RUN_INSTALLATION]: RunInstallationPayload,
} as const;

export type TaskName = keyof typeof TASK_PAYLOADS;
export type TaskPayloads = { [K in TaskName]: z.infer<(typeof TASK_PAYLOADS)[K]> };

/** Parses a stored payload of task `name`. */
export function parseTaskPayload<K extends TaskName>(name: K, raw: unknown): z.ZodSafeParseResult<TaskPayloads[K]> {
  const schemas: { [N in TaskName]: z.ZodType<TaskPayloads[N]> } = TASK_PAYLOADS;
  return schemas[name].safeParse(raw);
}

declare global {
  // graphile-worker 0.17 types `addJob`, `Task` and `TaskList` from this interface.
  namespace GraphileWorker {
    interface Tasks extends TaskPayloads {}
  }
}
