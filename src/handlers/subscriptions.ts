/**
 * Subscriptions: one checkpoint per (org × handler), the position up to which
 * the dispatcher has enqueued that handler's jobs. A new subscription starts
 * at the present — the visibility horizon, so a transaction still open when
 * it was created is delivered, never skipped — or backfills from the
 * beginning or a given position. An imported org's beginning is its
 * `org.imported` signal: the history before it was handled where it was
 * exported from, and handling it again would repeat those runs.
 */
import type { Queryable } from '../db/client.ts';
import type { Cursor } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';

export type SubscriptionStart = 'now' | 'beginning' | Cursor;

function startPosition(db: Queryable, tenant: Tenant, from: SubscriptionStart) {
  if (from === 'now') return db`pg_snapshot_xmin(pg_current_snapshot()), 0`;
  if (from === 'beginning') {
    return db`coalesce(imported.tx_id, '0'::xid8), coalesce(imported.seq, 0)
      from (select 1) as origin
      left join lateral (select tx_id, seq from ${db(`${tenant.schema}.signals`)}
                          where type = 'org.imported' order by tx_id desc, seq desc limit 1) imported on true`;
  }
  return db`${from.txId}::xid8, ${from.seq}::bigint`;
}

/** Creates the missing subscriptions of `handlers`, each at its declared start; existing ones are kept. */
export async function ensureSubscriptions(
  db: Queryable,
  tenant: Tenant,
  handlers: ReadonlyArray<{ id: string; start?: SubscriptionStart }>,
): Promise<void> {
  for (const from of ['now', 'beginning'] as const) {
    const ids = handlers.filter((handler) => (handler.start ?? 'now') === from).map((handler) => handler.id);
    if (ids.length === 0) continue;
    await db`
      insert into ${db(`${tenant.schema}.subscriptions`)} (handler, tx_id, seq)
      select handler.id, start.* from unnest(${ids}::text[]) as handler(id), lateral (select ${startPosition(db, tenant, from)}) as start
      on conflict (handler) do nothing`;
  }
  const positioned = handlers.filter((handler) => typeof handler.start === 'object');
  if (positioned.length === 0) return;
  await db`
    insert into ${db(`${tenant.schema}.subscriptions`)} (handler, tx_id, seq)
    select handler, tx_id::xid8, seq::bigint
      from unnest(${positioned.map((handler) => handler.id)}::text[],
                  ${positioned.map((handler) => (handler.start as Cursor).txId)}::text[],
                  ${positioned.map((handler) => (handler.start as Cursor).seq)}::text[]) as s(handler, tx_id, seq)
    on conflict (handler) do nothing`;
}

/** Starts (or restarts) `handler`'s subscription at `from`: a backfill when that lies in the past. */
export async function subscribe(db: Queryable, tenant: Tenant, handler: string, from: SubscriptionStart): Promise<void> {
  await db`
    insert into ${db(`${tenant.schema}.subscriptions`)} (handler, tx_id, seq)
    select ${handler}, start.* from (select ${startPosition(db, tenant, from)}) as start
    on conflict (handler) do update set tx_id = excluded.tx_id, seq = excluded.seq, updated_at = now()`;
}
