/**
 * handlers — subscriptions, the dispatcher that fans the log out into
 * handler jobs (checkpoint and jobs in one transaction), the handler runtime
 * (one job = one attempt of one Execution; outputs under deterministic keys),
 * and retrying a failed run. Handlers never write directly: they return outputs, which
 * the runtime emits and proposes through the one emit path.
 */
export { createHandlerRegistry, type Handler, type HandlerRegistry, type HandlerTools } from './registry.ts';
export { createDispatcher, dispatchOnce, type Dispatcher } from './dispatcher.ts';
export { subscribe, ensureSubscriptions, type SubscriptionStart } from './subscriptions.ts';
export { runHandleSignal, type RuntimeDeps } from './runtime.ts';
export { retryExecution } from './retry-execution.ts';
export { traceSignal } from './trace.ts';
