/**
 * The execution: a durable record of one unit of work — a handler run on a
 * signal, or an executor run of a directive — folded from `execution.*`
 * signals. Its id is fixed when the work is enqueued, so every attempt,
 * retry and redelivery of that work lands on the same row.
 */
import type { SignalRow } from '../signals/model.ts';
import { systemSignalOf } from '../signals/system.ts';

export const EXECUTION_STATUSES = ['queued', 'running', 'retrying', 'succeeded', 'failed'] as const;
export type ExecutionStatus = (typeof EXECUTION_STATUSES)[number];

export interface ExecutionError {
  code: string;
  message: string;
}

export interface ExecutionOutputs {
  signals: string[];
  directives: string[];
}

export interface ExecutionUsage {
  tokens_in?: number;
  tokens_out?: number;
  cost_usd?: number;
}

export interface ExecutionRow {
  id: string;
  handler: string;
  signal_id: string | null;
  directive_id: string | null;
  status: ExecutionStatus;
  attempts: number;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
  error: ExecutionError | null;
  outputs: ExecutionOutputs;
  tokens_in: number | null;
  tokens_out: number | null;
  cost_usd: number | null;
  updated_at: string;
}

export const EXECUTION_COLUMNS = [
  'id', 'handler', 'signal_id', 'directive_id', 'status', 'attempts', 'started_at', 'finished_at',
  'duration_ms', 'error', 'outputs', 'tokens_in', 'tokens_out', 'cost_usd', 'updated_at',
] as const satisfies readonly (keyof ExecutionRow)[];

/** What every `execution.*` payload carries. */
export interface ExecutionRef {
  execution_id: string;
  handler: string;
  signal_id: string | null;
  directive_id: string | null;
  attempt: number;
}

export interface ExecutionStarted extends ExecutionRef {
  started_at: string;
}

export interface ExecutionSucceeded extends ExecutionRef {
  started_at: string;
  finished_at: string;
  duration_ms: number;
  outputs: ExecutionOutputs;
  usage?: ExecutionUsage;
}

export interface ExecutionFailed extends ExecutionRef {
  started_at: string;
  finished_at: string;
  duration_ms: number;
  error: ExecutionError;
  /** False while retries remain. */
  final: boolean;
  retry_at: string | null;
}

export interface ExecutionRetryRequested extends ExecutionRef {
  reason: string | null;
}

export const EXECUTION_SIGNAL_TYPES = ['execution.started', 'execution.succeeded', 'execution.failed', 'execution.retry_requested'] as const;

declare module '../signals/system.ts' {
  interface SystemSignalPayloads {
    'execution.started': ExecutionStarted;
    'execution.succeeded': ExecutionSucceeded;
    'execution.failed': ExecutionFailed;
    'execution.retry_requested': ExecutionRetryRequested;
  }
}

const EMPTY_OUTPUTS: ExecutionOutputs = { signals: [], directives: [] };

export function executionIdOf(signal: SignalRow): string | null {
  const id = (signal.payload as { execution_id?: unknown }).execution_id;
  return typeof id === 'string' ? id : null;
}

function fresh(ref: ExecutionRef, at: string): ExecutionRow {
  return {
    id: ref.execution_id,
    handler: ref.handler,
    signal_id: ref.signal_id,
    directive_id: ref.directive_id,
    status: 'queued',
    attempts: 0,
    started_at: null,
    finished_at: null,
    duration_ms: null,
    error: null,
    outputs: EMPTY_OUTPUTS,
    tokens_in: null,
    tokens_out: null,
    cost_usd: null,
    updated_at: at,
  };
}

/**
 * Pure over (row, signal). A success is final: a late failure or start of a
 * redelivered attempt does not reopen it.
 */
export function evolveExecution(row: ExecutionRow | null, signal: SignalRow): ExecutionRow | null {
  const event = systemSignalOf(signal, EXECUTION_SIGNAL_TYPES);
  if (!event) return row;
  const ref: ExecutionRef = event.payload;
  const at = event.recorded_at;
  const base = row ?? fresh(ref, at);
  if (row?.status === 'succeeded') return row;
  const attempts = Math.max(base.attempts, ref.attempt ?? 0);
  switch (event.type) {
    case 'execution.started': {
      const { started_at } = event.payload;
      return { ...base, status: 'running', attempts, started_at: base.started_at ?? started_at, finished_at: null, updated_at: at };
    }
    case 'execution.succeeded': {
      const done = event.payload;
      return {
        ...base,
        status: 'succeeded',
        attempts,
        started_at: base.started_at ?? done.started_at,
        finished_at: done.finished_at,
        duration_ms: done.duration_ms,
        error: null,
        outputs: done.outputs ?? EMPTY_OUTPUTS,
        tokens_in: done.usage?.tokens_in ?? null,
        tokens_out: done.usage?.tokens_out ?? null,
        cost_usd: done.usage?.cost_usd ?? null,
        updated_at: at,
      };
    }
    case 'execution.failed': {
      const failed = event.payload;
      // A stale attempt's failure must not overwrite a later attempt's state.
      if (row && failed.attempt < row.attempts) return row;
      return {
        ...base,
        status: failed.final ? 'failed' : 'retrying',
        attempts,
        started_at: base.started_at ?? failed.started_at,
        finished_at: failed.finished_at,
        duration_ms: failed.duration_ms,
        error: failed.error,
        updated_at: at,
      };
    }
    case 'execution.retry_requested':
      return { ...base, status: 'queued', updated_at: at };
    default:
      return row;
  }
}
