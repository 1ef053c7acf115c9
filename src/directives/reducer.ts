/**
 * The directives reducer: pure over (row, signal). Transitions the verbs
 * would refuse are ignored here rather than thrown, so a fold never stops on
 * a signal the log already holds.
 */
import type { SignalRow } from '../signals/model.ts';
import { systemSignalOf } from '../signals/system.ts';
import { DIRECTIVE_SIGNAL_TYPES, statusAfterDecision, type DirectiveRow, type DirectiveStatus } from './model.ts';

const FROM: Record<string, readonly DirectiveStatus[]> = {
  'directive.approved': ['awaiting_approval'],
  'directive.rejected': ['awaiting_approval'],
  'directive.cancelled': ['awaiting_approval', 'approved'],
  'directive.expired': ['awaiting_approval'],
  'directive.executing': ['approved', 'executing'],
  'directive.succeeded': ['approved', 'executing'],
  'directive.failed': ['approved', 'executing'],
};

const DECIDED = { 'directive.approved': 'approved', 'directive.rejected': 'rejected', 'directive.cancelled': 'cancelled' } as const;

export function directiveIdOf(signal: SignalRow): string | null {
  const id = (signal.payload as { directive_id?: unknown }).directive_id;
  return typeof id === 'string' ? id : null;
}

export function evolveDirective(row: DirectiveRow | null, signal: SignalRow): DirectiveRow | null {
  const event = systemSignalOf(signal, DIRECTIVE_SIGNAL_TYPES);
  if (!event) return row;
  const at = event.recorded_at;
  if (event.type === 'directive.proposed') {
    if (row) return row;
    const proposed = event.payload;
    return {
      id: proposed.directive_id,
      kind: proposed.kind,
      params: proposed.params,
      idempotency_key: proposed.idempotency_key,
      actor: signal.actor,
      causation_id: signal.causation_id,
      correlation_id: signal.correlation_id,
      installation_id: proposed.installation_id,
      status: statusAfterDecision(proposed.decision),
      decision: proposed.decision,
      estimated_cost_usd: proposed.estimated_cost_usd,
      cost_usd: null,
      result: null,
      error: null,
      attempts: 0,
      expires_at: proposed.expires_at,
      decided_by: null,
      decision_reason: null,
      proposed_at: at,
      updated_at: at,
    };
  }
  const allowedFrom = FROM[event.type];
  if (!row || !allowedFrom || !allowedFrom.includes(row.status)) return row;
  switch (event.type) {
    case 'directive.approved':
    case 'directive.rejected':
    case 'directive.cancelled': {
      const { reason } = event.payload;
      return { ...row, status: DECIDED[event.type], decided_by: event.actor, decision_reason: reason ?? null, updated_at: at };
    }
    case 'directive.expired':
      return { ...row, status: 'expired', updated_at: at };
    case 'directive.executing': {
      const { attempt } = event.payload;
      return { ...row, status: 'executing', attempts: attempt, updated_at: at };
    }
    case 'directive.succeeded': {
      const { result, cost_usd, attempt } = event.payload;
      const attempts = Math.max(row.attempts, attempt ?? 0);
      return { ...row, status: 'succeeded', attempts, result: result ?? null, cost_usd: cost_usd ?? null, error: null, updated_at: at };
    }
    case 'directive.failed': {
      const { error, attempt } = event.payload;
      return { ...row, status: 'failed', attempts: Math.max(row.attempts, attempt ?? 0), error, updated_at: at };
    }
    default:
      return row;
  }
}
