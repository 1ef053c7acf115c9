/**
 * Helpers for comparing live projections with rebuilt ones: waiting until an
 * org's fan-out has come to rest, and describing how two snapshots of the
 * projection tables differ, row by row.
 */
import type { Sql } from '../../src/db/client.ts';
import type { Projection } from '../../src/projections/registry.ts';
import type { Tenant } from '../../src/core/tenant.ts';

export interface FanoutBacklog {
  /** graphile jobs of the org that are due or running; expiry jobs scheduled for later do not count. */
  jobs: number;
  /** Directives that still have work ahead: approved (execute job pending) or executing. */
  directives: number;
  /** Executions queued, running or waiting to retry. */
  executions: number;
  /** Subscriptions whose checkpoint is behind the last committed signal. */
  undispatched: number;
  subscriptions: number;
}

/**
 * One statement, so one snapshot. Every step of the fan-out commits its
 * follow-up (job, checkpoint, retry job) in the transaction that records it,
 * and graphile deletes a job only after its task's writes committed, so a
 * snapshot showing no backlog cannot be followed by more work.
 */
export async function fanoutBacklog(sql: Sql, tenant: Tenant): Promise<FanoutBacklog> {
  const schema = (table: string) => sql(`${tenant.schema}.${table}`);
  const [row] = await sql<FanoutBacklog[]>`
    select
      (select count(*)::int from graphile_worker._private_jobs j
         join graphile_worker._private_tasks t on t.id = j.task_id
        where j.payload->>'org_id' = ${tenant.id}
          and (t.identifier <> 'expire_directive' or j.run_at <= now())) as jobs,
      (select count(*)::int from ${schema('directives')} where status in ('approved', 'executing')) as directives,
      (select count(*)::int from ${schema('executions')} where status in ('queued', 'running', 'retrying')) as executions,
      (select count(*)::int from ${schema('subscriptions')} s
        where exists (select 1 from ${schema('signals')} g where (g.tx_id, g.seq) > (s.tx_id, s.seq))) as undispatched,
      (select count(*)::int from ${schema('subscriptions')}) as subscriptions`;
  return row!;
}

/** Waits until the org has no fan-out work left; the timeout names what was still pending. */
export async function waitQuiescent(sql: Sql, tenant: Tenant, { handlers, timeoutMs = 30_000 }: { handlers: number; timeoutMs?: number }): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const backlog = await fanoutBacklog(sql, tenant);
    const { subscriptions, ...pending } = backlog;
    if (subscriptions === handlers && Object.values(pending).every((count) => count === 0)) return;
    if (Date.now() > deadline) throw new Error(`${tenant.slug} did not come to rest: ${JSON.stringify(backlog)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export type ProjectionRows = Record<string, Map<string, string>>;

/** Every row of every projection, as jsonb text keyed by id. */
export async function projectionRows(sql: Sql, tenant: Tenant, projections: readonly Projection[]): Promise<ProjectionRows> {
  const result: ProjectionRows = {};
  for (const projection of projections) {
    const rows = await sql<{ id: string; row: string }[]>`
      select t.id, to_jsonb(t)::text as row from ${sql(`${tenant.schema}.${projection.table}`)} t order by t.id`;
    result[projection.name] = new Map(rows.map(({ id, row }) => [id, row]));
  }
  return result;
}

/** Which projections differ, and for each its first few differing rows. Empty when equal. */
export function describeDrift(live: ProjectionRows, rebuilt: ProjectionRows, limit = 3): string {
  const out: string[] = [];
  for (const name of Object.keys(live)) {
    const before = live[name]!;
    const after = rebuilt[name] ?? new Map<string, string>();
    const ids = [...new Set([...before.keys(), ...after.keys()])].sort();
    const differing = ids.filter((id) => before.get(id) !== after.get(id));
    if (differing.length === 0) continue;
    out.push(`projection ${name}: ${differing.length} of ${ids.length} rows differ`);
    for (const id of differing.slice(0, limit)) {
      out.push(`  ${id}\n    live:    ${before.get(id) ?? '(absent)'}\n    rebuilt: ${after.get(id) ?? '(absent)'}`);
    }
  }
  return out.join('\n');
}
