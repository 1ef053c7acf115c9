/**
 * executions — the durable record of work: a handler run on a signal or an
 * executor run of a directive, folded from `execution.*` signals into the
 * `executions` projection. Handlers and directives record executions through
 * `emitSystem`; this folder owns the model, the reducer and the reads, and
 * imports no other domain folder but signals.
 */
export { EXECUTION_STATUSES, evolveExecution, type ExecutionRow, type ExecutionStatus } from './model.ts';
export { executionsProjection } from './projection.ts';
export { findExecution, getExecution, listExecutions, type Execution } from './read.ts';
