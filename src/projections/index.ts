/**
 * projections — reducers that fold signals into a tenant's state tables.
 * Only reducers write projection tables; `emit` applies the inline ones in the
 * append's transaction. Reducers are pure over (row state, signal).
 */
export { createProjectionRegistry, type Projection, type ProjectionRegistry } from './registry.ts';
