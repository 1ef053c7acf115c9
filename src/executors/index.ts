/**
 * executors — the side-effect gateway. Only executor jobs talk to the outside
 * world, and only for an approved directive; each provider gets its own
 * folder. Executors return results (retryable, permanent, needs
 * re-authorization) rather than throwing across the boundary.
 */
export { createExecutorRegistry, type Executor, type ExecutorRegistry, type ExecuteRequest, type ExecuteResult } from './registry.ts';
export { noopExecutor } from './noop.ts';
