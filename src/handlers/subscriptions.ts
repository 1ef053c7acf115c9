/**
 * Subscriptions: one checkpoint per (org × handler), the position up to which
 * the dispatcher has enqueued that handler's jobs. A new subscription starts
 * at the present — the visibility horizon, so a transaction still open when
 * it was created is delivered, never skipped — or backfills from the
 * beginning or a given position.
 */
import type { Queryable } from '../db/client.ts';
import type { Cursor } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';

export type SubscriptionStart = 'now' | 'beginning' | Cursor;

function startPosition(db: Queryable, from: SubscriptionStart) {
  if (from === 'now') return db`pg_snapshot_xmin(pg_current_snapshot()), 0`;
  if (from === 'beginning') return db`'0'::xid8, 0`;
  return db`${from.txId}::xid8, ${from.seq}::bigint`;
}

/** Creates the missing subscriptions of `handlers`, each at its declared start; existing ones are kept. */
export async function ensureSubscriptions(
  db: Queryable,
  tenant: Tenant,
  handlers: ReadonlyArray<{ id: string; start?: 'now' | 'beginning' }>,
): Promise<void> {
  for (const from of ['now', 'beginning'] as const) {
    const ids = handlers.filter((handler) => (handler.start ?? 'now') === from).map((handler) => handler.id);
    if (ids.length === 0) continue;
    await db`
      insert into ${db(`${tenant.schema}.subscriptions`)} (handler, tx_id, seq)
      select handler, ${startPosition(db, from)} from unnest(${ids}::text[]) as handler
      on conflict (handler) do nothing`;
  }
}

/** Starts (or restarts) `handler`'s subscription at `from`: a backfill when that lies in the past. */
export async function subscribe(db: Queryable, tenant: Tenant, handler: string, from: SubscriptionStart): Promise<void> {
  await db`
    insert into ${db(`${tenant.schema}.subscriptions`)} (handler, tx_id, seq)
    values (${handler}, ${startPosition(db, from)})
    on conflict (handler) do update set tx_id = excluded.tx_id, seq = excluded.seq, updated_at = now()`;
}
