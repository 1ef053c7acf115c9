/**
 * http — the API edge: one route module per operation, access checks,
 * RFC 9457 problems, request logs. Routes validate input, call one domain
 * verb and shape its answer; no SQL here. Built by `src/app.ts`.
 */
export { createHttpApp } from './app.ts';
export type { HttpDeps, ApiEnv } from './context.ts';
