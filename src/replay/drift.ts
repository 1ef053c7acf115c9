/**
 * Drift between a live projection table and its rebuilt copy: the keys the
 * rebuild adds, removes and changes, counted, with a few samples of each.
 */
import type { Queryable } from '../db/client.ts';

export const DRIFT_SAMPLES = 5;

export interface DriftSample {
  id: string;
  live: unknown;
  rebuilt: unknown;
}

export interface Drift {
  added: number;
  removed: number;
  changed: number;
  samples: { added: DriftSample[]; removed: DriftSample[]; changed: DriftSample[] };
}

export async function projectionDrift(db: Queryable, live: string, rebuilt: string): Promise<Drift> {
  const rows = await db<{ kind: 'added' | 'removed' | 'changed'; id: string; live: unknown; rebuilt: unknown; count: number; rank: number }[]>`
    with differing as (
      select case when l.id is null then 'added' when r.id is null then 'removed' else 'changed' end as kind,
             coalesce(l.id, r.id) as id, to_jsonb(l) as live, to_jsonb(r) as rebuilt
        from ${db(live)} l full join ${db(rebuilt)} r on l.id = r.id
       where to_jsonb(l) is distinct from to_jsonb(r)
    ), ranked as (
      select *, count(*) over (partition by kind)::int as count, row_number() over (partition by kind order by id) as rank from differing
    )
    select kind, id, live, rebuilt, count, rank::int as rank from ranked where rank <= ${DRIFT_SAMPLES} order by kind, id`;
  const drift: Drift = { added: 0, removed: 0, changed: 0, samples: { added: [], removed: [], changed: [] } };
  for (const row of rows) {
    drift[row.kind] = row.count;
    drift.samples[row.kind].push({ id: row.id, live: row.live, rebuilt: row.rebuilt });
  }
  return drift;
}
