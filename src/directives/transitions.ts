/**
 * Human decisions on a directive — approve, reject, cancel — and expiry.
 * Each locks the directive's row first, so of two concurrent approvals one
 * records `directive.approved` and enqueues the execute job while the other
 * finds the directive already approved (409 invalid_transition). The signal's
 * dedupe key is shared by every decision that ends the wait, so even a
 * second writer that skipped the lock could not record two.
 */
import { DomainError, notFound } from '../core/errors.ts';
import { deferJobs } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import { executeJob, nowOf, type DirectiveDeps } from './deps.ts';
import type { DirectiveStatus } from './model.ts';
import { findDirective, type Directive } from './store.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbCall } from '../signals/verb-context.ts';

export type DirectiveAction = 'approve' | 'reject' | 'cancel';

const RULES: Record<DirectiveAction, { from: readonly DirectiveStatus[]; type: 'directive.approved' | 'directive.rejected' | 'directive.cancelled' }> = {
  approve: { from: ['awaiting_approval'], type: 'directive.approved' },
  reject: { from: ['awaiting_approval'], type: 'directive.rejected' },
  cancel: { from: ['awaiting_approval', 'approved'], type: 'directive.cancelled' },
};

const invalid = (directive: Directive, action: string, why?: string) =>
  new DomainError('invalid_transition', why ?? `cannot ${action} a directive that is ${directive.status}`);

export async function decideDirective(
  deps: DirectiveDeps,
  { ctx, input }: VerbCall<{ id: string; action: DirectiveAction; reason?: string | null }>,
): Promise<Directive> {
  const { id, action, reason } = input;
  const rule = RULES[action];
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const directive = await findDirective(tx.sql, ctx.tenant, id, { lock: true });
    if (!directive) throw notFound('directive');
    if (!rule.from.includes(directive.status)) throw invalid(directive, action);
    if (directive.status === 'approved' && deps.executors.require(directive.kind).claimBeforeCall === false) {
      // Its executor calls without a claim: the call may be under way, unseen.
      throw invalid(directive, action, `cannot cancel an approved ${directive.kind} directive: it may already be executing`);
    }
    const waiting = directive.status === 'awaiting_approval';
    if (waiting && directive.expires_at && new Date(directive.expires_at) <= nowOf(deps)) {
      throw invalid(directive, action, `the approval window closed at ${directive.expires_at}`);
    }
    await emitSystem(deps.emit, ctx, tx, {
      type: rule.type,
      subject: `directive:${id}`,
      payload: { directive_id: id, reason: reason ?? null },
      // Approve, reject, cancel-while-waiting and expiry all end the wait: one key.
      dedupe_key: waiting ? `directive:${id}:decided` : `directive:${id}:${action}`,
      causation_id: null,
      correlation_id: directive.correlation_id,
    });
    if (action === 'approve') deferJobs(tx, [executeJob(ctx.tenant.id, id, ctx.traceparent ?? null)]);
    return (await findDirective(tx.sql, ctx.tenant, id))!;
  });
}

/** The expiry job: ends the wait when nobody decided in time; a no-op otherwise. */
export async function expireDirective(deps: DirectiveDeps, { ctx, input: { id } }: VerbCall<{ id: string }>): Promise<boolean> {
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const directive = await findDirective(tx.sql, ctx.tenant, id, { lock: true });
    if (!directive || directive.status !== 'awaiting_approval') return false;
    if (directive.expires_at && new Date(directive.expires_at) > nowOf(deps)) return false;
    await emitSystem(deps.emit, ctx, tx, {
      type: 'directive.expired',
      subject: `directive:${id}`,
      payload: { directive_id: id, expired_at: directive.expires_at },
      dedupe_key: `directive:${id}:decided`,
      correlation_id: directive.correlation_id,
    });
    return true;
  });
}
