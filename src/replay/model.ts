/**
 * A replay: support's request to refold, re-run or look back over an org's
 * log, itself recorded as `replay.*` signals attributed to the requesting
 * actor and folded into the `replays` projection. The reducer is pure; rate
 * and ETA are derived when read, from the timestamps the signals carry.
 */
import { z } from 'zod';
import type { Actor } from '../signals/actor.ts';
import type { SignalRow } from '../signals/model.ts';
import { systemSignalOf } from '../signals/system.ts';

export const REPLAY_MODES = ['rebuild', 'redeliver', 'as_of'] as const;
export type ReplayModeName = (typeof REPLAY_MODES)[number];
export const REPLAY_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type ReplayStatus = (typeof REPLAY_STATUSES)[number];
export const ACTIVE_STATUSES: readonly ReplayStatus[] = ['queued', 'running'];

const Position = z.string().regex(/^[0-9a-f]{32}$/, 'a signal position (32 hex digits)');

/** Which signals a replay reads. Positions are exclusive `after`, inclusive `until`; times likewise. */
export const ReplaySelection = z
  .object({
    after: Position.optional(),
    until: Position.optional(),
    types: z.array(z.string().min(1).max(200)).max(100).optional(),
    subject: z.string().min(1).max(500).optional(),
    since: z.iso.datetime({ offset: true }).optional(),
    before: z.iso.datetime({ offset: true }).optional(),
  })
  .strict();
export type ReplaySelection = z.infer<typeof ReplaySelection>;

/** POST /replays, as API.md gives it. Mode-specific checks live with each mode. */
export const ReplayRequest = z
  .object({
    mode: z.enum(REPLAY_MODES),
    reason: z.string().trim().min(3).max(1000),
    selection: ReplaySelection.default({}),
    handlers: z.array(z.string().min(1).max(200)).max(100).optional(),
    projections: z.array(z.string().min(1).max(100)).min(1).max(50).optional(),
    dry_run: z.boolean().default(false),
    new_directives: z.enum(['hold', 'execute']).default('hold'),
    rate_per_s: z.number().positive().max(1_000_000).optional(),
    /** as_of: how long the materialized state is kept (default one hour). */
    ttl_s: z.number().int().min(60).max(7 * 86_400).optional(),
  })
  .strict();
export type ReplayRequest = z.infer<typeof ReplayRequest>;

export interface ReplayError {
  code: string;
  message: string;
  /** The signal a step failed on, when one did. */
  position?: string | null;
  signal_id?: string | null;
}

export type ReplayReport = Record<string, unknown>;

export interface ReplayRow {
  id: string;
  mode: ReplayModeName;
  status: ReplayStatus;
  reason: string;
  actor: Actor;
  request: ReplayRequest;
  scope: string[];
  processed: number;
  total: number | null;
  checkpoint: unknown;
  checkpoints: number;
  report: ReplayReport | null;
  error: ReplayError | null;
  requested_at: string;
  started_at: string | null;
  progress_at: string | null;
  finished_at: string | null;
  expires_at: string | null;
  dropped_at: string | null;
  updated_at: string;
}

export const REPLAY_COLUMNS = [
  'id', 'mode', 'status', 'reason', 'actor', 'request', 'scope', 'processed', 'total', 'checkpoint', 'checkpoints',
  'report', 'error', 'requested_at', 'started_at', 'progress_at', 'finished_at', 'expires_at', 'dropped_at', 'updated_at',
] as const satisfies readonly (keyof ReplayRow)[];

export interface ReplayRequested {
  replay_id: string;
  request: ReplayRequest;
  scope: string[];
  requested_at: string;
}
/** A refused attempt to request or cancel a replay; no `replays` row changes. */
export interface ReplayDenied {
  action: 'request' | 'cancel';
  mode: string;
  /** Why: `forbidden` (the role), `replay_in_progress` (a request's conflict), `invalid_transition` (a cancel of an ended replay). */
  code: string;
  /** The permission the caller's role lacks; null when refused for another reason. */
  missing: string | null;
  role: string;
  reason: string | null;
  /** The replay a cancel named, or the one in progress a request conflicted with. */
  replay_id: string | null;
  at: string;
}
export interface ReplayStarted {
  replay_id: string;
  started_at: string;
}
export interface ReplayProgress {
  replay_id: string;
  processed: number;
  total: number | null;
  checkpoint: unknown;
  at: string;
}
export interface ReplayCompleted {
  replay_id: string;
  processed: number;
  total: number | null;
  report: ReplayReport;
  finished_at: string;
  expires_at: string | null;
}
export interface ReplayFailed {
  replay_id: string;
  error: ReplayError;
  finished_at: string;
}
export interface ReplayCancelled {
  replay_id: string;
  reason: string | null;
  at: string;
}
/** An as-of replay's materialized state was dropped (its TTL passed, or on demand). */
export interface ReplayDropped {
  replay_id: string;
  at: string;
}

