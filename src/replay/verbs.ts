/**
 * The replay verbs: request (authorize, one in progress per scope, record
 * and enqueue in one transaction), cancel, show and list. Every attempt to
 * request or cancel is a signal, a refused one included (`replay.denied`).
 */
import { roleHolds, type Permission, type Role } from '../auth/roles.ts';
import { DomainError, forbidden } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { RUN_REPLAY } from '../core/jobs.ts';
import { addJobs } from '../db/jobs.ts';
import { readerOf, withTransaction, type Tx } from '../db/transaction.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbCall, VerbContext } from '../signals/verb-context.ts';
import { isActive, ReplayRequest, type ReplayDenied, type ReplayStatus } from './model.ts';
import { dropReplayState } from './as-of.ts';
import { nowOf, type ReplayDeps } from './deps.ts';
import { findReplay, getReplay, listReplays, presentReplay, type Replay } from './store.ts';


/** Serializes requests of one org, so the in-progress check and the record are one step. */
const lockReplays = (tx: Tx, schema: string) =>
  tx.sql`select pg_advisory_xact_lock(hashtextextended(${`${schema}:replays`}, 0))`;

/** A refused attempt, as its `replay.denied` signal records it. */
type Refusal = Omit<ReplayDenied, 'at'>;

function recordRefusal(deps: ReplayDeps, ctx: VerbContext, tx: Tx, refusal: Refusal) {
  return emitSystem(deps.emit, ctx, tx, {
    type: 'replay.denied',
    ...(refusal.replay_id ? { subject: `replay:${refusal.replay_id}` } : {}),
    payload: { ...refusal, at: nowOf(deps) },
    dedupe_key: `replay:denied:${ctx.requestId ?? newId('request')}`,
  });
}

/** Records a refusal for the caller's role, then answers 403. */
async function deny(deps: ReplayDeps, ctx: VerbContext, refusal: Refusal & { missing: Permission }): Promise<never> {
  await withTransaction(deps.sql, ctx.tx, (tx) => recordRefusal(deps, ctx, tx, refusal));
  throw forbidden(`role ${refusal.role} may not ${refusal.action} this replay (needs ${refusal.missing})`);
}

/**
 * Requests a replay as `role`: `org:replay`, and whatever the mode asks
 * beyond it, else a `replay.denied` signal and 403. A replay of the same
 * mode whose scope overlaps one queued or running is 409 `replay_in_progress`.
 */
export async function requestReplay(deps: ReplayDeps, { ctx, input }: VerbCall<{ role: Role; request: unknown }>): Promise<Replay> {
  const raw = (input.request ?? {}) as { mode?: unknown; reason?: unknown };
  const attempted = {
    action: 'request' as const,
    mode: String(raw.mode ?? '').slice(0, 100),
    role: input.role,
    reason: typeof raw.reason === 'string' ? raw.reason.slice(0, 1000) : null,
    replay_id: null,
    code: 'forbidden',
  };
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
  // (queued), not whatever a fast worker has made of it since. A conflict is
  // recorded (the attempt is in the log) and answered once that commits.
  const outcome = await withTransaction(deps.sql, ctx.tx, async (tx) => {
    await lockReplays(tx, ctx.tenant.schema);
    const wide = plan.scope.includes('*');
    const [running] = await tx.sql<{ id: string }[]>`
      select id from ${tx.sql(`${ctx.tenant.schema}.replays`)}
       where mode = ${request.mode} and status in ('queued', 'running')
         and (${wide} or scope ? '*' or scope ?| ${plan.scope}::text[])
       order by id limit 1`;
    if (running) {
      await recordRefusal(deps, ctx, tx, { ...attempted, mode: request.mode, missing: null, code: 'replay_in_progress', replay_id: running.id });
      return { conflict: running.id };
    }
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
    return { replay: await showReplay(deps, { ctx: { ...ctx, tx }, input: { id } }) };
  });
  if ('conflict' in outcome) throw new DomainError('replay_in_progress', `replay ${outcome.conflict} of the same ${request.mode} scope is in progress`);
  return outcome.replay;
}

/**
 * Cancels a queued or running replay as `role` (`org:replay`), the job
 * stopping at its next checkpoint and discarding its work; or drops a
 * finished as-of replay's state now. A refusal — the role, or a replay that
 * has ended — is recorded as `replay.denied` before it is answered.
 */
export async function cancelReplay(deps: ReplayDeps, { ctx, input }: VerbCall<{ id: string; role: Role; reason?: string | null }>): Promise<Replay> {
  const attempted = { action: 'cancel' as const, role: input.role, reason: input.reason?.slice(0, 1000) ?? null, replay_id: input.id };
  if (!roleHolds(input.role, 'org:replay')) {
    const named = await findReplay(readerOf(deps.sql, ctx.tx), ctx.tenant, input.id);
    return deny(deps, ctx, { ...attempted, mode: named?.mode ?? '', missing: 'org:replay', code: 'forbidden' });
  }
  const outcome = await withTransaction(deps.sql, ctx.tx, async (tx) => {
    const replay = await getReplay(tx.sql, ctx.tenant, input.id, { lock: true });
    if (isActive(replay.status)) {
      await emitSystem(deps.emit, ctx, tx, {
        type: 'replay.cancelled',
        subject: `replay:${replay.id}`,
        payload: { replay_id: replay.id, reason: input.reason ?? null, at: nowOf(deps) },
        dedupe_key: `replay:${replay.id}:cancelled`,
      });
      return { step: 'cancelled' as const };
    }
    if (replay.mode === 'as_of' && replay.status === 'succeeded' && !replay.dropped_at) return { step: 'dropping' as const };
    await recordRefusal(deps, ctx, tx, { ...attempted, mode: replay.mode, missing: null, code: 'invalid_transition' });
    return { step: 'refused' as const, status: replay.status };
  });
  if (outcome.step === 'dropping') await dropReplayState(deps, { ctx, input: { id: input.id } });
  if (outcome.step === 'refused') throw new DomainError('invalid_transition', `replay ${input.id} is ${outcome.status}; nothing to cancel`);
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
