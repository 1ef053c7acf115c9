/**
 * The directive: an intent to cause a side effect, its lifecycle signals and
 * its projected row. Every transition is a `directive.*` signal whose payload
 * names the directive; the row is the fold of those signals.
 */
import { z } from 'zod';
import type { Actor } from '../signals/actor.ts';
import type { Decision } from '../policy/model.ts';
import { EmitSignalInput } from '../signals/model.ts';

export const DIRECTIVE_STATUSES = [
  'awaiting_approval',
  'approved',
  'rejected',
  'cancelled',
  'expired',
  'executing',
  'succeeded',
  'failed',
] as const;
export type DirectiveStatus = (typeof DIRECTIVE_STATUSES)[number];

export const DirectiveKind = z
  .string()
  .max(200)
  .regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/, 'kind must be dotted lowercase segments, e.g. gmail.send');

export const ProposeDirectiveInput = z.object({
  kind: DirectiveKind,
  // Params travel in the `directive.proposed` payload: refused up front when a
  // payload could not hold them, before policy's CEL conversion recurses into
  // them (a hostile depth overflowed the stack there: a 500).
  params: z.record(z.string(), z.unknown()).superRefine((params, ctx) => {
    const stored = EmitSignalInput.shape.payload.safeParse(params);
    if (!stored.success) for (const issue of stored.error.issues) ctx.addIssue({ code: 'custom', message: issue.message });
  }),
  idempotency_key: z.string().min(1).max(256).optional(),
});
export type ProposeDirectiveInput = z.infer<typeof ProposeDirectiveInput>;

export interface DirectiveError {
  code: string;
  message: string;
}

/** The projected row, as stored (timestamps ISO strings). */
export interface DirectiveRow {
  id: string;
  kind: string;
  params: Record<string, unknown>;
  idempotency_key: string;
  actor: Actor;
  causation_id: string | null;
  correlation_id: string | null;
  installation_id: string | null;
  status: DirectiveStatus;
  decision: Decision;
  estimated_cost_usd: number;
  cost_usd: number | null;
  result: unknown;
  error: DirectiveError | null;
  attempts: number;
  expires_at: string | null;
  decided_by: Actor | null;
  decision_reason: string | null;
  proposed_at: string;
  updated_at: string;
}

export const DIRECTIVE_COLUMNS = [
  'id', 'kind', 'params', 'idempotency_key', 'actor', 'causation_id', 'correlation_id', 'installation_id',
  'status', 'decision', 'estimated_cost_usd', 'cost_usd', 'result', 'error', 'attempts', 'expires_at',
  'decided_by', 'decision_reason', 'proposed_at', 'updated_at',
] as const satisfies readonly (keyof DirectiveRow)[];

/** Payloads of the lifecycle signals. */
export interface DirectiveProposed {
  directive_id: string;
  kind: string;
  params: Record<string, unknown>;
  idempotency_key: string;
  installation_id: string | null;
  decision: Decision;
  estimated_cost_usd: number;
  expires_at: string | null;
}
export interface DirectiveDecided {
  directive_id: string;
  reason: string | null;
}
export interface DirectiveExecuting {
  directive_id: string;
  execution_id: string;
  attempt: number;
}
export interface DirectiveSucceeded {
  directive_id: string;
  execution_id: string;
  /** Absent from signals recorded before attempts travelled with outcomes. */
  attempt?: number;
  result: unknown;
  cost_usd: number | null;
}
export interface DirectiveFailed {
  directive_id: string;
  execution_id: string | null;
  attempt?: number;
  error: DirectiveError;
}
export interface DirectiveExpired {
  directive_id: string;
  expired_at: string | null;
}

export const DIRECTIVE_SIGNAL_TYPES = [
  'directive.proposed',
  'directive.approved',
  'directive.rejected',
  'directive.cancelled',
  'directive.expired',
  'directive.executing',
  'directive.succeeded',
  'directive.failed',
] as const;

declare module '../signals/system.ts' {
  interface SystemSignalPayloads {
    'directive.proposed': DirectiveProposed;
    'directive.approved': DirectiveDecided;
    'directive.rejected': DirectiveDecided;
    'directive.cancelled': DirectiveDecided;
    'directive.expired': DirectiveExpired;
    'directive.executing': DirectiveExecuting;
    'directive.succeeded': DirectiveSucceeded;
    'directive.failed': DirectiveFailed;
  }
}

export const statusAfterDecision = (decision: Decision): DirectiveStatus =>
  decision.effect === 'allow' ? 'approved' : decision.effect === 'require_approval' ? 'awaiting_approval' : 'rejected';