declare module '../signals/system.ts' {
  interface SystemSignalPayloads {
    'replay.requested': ReplayRequested;
    'replay.denied': ReplayDenied;
    'replay.started': ReplayStarted;
    'replay.progress': ReplayProgress;
    'replay.completed': ReplayCompleted;
    'replay.failed': ReplayFailed;
    'replay.cancelled': ReplayCancelled;
    'replay.dropped': ReplayDropped;
  }
}

const REPLAY_TYPES = [
  'replay.requested', 'replay.started', 'replay.progress', 'replay.completed', 'replay.failed', 'replay.cancelled', 'replay.dropped',
] as const;

export function replayIdOf(signal: Pick<SignalRow, 'type' | 'payload'>): string | null {
  if (signal.type === 'replay.denied') return null;
  const id = (signal.payload as { replay_id?: unknown }).replay_id;
  return typeof id === 'string' ? id : null;
}

export const isActive = (status: ReplayStatus) => ACTIVE_STATUSES.includes(status);

/** Pure: the replay after `signal`. Once a replay has ended, only a drop of its as-of state changes it. */
export function evolveReplay(row: ReplayRow | null, signal: SignalRow): ReplayRow | null {
  const event = systemSignalOf(signal, REPLAY_TYPES);
  if (!event) return row;
  if (event.type === 'replay.requested') {
    if (row) return row;
    const { payload: p } = event;
    return {
      id: p.replay_id, mode: p.request.mode, status: 'queued', reason: p.request.reason, actor: signal.actor as Actor,
      request: p.request, scope: p.scope, processed: 0, total: null, checkpoint: null, checkpoints: 0, report: null,
      error: null, requested_at: p.requested_at, started_at: null, progress_at: null, finished_at: null,
      expires_at: null, dropped_at: null, updated_at: p.requested_at,
    };
  }
  if (!row) return row;
  switch (event.type) {
    case 'replay.started':
      if (row.status !== 'queued') return row;
      return { ...row, status: 'running', started_at: event.payload.started_at, updated_at: event.payload.started_at };
    case 'replay.progress': {
      const p = event.payload;
      if (row.status !== 'running') return row;
      return { ...row, processed: p.processed, total: p.total, checkpoint: p.checkpoint, checkpoints: row.checkpoints + 1, progress_at: p.at, updated_at: p.at };
    }
    case 'replay.completed': {
      const p = event.payload;
      if (row.status !== 'running') return row;
      return {
        ...row, status: 'succeeded', processed: p.processed, total: p.total, report: p.report, finished_at: p.finished_at,
        progress_at: p.finished_at, expires_at: p.expires_at, updated_at: p.finished_at,
      };
    }
    case 'replay.failed':
      if (!isActive(row.status)) return row;
      return { ...row, status: 'failed', error: event.payload.error, finished_at: event.payload.finished_at, updated_at: event.payload.finished_at };
    case 'replay.cancelled':
      if (!isActive(row.status)) return row;
      return { ...row, status: 'cancelled', finished_at: event.payload.at, updated_at: event.payload.at };
    case 'replay.dropped':
      if (row.dropped_at) return row;
      return { ...row, dropped_at: event.payload.at, updated_at: event.payload.at };
  }
  return row;
}

/** Signals per second over the run so far, and seconds left at that rate; null before there is a rate. */
export function replayPace(row: Pick<ReplayRow, 'processed' | 'total' | 'started_at' | 'progress_at' | 'status'>): { rate_per_s: number | null; eta_s: number | null } {
  if (!row.started_at || !row.progress_at) return { rate_per_s: null, eta_s: null };
  const seconds = (Date.parse(row.progress_at) - Date.parse(row.started_at)) / 1000;
  if (!(seconds > 0) || row.processed <= 0) return { rate_per_s: null, eta_s: null };
  const rate = row.processed / seconds;
  const eta = row.status === 'running' && row.total !== null ? Math.max(0, (row.total - row.processed) / rate) : row.status === 'succeeded' ? 0 : null;
  return { rate_per_s: Math.round(rate * 10) / 10, eta_s: eta === null ? null : Math.round(eta) };
}
