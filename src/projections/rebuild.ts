/**
 * Rebuild: empty projections and fold the whole log through the same
 * reducers live writes use, in position order and in pages, so memory stays
 * flat however long the stream. A checksum over each projection's ordered
 * rows shows whether rebuilt state equals live state.
 */
import type { Queryable, Sql } from '../db/client.ts';
import { withTransaction } from '../db/transaction.ts';
import { SIGNAL_COLUMNS, type SignalRow } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Projection, ProjectionRegistry } from './registry.ts';

export interface ProjectionChecksum {
  rows: number;
  checksum: string;
}

export type Checksums = Record<string, ProjectionChecksum>;

/** md5 over every row as jsonb text, in id order: equal state, equal checksum. */
export async function checksumProjections(db: Queryable, tenant: Tenant, projections: readonly Projection[]): Promise<Checksums> {
  const result: Checksums = {};
  for (const projection of projections) {
    const [row] = await db<ProjectionChecksum[]>`
      select count(*)::int as rows,
             md5(coalesce(string_agg(to_jsonb(t)::text, E'\n' order by t.id), '')) as checksum
        from ${db(`${tenant.schema}.${projection.table}`)} t`;
    result[projection.name] = row!;
  }
  return result;
}

export interface RebuildReport {
  projections: string[];
  signals: number;
  before: Checksums;
  after: Checksums;
}

export function selectProjections(registry: ProjectionRegistry, names?: readonly string[]): Projection[] {
  if (!names) return [...registry.projections];
  return names.map((name) => {
    const projection = registry.projections.find((candidate) => candidate.name === name);
    if (!projection) throw new Error(`unknown projection ${name}`);
    return projection;
  });
}

/**
 * Rebuilds `names` (all by default) in one transaction. The projection
 * tables are locked EXCLUSIVE first: emits of handled types wait (their
 * inline apply needs a row lock) and apply on top of the rebuilt state once
 * this commits, while every such emit that committed before is visible to
 * the read — so the fold needs no visibility horizon and misses nothing.
 */
export async function rebuildProjections(
  sql: Sql,
  tenant: Tenant,
  registry: ProjectionRegistry,
  { names, pageSize = 1000, onProgress }: { names?: readonly string[]; pageSize?: number; onProgress?: (processed: number) => void } = {},
): Promise<RebuildReport> {
  const projections = selectProjections(registry, names);
  return withTransaction(sql, undefined, async ({ sql: tx }) => {
    for (const projection of projections) {
      await tx`lock table ${tx(`${tenant.schema}.${projection.table}`)} in exclusive mode`;
    }
    const before = await checksumProjections(tx, tenant, projections);
    for (const projection of projections) await tx`delete from ${tx(`${tenant.schema}.${projection.table}`)}`;

    let cursor = { txId: '0', seq: '0' };
    let processed = 0;
    for (;;) {
      const page = await tx<(SignalRow & { tx_id: string; seq_raw: string })[]>`
        select ${tx.unsafe(SIGNAL_COLUMNS)}, tx_id::text as tx_id, seq::text as seq_raw
          from ${tx(`${tenant.schema}.signals`)}
         where (tx_id, seq) > (${cursor.txId}::xid8, ${cursor.seq}::bigint)
         -- Qualified: a bare tx_id would sort by its text alias above ('10' < '9').
         order by signals.tx_id, signals.seq
         limit ${pageSize}`;
      if (page.length === 0) break;
      for (const projection of projections) {
        const mine = page.filter((signal) => projection.handles(signal.type));
        if (mine.length > 0) await projection.apply(tx, tenant, mine);
      }
      const last = page[page.length - 1]!;
      cursor = { txId: last.tx_id, seq: last.seq_raw };
      processed += page.length;
      onProgress?.(processed);
    }
    const after = await checksumProjections(tx, tenant, projections);
    return { projections: projections.map((projection) => projection.name), signals: processed, before, after };
  }) as Promise<RebuildReport>;
}
