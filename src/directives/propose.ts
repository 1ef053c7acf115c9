/**
 * Proposing a directive — from the API or from a handler — and the policy
 * decision on it, in one transaction: the directive is recorded with its
 * decision, and when allowed its execute job is enqueued in that same
 * transaction; when approval is required its expiry job is.
 */
import { canonicalJson } from '../core/canonical-json.ts';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { deferJobs } from '../db/jobs.ts';
import { withTransaction, type Tx } from '../db/transaction.ts';
import { decide } from '../policy/evaluate.ts';
import { guardUsage } from './guard-usage.ts';
import { scopePolicy } from './package-policy.ts';
import { loadPolicy, POLICY_ROW_JSON, type PolicyRowData, type StoredPolicy } from './policy-store.ts';
import type { Decision } from '../policy/model.ts';
import { EXPIRE_DIRECTIVE } from '../core/jobs.ts';
import { executeJob, nowOf, type DirectiveDeps } from './deps.ts';
import { ProposeDirectiveInput, statusAfterDecision, type DirectiveProposed } from './model.ts';
import { findDirective, type Directive } from './store.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbCall, VerbContext } from '../signals/verb-context.ts';

/** The signal whose handler proposes a directive; absent for API proposals. */
export interface ProposalCause {
  signalId: string;
  correlationId: string | null;
}

function parseInput(deps: DirectiveDeps, input: unknown): ProposeDirectiveInput {
  const parsed = ProposeDirectiveInput.safeParse(input);
  if (!parsed.success) {
    throw new DomainError(
      'validation_failed',
      'the directive is not valid',
      parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
    );
  }
  return { ...parsed.data, params: deps.executors.parseParams(parsed.data.kind, parsed.data.params) as Record<string, unknown> };
}

/** What `policy` would decide for `input` now, with its estimated cost. */
async function evaluate(
  deps: DirectiveDeps,
  tx: Tx,
  ctx: VerbContext,
  input: ProposeDirectiveInput,
  idempotencyKey: string,
  policy: StoredPolicy,
  cause?: ProposalCause | null,
) {
  const executor = deps.executors.require(input.kind);
  const { policy: scoped, installation } = await scopePolicy(deps.packagePolicy, tx, ctx, policy);
  policy = scoped;
  const estimated = executor.estimateCostUsd(input.kind, input.params);
  const usage = await guardUsage(tx.sql, ctx.tenant, policy.compiled, input.kind);
  const decision = decide(
    policy.compiled,
    {
      directive: {
        kind: input.kind,
        idempotency_key: idempotencyKey,
        causation_id: cause?.signalId ?? null,
        installation_id: ctx.installationId ?? null,
        estimated_cost_usd: estimated,
        recipients: executor.recipients?.(input.kind, input.params) ?? [],
      },
      params: input.params,
      actor: ctx.actor,
      installation,
      org: { id: ctx.tenant.id, slug: ctx.tenant.slug },
    },
    usage,
  );
  return { decision, estimated };
}

export interface ProposeResult {
  /** The stored directive; only its id when proposed with `read: false`. */
  directive: Directive;
  created: boolean;
  /** When created: the decision recorded, and the policy's own (they differ when a hold overrode an allow). */
  decision?: Decision;
  policy?: Decision;
}

/**
 * A replay holds the new directives it proposes for a human, whatever the
 * policy allows: an allow becomes require_approval, naming the policy's
 * verdict. A deny stays a deny — holding never loosens the policy.
 */
function held(decision: Decision, reason: string): Decision {
  if (decision.effect !== 'allow') return decision;
  const { approval_ttl_seconds: _ttl, ...rest } = decision;
  return {
    ...rest,
    effect: 'require_approval',
    rule: 'replay.hold',
    reason: `${reason}; the policy would allow it (${decision.rule ?? 'default'}: ${decision.reason})`.slice(0, 1000),
  };
}

const idOnly = (id: string) => ({ id }) as Directive;

/**
 * Proposes a directive. `read: false` answers only its id (handlers need no
 * more), saving the read of the stored row. `hold` (a reason) holds a new
 * directive for approval even where the policy allows it.
 */
