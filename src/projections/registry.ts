/**
 * Inline projections: reducers that `emit` applies to each new signal inside
 * the append's transaction, so a projection is never behind its log. `emit`
 * opens a transaction only when some projection handles a signal's type.
 */
import type { Queryable } from '../db/client.ts';
import type { Tx } from '../db/transaction.ts';
import type { InlineProjections } from '../signals/emit.ts';
import type { SignalFacts, SignalRow } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';

/** Rows a projection started reading before the append; `apply` uses them when they cover its keys. */
export interface Prefetched {
  keys: ReadonlySet<string>;
  rows: Promise<Map<string, unknown>>;
}

export interface Projection {
  name: string;
  /** Its tables in the tenant schema: what rebuild empties and checksums. */
  table: string;
  /** Signal types this projection folds. */
  handles(type: string): boolean;
  /**
   * Starts reading, under lock, the rows that `signals` (about to be
   * appended, handled types only) would fold into, so the read shares the
   * append's round trip. Undefined when it would read nothing.
   */
  prefetch?(db: Queryable, tenant: Tenant, signals: SignalFacts[]): Prefetched | undefined;
  /**
   * Folds `signals` (position order, handled types only) into its table.
   * With `defer`, its writes are handed to the transaction instead of
   * awaited: it resolves once they are sent.
   */
  apply(db: Queryable, tenant: Tenant, signals: SignalRow[], prefetched?: Prefetched, defer?: Tx['defer']): Promise<void>;
  /**
   * Copies into a folded as-of schema (`asOf`) whatever the reads of this
   * projection need from `live` beyond its own table, so the normal GET
   * routes answer from that schema alone. Run once its table is folded.
   */
  materializeReads?(db: Queryable, live: Tenant, asOf: Tenant): Promise<void>;
}

/** Per projection, what `prefetch` started. */
export type PrefetchedRows = Map<Projection, Prefetched>;

/** The projections `emit` folds into, and the list rebuild walks. */
export interface ProjectionRegistry extends InlineProjections<PrefetchedRows> {
  /** What rebuild and as-of refold: the tenant's state. */
  readonly projections: readonly Projection[];
}

/**
 * `bookkeeping` projections are folded live like the others but never
 * refolded by a replay: replay's own record, which a rebuild would otherwise
 * chase while writing it.
 */
export function createProjectionRegistry(rebuildable: Projection[], bookkeeping: Projection[] = []): ProjectionRegistry {
  const projections = [...rebuildable, ...bookkeeping];
  const handled = new Map<string, boolean>();
  const handledByAny = (type: string) => {
    let answer = handled.get(type);
    if (answer === undefined) {
      answer = projections.some((projection) => projection.handles(type));
      if (handled.size < 10_000) handled.set(type, answer);
    }
    return answer;
  };
  return {
    projections: rebuildable,
    handlesAny(types) {
      for (const type of types) if (handledByAny(type)) return true;
      return false;
    },
    prefetch(db, tenant, signals) {
      // In registry order, like apply: the order row locks are taken in.
      const started: PrefetchedRows = new Map();
      for (const projection of projections) {
        if (!projection.prefetch) continue;
        const mine = signals.filter((signal) => projection.handles(signal.type));
        const prefetched = mine.length > 0 ? projection.prefetch(db, tenant, mine) : undefined;
        if (prefetched) started.set(projection, prefetched);
      }
      return started;
    },
    async apply(db, tenant, signals, prefetched, defer) {
      // Projections write disjoint tables, so they fold side by side: on one
      // transaction's connection their statements are pipelined, one socket
      // write for all their reads and one for all their writes. They start
      // in registry order, which is the order their row locks are taken in —
      // the order rebuild locks their tables in too.
      const applying: Promise<void>[] = [];
      for (const projection of projections) {
        const mine = signals.filter((signal) => projection.handles(signal.type));
        if (mine.length > 0) applying.push(projection.apply(db, tenant, mine, prefetched?.get(projection), defer));
      }
      await Promise.all(applying);
    },
  };
}
