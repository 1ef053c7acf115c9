/**
 * `signalbus replay rebuild|redeliver|as-of --org … --reason "…"` requests a
 * replay through the same verb as the HTTP API, with platform authority and
 * the operator as the requesting actor, then follows it: a progress bar
 * (processed/total, rate, ETA) on a terminal, plain lines otherwise, the
 * replay as JSON with `--json`. Exit 1 when it fails or is cancelled.
 * `replay list|show|cancel` read and cancel. A worker runs the replay.
 */
import { userInfo } from 'node:os';
import type { Config } from '../config.ts';
import { DomainError } from '../core/errors.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Replay } from '../replay/store.ts';
import { REPLAY_STATUSES, type ReplayStatus } from '../replay/model.ts';
import { cancelReplay, requestReplay, showReplay, showReplays } from '../replay/verbs.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import type { SignalbusApp } from '../app.ts';
import { withApp } from './admin.ts';
import { print, refused } from './registry.ts';

export interface ReplayCommandArgs {
  org: string;
  reason?: string;
  projections?: string;
  handlers?: string;
  types?: string;
  subject?: string;
  from?: string;
  until?: string;
  since?: string;
  before?: string;
  dryRun?: boolean;
  execute?: boolean;
  rate?: string;
  ttl?: string;
  actor?: string;
  wait?: boolean;
  json: boolean;
}

const list = (value: string | undefined) => (value ? value.split(',').map((item) => item.trim()).filter(Boolean) : undefined);
const numberOf = (value: string | undefined) => (value === undefined ? undefined : Number(value));

/** The request body a command's flags make, as POST /replays takes it. */
export function replayRequestOf(mode: string, args: ReplayCommandArgs): Record<string, unknown> {
  const selection = Object.fromEntries(
    Object.entries({ after: args.from, until: args.until, types: list(args.types), subject: args.subject, since: args.since, before: args.before })
      .filter(([, value]) => value !== undefined),
  );
  const request: Record<string, unknown> = { mode: mode === 'as-of' ? 'as_of' : mode, reason: args.reason, selection };
  if (args.projections) request.projections = list(args.projections);
  if (args.handlers) request.handlers = list(args.handlers);
  if (args.dryRun) request.dry_run = true;
  if (args.execute) request.new_directives = 'execute';
  if (args.rate !== undefined) request.rate_per_s = numberOf(args.rate);
  if (args.ttl !== undefined) request.ttl_s = numberOf(args.ttl);
  return request;
}

const grouped = (value: number) => Math.round(value).toLocaleString('en-US');