export async function proposeDirective(
  deps: DirectiveDeps,
  { ctx, input, cause, read = true, hold }: VerbCall<unknown> & { cause?: ProposalCause | null; read?: boolean; hold?: string },
): Promise<ProposeResult> {
  const proposal = parseInput(deps, input);
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const id = newId('directive');
    const idempotencyKey = proposal.idempotency_key ?? `directive:${id}`;
    // One proposal per key at a time: the second waits, then finds the first.
    // The read below queues behind the lock on the connection: one round trip for both.
    tx.defer(tx.sql`select pg_advisory_xact_lock(hashtextextended(${`signalbus:directive-key:${ctx.tenant.schema}:${idempotencyKey}`}, 0))`);
    // The key's directive and the policy.
    const [state] = await tx.sql<{ existing: { id: string; kind: string; params: unknown } | null; policy: PolicyRowData | null }[]>`
      select (select json_build_object('id', id, 'kind', kind, 'params', params)
                from ${tx.sql(`${ctx.tenant.schema}.directives`)} where idempotency_key = ${idempotencyKey}) as existing,
             (select ${tx.sql.unsafe(POLICY_ROW_JSON)} from ${tx.sql(`${ctx.tenant.schema}.policies`)} where id = 'current') as policy`;
    const existing = state!.existing;
    if (existing) {
      if (existing.kind !== proposal.kind || canonicalJson(existing.params) !== canonicalJson(proposal.params)) {
        throw new DomainError('idempotency_conflict', `idempotency key ${JSON.stringify(idempotencyKey)} was already used for another directive`);
      }
      return { directive: read ? (await findDirective(tx.sql, ctx.tenant, existing.id))! : idOnly(existing.id), created: false };
    }

    const policy = deps.policies.compiled(ctx.tenant, state!.policy);
    const evaluated = await evaluate(deps, tx, ctx, proposal, idempotencyKey, policy, cause);
    const { estimated } = evaluated;
    const decision = hold ? held(evaluated.decision, hold) : evaluated.decision;
    const now = nowOf(deps);
    const status = statusAfterDecision(decision);
    const ttl = decision.approval_ttl_seconds ?? deps.approvalTtlSeconds;
    const expiresAt = status === 'awaiting_approval' ? new Date(now.getTime() + ttl * 1000) : null;
    const payload: DirectiveProposed = {
      directive_id: id,
      kind: proposal.kind,
      params: proposal.params,
      idempotency_key: idempotencyKey,
      installation_id: ctx.installationId ?? null,
      decision,
      estimated_cost_usd: estimated,
      expires_at: expiresAt ? expiresAt.toISOString() : null,
    };
    await emitSystem(deps.emit, ctx, tx, {
      type: 'directive.proposed',
      subject: `directive:${id}`,
      payload,
      dedupe_key: `directive.proposed:${id}`,
      causation_id: cause?.signalId ?? null,
      correlation_id: cause?.correlationId ?? null,
    });
    if (status === 'approved') deferJobs(tx, [executeJob(ctx.tenant.id, id, ctx.traceparent ?? null)]);
    if (expiresAt) {
      deferJobs(tx, [
        { identifier: EXPIRE_DIRECTIVE, payload: { org_id: ctx.tenant.id, directive_id: id }, run_at: expiresAt.toISOString() },
      ]);
    }
    tx.afterCommit(() => deps.onDecision?.(decision.effect));
    return {
      directive: read ? (await findDirective(tx.sql, ctx.tenant, id))! : idOnly(id),
      created: true,
      decision,
      policy: evaluated.decision,
    };
  });
}

export interface Simulation {
  decision: Decision['effect'];
  rule: string | null;
  reason: string;
  guards: Decision['guards'];
  estimated_cost_usd: number;
}

/** The decision a proposal would get now. Rolls back: writes nothing, holds no lock afterwards. */
export async function simulateDirective(
  deps: DirectiveDeps,
  { ctx, input }: VerbCall<unknown>,
): Promise<Simulation> {
  const proposal = parseInput(deps, input);
  let simulation: Simulation | undefined;
  // Its own transaction, never the caller's: it ends by rolling back.
  await withTransaction(deps.sql, undefined, async (tx) => {
    const policy = await loadPolicy(tx.sql, ctx.tenant, deps.policies);
    const { decision, estimated } = await evaluate(deps, tx, ctx, proposal, proposal.idempotency_key ?? 'simulation', policy);
    simulation = { decision: decision.effect, rule: decision.rule, reason: decision.reason, guards: decision.guards, estimated_cost_usd: estimated };
    throw ROLLBACK;
  }).catch((error) => {
    if (error !== ROLLBACK) throw error;
  });
  return simulation!;
}

const ROLLBACK = Symbol('rollback');
