/** Reading replays: one by id (optionally locked), a page newest first, and the shape the API shows. */
import { notFound } from '../core/errors.ts';
import type { Queryable } from '../db/client.ts';
import { isoTimestamp } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import { replayPace, type ReplayRow, type ReplayStatus } from './model.ts';

const REPLAY_SELECT = `
  id, mode, status, reason, actor, request, scope, processed::float8 as processed, total::float8 as total,
  checkpoint, checkpoints, report, error, ${isoTimestamp('requested_at')} as requested_at,
  ${isoTimestamp('started_at')} as started_at, ${isoTimestamp('progress_at')} as progress_at,
  ${isoTimestamp('finished_at')} as finished_at, ${isoTimestamp('expires_at')} as expires_at,
  ${isoTimestamp('dropped_at')} as dropped_at, ${isoTimestamp('updated_at')} as updated_at`;

export async function findReplay(db: Queryable, tenant: Tenant, id: string, { lock = false } = {}): Promise<ReplayRow | undefined> {
  const [row] = await db<ReplayRow[]>`
    select ${db.unsafe(REPLAY_SELECT)} from ${db(`${tenant.schema}.replays`)} where id = ${id} ${lock ? db`for update` : db``}`;
  return row;
}

export async function getReplay(db: Queryable, tenant: Tenant, id: string, options: { lock?: boolean } = {}): Promise<ReplayRow> {
  const row = await findReplay(db, tenant, id, options);
  if (!row) throw notFound('replay');
  return row;
}

export interface ReplayFilter {
  status?: ReplayStatus;
  after?: string;
  limit: number;
}

/** Newest first. */
export async function listReplays(db: Queryable, tenant: Tenant, { status, after, limit }: ReplayFilter): Promise<{ data: ReplayRow[]; next_cursor: string | null }> {
  const rows = await db<ReplayRow[]>`
    select ${db.unsafe(REPLAY_SELECT)} from ${db(`${tenant.schema}.replays`)}
     where true ${status ? db`and status = ${status}` : db``} ${after ? db`and id < ${after}` : db``}
     order by id desc limit ${limit + 1}`;
  const data = rows.slice(0, limit);
  return { data, next_cursor: rows.length > limit ? data[data.length - 1]!.id : null };
}

/** The replay as the API and CLI show it: its row less the resume bookkeeping, with its pace. */
export interface Replay {
  id: string;
  mode: ReplayRow['mode'];
  status: ReplayStatus;
  reason: string;
  actor: ReplayRow['actor'];
  request: ReplayRow['request'];
  processed: number;
  total: number | null;
  rate_per_s: number | null;
  eta_s: number | null;
  report: ReplayRow['report'];
  error: ReplayRow['error'];
  requested_at: string;
  started_at: string | null;
  finished_at: string | null;
  expires_at: string | null;
  dropped_at: string | null;
}

export function presentReplay(row: ReplayRow): Replay {
  return {
    id: row.id, mode: row.mode, status: row.status, reason: row.reason, actor: row.actor, request: row.request,
    processed: row.processed, total: row.total, ...replayPace(row), report: row.report, error: row.error,
    requested_at: row.requested_at, started_at: row.started_at, finished_at: row.finished_at,
    expires_at: row.expires_at, dropped_at: row.dropped_at,
  };
}
