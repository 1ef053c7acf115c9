/**
 * Inline projections: reducers that `emit` applies to each new signal inside
 * the append's transaction, so a projection is never behind its log. The
 * registry is empty until directives, executions and policies arrive; emit
 * only opens a transaction when some reducer handles a signal's type.
 */
import type { Tx } from '../db/transaction.ts';
import type { SignalRow } from '../signals/model.ts';
import type { TenantRef } from '../tenancy/tenant-migrations.ts';

export interface Projection {
  name: string;
  /** Signal types this projection folds. */
  handles(type: string): boolean;
  /** Folds one signal into the projection's own tables; pure apart from those writes. */
  apply(tx: Tx, tenant: TenantRef, signal: SignalRow): Promise<void>;
}

export interface ProjectionRegistry {
  handlesAny(types: Iterable<string>): boolean;
  apply(tx: Tx, tenant: TenantRef, signals: SignalRow[]): Promise<void>;
}

export function createProjectionRegistry(projections: Projection[]): ProjectionRegistry {
  return {
    handlesAny(types) {
      for (const type of types) if (projections.some((projection) => projection.handles(type))) return true;
      return false;
    },
    async apply(tx, tenant, signals) {
      for (const signal of signals) {
        for (const projection of projections) {
          if (projection.handles(signal.type)) await projection.apply(tx, tenant, signal);
        }
      }
    },
  };
}
