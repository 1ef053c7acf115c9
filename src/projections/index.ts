/**
 * projections — reducers that fold signals into a tenant's state tables.
 * Only reducers write projection tables; `emit` applies the inline ones in the
 * append's transaction and rebuild refolds them from the log through the same
 * code. Reducers are pure over (row state, signal): no clock, ids or I/O.
 */
export { createProjectionRegistry, type Projection, type ProjectionRegistry } from './registry.ts';
export { keyedProjection, type KeyedProjectionSpec } from './keyed.ts';
export { checksumProjections, rebuildProjections, type Checksums, type RebuildReport } from './rebuild.ts';