function duration(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

/** One progress report: a bar for a terminal, a plain line for a pipe or a log. */
export function progressLine(replay: Pick<Replay, 'id' | 'status' | 'processed' | 'total' | 'rate_per_s' | 'eta_s'>, { bar }: { bar: boolean }): string {
  const total = replay.total ?? 0;
  const fraction = total > 0 ? Math.min(1, replay.processed / total) : 0;
  const counts = total > 0 ? `${grouped(replay.processed)}/${grouped(total)} (${Math.floor(fraction * 100)}%)` : grouped(replay.processed);
  const rate = replay.rate_per_s === null ? '' : ` ${grouped(replay.rate_per_s)}/s`;
  const eta = replay.eta_s === null ? '' : ` ETA ${duration(replay.eta_s)}`;
  if (!bar) return `${replay.id} ${replay.status} ${counts}${rate}${eta}`;
  const width = 30;
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${counts}${rate}${eta} ${replay.status}`;
}

function summary(replay: Replay): string {
  const lines = [`${replay.id} ${replay.mode} ${replay.status}: ${grouped(replay.processed)} processed`];
  if (replay.error) lines.push(`error ${replay.error.code}: ${replay.error.message}${replay.error.position ? ` at ${replay.error.position}` : ''}`);
  const report = replay.report as { drift?: Record<string, { added: number; removed: number; changed: number }>; checksums_after?: Record<string, { rows: number }> } | null;
  for (const [name, drift] of Object.entries(report?.drift ?? {})) {
    lines.push(`  ${name}: ${report?.checksums_after?.[name]?.rows ?? '?'} rows, drift +${drift.added} -${drift.removed} ~${drift.changed}`);
  }
  if (replay.expires_at && !replay.dropped_at) lines.push(`readable with ?as_of=${replay.id} until ${replay.expires_at}`);
  return lines.join('\n');
}

const ended = (status: ReplayStatus) => status !== 'queued' && status !== 'running';
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Follows a replay until it ends, reporting progress on `out`. */
async function follow(app: SignalbusApp, ctx: VerbContext, id: string, json: boolean): Promise<Replay> {
  const out = json ? process.stderr : process.stdout;
  const bar = out.isTTY === true;
  let last = '';
  let lastAt = 0;
  const started = Date.now();
  let hinted = false;
  for (;;) {
    const replay = await showReplay(app.deps.bus.replays, { ctx, input: { id } });
    const line = progressLine(replay, { bar });
    if (bar) out.write(`\r${line}\x1b[K`);
    else if (line !== last && (Date.now() - lastAt >= 1000 || ended(replay.status))) {
      out.write(`${line}\n`);
      lastAt = Date.now();
    }
    last = line;
    if (ended(replay.status)) {
      if (bar) out.write('\n');
      return replay;
    }
    if (!hinted && replay.status === 'queued' && Date.now() - started > 10_000) {
      process.stderr.write('still queued: a worker runs replays (signalbus worker, or signalbus start)\n');
      hinted = true;
    }
    await sleep(bar ? 200 : 500);
  }
}

async function withTenant(config: Config, args: { org: string; actor?: string | undefined; json: boolean }, fn: (app: SignalbusApp, ctx: VerbContext) => Promise<number>): Promise<number> {
  return withApp(config, async (app) => {
    const tenant: Tenant | undefined = await app.deps.tenants.find(args.org);
    if (!tenant) return refused(new DomainError('not_found', `organization ${args.org} not found`), args.json);
    const ctx: VerbContext = { tenant, actor: { type: 'human', id: args.actor ?? `cli:${userInfo().username}` }, source: 'cli' };
    try {
      return await fn(app, ctx);
    } catch (error) {
      return refused(error, args.json);
    }
  }, { logToStderr: true });
}

export async function runReplayRequest(config: Config, mode: string, args: ReplayCommandArgs): Promise<number> {
  return withTenant(config, args, async (app, ctx) => {
    const requested = await requestReplay(app.deps.bus.replays, { ctx, input: { role: 'platform_admin', request: replayRequestOf(mode, args) } });
    if (args.wait === false) {
      print({ replay: requested }, args.json, `${requested.id} ${requested.status}`);
      return 0;
    }
    if (!args.json) process.stdout.write(`${requested.id} requested\n`);
    const replay = await follow(app, ctx, requested.id, args.json);
    print({ replay }, args.json, summary(replay));
    return replay.status === 'succeeded' ? 0 : 1;
  });
}

export async function runReplayList(config: Config, args: { org: string; status?: string; json: boolean }): Promise<number> {
  if (args.status !== undefined && !(REPLAY_STATUSES as readonly string[]).includes(args.status)) {
    process.stderr.write(`--status is one of ${REPLAY_STATUSES.join(', ')}\n`);
    return 2;
  }
  return withTenant(config, args, async (app, ctx) => {
    const page = await showReplays(app.deps.bus.replays, { ctx, input: { limit: 100, ...(args.status ? { status: args.status as ReplayStatus } : {}) } });
    const lines = page.data.map((replay) => `${replay.id}\t${replay.mode}\t${replay.status}\t${grouped(replay.processed)}\t${replay.requested_at}\t${replay.reason}`);
    print(page, args.json, lines.join('\n') || 'no replays');
    return 0;
  });
}

export async function runReplayShow(config: Config, args: { org: string; id: string; json: boolean }): Promise<number> {
  return withTenant(config, args, async (app, ctx) => {
    const replay = await showReplay(app.deps.bus.replays, { ctx, input: { id: args.id } });
    print({ replay }, args.json, `${summary(replay)}\n${progressLine(replay, { bar: false })}`);
    return 0;
  });
}

export async function runReplayCancel(config: Config, args: { org: string; id: string; reason?: string; actor?: string; json: boolean }): Promise<number> {
  return withTenant(config, args, async (app, ctx) => {
    const replay = await cancelReplay(app.deps.bus.replays, { ctx, input: { id: args.id, role: 'platform_admin', reason: args.reason ?? null } });
    print({ replay }, args.json, summary(replay));
    return 0;
  });
}
