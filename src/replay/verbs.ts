/**
 * The replay verbs: request (authorize, one in progress per scope, record
 * and enqueue in one transaction), cancel, show and list. Every request is
 * a signal, a refused one included.
 */
import { roleHolds, type Permission, type Role } from '../auth/roles.ts';
import { DomainError, forbidden } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { RUN_REPLAY } from '../core/jobs.ts';
import { addJobs } from '../db/jobs.ts';
import { readerOf, withTransaction, type Tx } from '../db/transaction.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbCall, VerbContext } from '../signals/verb-context.ts';
import { isActive, ReplayRequest, type ReplayStatus } from './model.ts';
import { dropReplayState } from './as-of.ts';
import { nowOf, type ReplayDeps } from './deps.ts';
import { getReplay, listReplays, presentReplay, type Replay } from './store.ts';


/** Serializes requests of one org, so the in-progress check and the record are one step. */
const lockReplays = (tx: Tx, schema: string) =>
  tx.sql`select pg_advisory_xact_lock(hashtextextended(${`${schema}:replays`}, 0))`;

async function deny(deps: ReplayDeps, ctx: VerbContext, detail: { mode: string; missing: Permission; role: Role; reason: string | null }): Promise<never> {
  await withTransaction(deps.sql, ctx.tx, (tx) =>
    emitSystem(deps.emit, ctx, tx, {
      type: 'replay.denied',
      payload: { ...detail, at: nowOf(deps) },
      dedupe_key: `replay:denied:${ctx.requestId ?? newId('request')}`,
    }),
  );
  throw forbidden(`role ${detail.role} may not request this replay (needs ${detail.missing})`);
}

/**
 * Requests a replay as `role`: `org:replay`, and whatever the mode asks
 * beyond it, else a `replay.denied` signal and 403. A replay of the same
 * mode whose scope overlaps one queued or running is 409 `replay_in_progress`.
 */
export async function requestReplay(deps: ReplayDeps, { ctx, input }: VerbCall<{ role: Role; request: unknown }>): Promise<Replay> {
  const raw = (input.request ?? {}) as { mode?: unknown; reason?: unknown };
  const attempted = { mode: String(raw.mode ?? ''), role: input.role, reason: typeof raw.reason === 'string' ? raw.reason.slice(0, 1000) : null };
  if (!roleHolds(input.role, 'org:replay')) return deny(deps, ctx, { ...attempted, missing: 'org:replay' });
  const parsed = ReplayRequest.safeParse(input.request);
  if (!parsed.success) {
    throw new DomainError('validation_failed', 'the replay request is not valid', parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })));
  }
  const request = parsed.data;
  const mode = deps.modes.get(request.mode);
  if (!mode) throw new DomainError('validation_failed', `mode ${request.mode} is not available`, [{ path: 'mode', message: `one of ${deps.modes.names().join(', ')}` }]);
  const plan = mode.plan(request, ctx.tenant);
  if (plan.requires && !roleHolds(input.role, plan.requires)) return deny(deps, ctx, { ...attempted, missing: plan.requires });

  const id = newId('replay');
  // Read back inside the transaction: the answer is the request as recorded
  // (queued), not whatever a fast worker has made of it since.
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    await lockReplays(tx, ctx.tenant.schema);
    const wide = plan.scope.includes('*');
    const [running] = await tx.sql<{ id: string }[]>`
      select id from ${tx.sql(`${ctx.tenant.schema}.replays`)}
       where mode = ${request.mode} and status in ('queued', 'running')
         and (${wide} or scope ? '*' or scope ?| ${plan.scope}::text[])
       order by id limit 1`;
    if (running) throw new DomainError('replay_in_progress', `replay ${running.id} of the same ${request.mode} scope is in progress`);
    await emitSystem(deps.emit, ctx, tx, {
      type: 'replay.requested',
      subject: `replay:${id}`,
      payload: { replay_id: id, request, scope: plan.scope, requested_at: nowOf(deps) },
      dedupe_key: `replay:${id}:requested`,
    });
    await addJobs(tx.sql, [{
      identifier: RUN_REPLAY,
      payload: { org_id: ctx.tenant.id, replay_id: id, traceparent: ctx.traceparent ?? null },
      job_key: `replay:${id}`,
    }]);
    return showReplay(deps, { ctx: { ...ctx, tx }, input: { id } });
  });
}

/**
 * Cancels a queued or running replay (the job stops at its next checkpoint
 * and discards its work), or drops a finished as-of replay's state now.
 */
export async function cancelReplay(deps: ReplayDeps, { ctx, input }: VerbCall<{ id: string; reason?: string | null }>): Promise<Replay> {
  const dropping = await withTransaction(deps.sql, ctx.tx, async (tx) => {
    const replay = await getReplay(tx.sql, ctx.tenant, input.id, { lock: true });
    if (isActive(replay.status)) {
      await emitSystem(deps.emit, ctx, tx, {
        type: 'replay.cancelled',
        subject: `replay:${replay.id}`,
        payload: { replay_id: replay.id, reason: input.reason ?? null, at: nowOf(deps) },
        dedupe_key: `replay:${replay.id}:cancelled`,
      });
      return false;
    }
    if (replay.mode === 'as_of' && replay.status === 'succeeded' && !replay.dropped_at) return true;
    throw new DomainError('invalid_transition', `replay ${replay.id} is ${replay.status}; nothing to cancel`);
  });
  if (dropping) await dropReplayState(deps, { ctx, input: { id: input.id } });
  return showReplay(deps, { ctx, input: { id: input.id } });
}

export async function showReplay(deps: Pick<ReplayDeps, 'sql'>, { ctx, input }: VerbCall<{ id: string }>): Promise<Replay> {
  return presentReplay(await getReplay(readerOf(deps.sql, ctx.tx), ctx.tenant, input.id));
}

export async function showReplays(
  deps: Pick<ReplayDeps, 'sql'>,
  { ctx, input }: VerbCall<{ status?: ReplayStatus; after?: string; limit: number }>,
): Promise<{ data: Replay[]; next_cursor: string | null }> {
  const page = await listReplays(readerOf(deps.sql, ctx.tx), ctx.tenant, input);
  return { data: page.data.map(presentReplay), next_cursor: page.next_cursor };
}
