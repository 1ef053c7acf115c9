/**
 * The delivery log (`org_<slug>.webhook_deliveries`): every delivery to an
 * installation's hook, accepted or rejected, with when, the status answered,
 * why, and the body's SHA-256 — never the body, a header or a secret.
 * Bounded per installation: each process trims an installation's rows to the
 * newest `size` every `PRUNE_EVERY` deliveries it records for it, so the
 * table holds about `size` rows per installation (a little more between trims).
 */
import { newId } from '../core/ids.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Queryable, Sql } from '../db/client.ts';
import type postgres from 'postgres';
import { isoTimestamp } from '../signals/model.ts';

export type DeliveryOutcome = 'accepted' | 'deduplicated' | 'ignored' | 'rejected';

export interface DeliveryRecord {
  installationId: string;
  receivedAt: number;
  status: number;
  outcome: DeliveryOutcome;
  /** The problem code of a rejection, or why an accepted delivery wrote nothing. */
  reason: string | null;
  detail: string | null;
  /** Hex SHA-256 of the body; null when it was not read (refused before). */
  bodySha256: string | null;
  bodyBytes: number | null;
  eventId: string | null;
  signalId: string | null;
}

export interface DeliveryView {
  id: string;
  received_at: string;
  status: number;
  outcome: DeliveryOutcome;
  reason: string | null;
  detail: string | null;
  body_sha256: string | null;
  body_bytes: number | null;
  event_id: string | null;
  signal_id: string | null;
}

const PRUNE_EVERY = 64;
const MAX_COUNTERS = 10_000;

export interface DeliveryLog {
  record(tenant: Tenant, entry: DeliveryRecord): Promise<void>;
  /**
   * Writes `tenant`'s entries in a caller's transaction, one statement (an
   * accepted delivery's row, as its signal's side row). The same function
   * for every call, so rows committed together share the statement.
   */
  writer(tenant: Tenant): (db: Queryable, entries: DeliveryRecord[]) => postgres.PendingQuery<postgres.Row[]>;
  /** Counts a committed entry `writer` wrote, trimming as `record` does; a failed trim goes to `onError`. */
  written(tenant: Tenant, entry: DeliveryRecord, onError?: (error: unknown) => void): void;
  /** Resolves once every record this process took for `tenant` so far is written (or failed). */
  settled(tenant: Tenant): Promise<void>;
}

interface Pending {
  entries: DeliveryRecord[];
  done: Array<{ resolve(): void; reject(error: unknown): void }>;
}

/**
 * Records are written in groups: while one tenant's insert is in flight, the
 * deliveries arriving meanwhile wait and go out together as the next one
 * (one statement, one commit), so a burst costs a few commits, not one per
 * delivery; a lone delivery goes out at once.
 */
export function createDeliveryLog(deps: { sql: Sql }, { size }: { size: number }): DeliveryLog {
  const counts = new Map<string, number>();
  const queues = new Map<string, { tenant: Tenant; inFlight: boolean; pending: Pending }>();
  const writers = new Map<string, ReturnType<DeliveryLog['writer']>>();

  const countAndPrune = async (tenant: Tenant, entries: DeliveryRecord[]) => {
    for (const entry of entries) {
      const key = `${tenant.schema}/${entry.installationId}`;
      const count = (counts.get(key) ?? 0) + 1;
      if (counts.size >= MAX_COUNTERS && !counts.has(key)) counts.clear();
      counts.set(key, count % PRUNE_EVERY);
      if (count % PRUNE_EVERY === 0) await prune(deps.sql, tenant, entry.installationId, size);
    }
  };

  const flush = async (schema: string): Promise<void> => {
    const queue = queues.get(schema)!;
    const { entries, done } = queue.pending;
    queue.pending = { entries: [], done: [] };
    queue.inFlight = true;
    try {
      await insertRows(deps.sql, queue.tenant, entries);
      await countAndPrune(queue.tenant, entries);
      for (const waiter of done) waiter.resolve();
    } catch (error) {
      for (const waiter of done) waiter.reject(error);
    } finally {
      queue.inFlight = false;
      if (queue.pending.entries.length > 0) void flush(schema);
      else {
        // Only `settled` waiters: nothing is left to write.
        for (const waiter of queue.pending.done) waiter.resolve();
        queues.delete(schema);
      }
    }
  };

  return {
    record(tenant, entry) {
      let queue = queues.get(tenant.schema);
      if (!queue) queues.set(tenant.schema, (queue = { tenant, inFlight: false, pending: { entries: [], done: [] } }));
      const written = new Promise<void>((resolve, reject) => queue.pending.done.push({ resolve, reject }));
      queue.pending.entries.push(entry);
      if (!queue.inFlight) void flush(tenant.schema);
      return written;
    },
    writer(tenant) {
      let write = writers.get(tenant.schema);
      if (!write) {
        if (writers.size >= MAX_COUNTERS) writers.clear();
        write = (db, entries) => insertRows(db, tenant, entries);
        writers.set(tenant.schema, write);
      }
      return write;
    },
    written(tenant, entry, onError) {
      countAndPrune(tenant, [entry]).catch((error: unknown) => onError?.(error));
    },
    async settled(tenant) {
      for (let queue = queues.get(tenant.schema); queue; queue = queues.get(tenant.schema)) {
        const waiters = queue.pending.done.length > 0 ? queue.pending.done : undefined;
        if (!waiters && !queue.inFlight) return;
        await new Promise<void>((resolve) => {
          const done = () => resolve();
          if (waiters) waiters.push({ resolve: done, reject: done });
          else queue.pending.done.push({ resolve: done, reject: done });
        });
      }
    },
  };
}

function insertRows(db: Queryable, tenant: Tenant, entries: DeliveryRecord[]) {
  const rows = entries.map((entry) => ({
    id: newId('delivery'),
    installation_id: entry.installationId,
    received_at: new Date(entry.receivedAt),
    status: entry.status,
    outcome: entry.outcome,
    reason: entry.reason,
    detail: entry.detail,
    body_sha256: entry.bodySha256,
    body_bytes: entry.bodyBytes,
    event_id: entry.eventId,
    signal_id: entry.signalId,
  }));
  return db`insert into ${db(`${tenant.schema}.webhook_deliveries`)} ${db(rows)}`;
}

/** Keeps the newest `size` deliveries of an installation. */
export async function prune(db: Queryable, tenant: Tenant, installationId: string, size: number): Promise<void> {
  const table = db(`${tenant.schema}.webhook_deliveries`);
  await db`
    delete from ${table}
     where installation_id = ${installationId}
       and id <= (select id from ${table} where installation_id = ${installationId} order by id desc offset ${size} limit 1)`;
}

export async function listDeliveries(
  db: Queryable,
  tenant: Tenant,
  { installationId, after, limit }: { installationId: string; after?: string | undefined; limit: number },
): Promise<{ data: DeliveryView[]; next_cursor: string | null }> {
  const rows = await db<DeliveryView[]>`
    select id, ${db.unsafe(isoTimestamp('received_at'))} as received_at, status, outcome, reason, detail,
           body_sha256, body_bytes, event_id, signal_id
      from ${db(`${tenant.schema}.webhook_deliveries`)}
     where installation_id = ${installationId} ${after ? db`and id < ${after}` : db``}
     order by id desc limit ${limit + 1}`;
  const data = rows.slice(0, limit);
  return { data, next_cursor: rows.length > limit ? data[data.length - 1]!.id : null };
}
