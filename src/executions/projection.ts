import { keyedProjection } from '../projections/keyed.ts';
import { EXECUTION_COLUMNS, evolveExecution, executionIdOf, type ExecutionRow } from './model.ts';

export const executionsProjection = keyedProjection<ExecutionRow>({
  name: 'executions',
  table: 'executions',
  columns: EXECUTION_COLUMNS,
  handles: (type) => type.startsWith('execution.'),
  keyOf: executionIdOf,
  evolve: evolveExecution,
});
