/**
 * Response and parameter schemas of the fan-out operations — directives,
 * executions, policies, traces; they generate /openapi.json like schemas.ts.
 */
import { z } from '@hono/zod-openapi';
import { Actor } from '../signals/actor.ts';
import { DIRECTIVE_STATUSES } from '../directives/model.ts';
import { EXECUTION_STATUSES } from '../executions/model.ts';
import type { TraceNode } from '../handlers/trace.ts';
import { PolicyDocument, type PolicyRule } from '../policy/model.ts';
import type { PolicyView } from '../directives/policy-store.ts';
import { OrgParams, SignalSchema } from './schemas.ts';

/** `{org}` and `{id}`; ids of the wrong shape are answered 404 by the operation, not 422. */
export const OrgIdParams = OrgParams.extend({ id: z.string().max(64) });

/** `after` and `limit` of every list operation. */
export const PageQuery = z.object({
  after: z.string().max(64).optional().describe('`next_cursor` of the previous page'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

/** Body of approve, reject, cancel and retry; the body itself may be left out. */
export const DecisionReasonInput = z.object({ reason: z.string().min(1).max(1000).optional() });

const Failure = z.object({ code: z.string(), message: z.string() });

export const GuardResultSchema = z
  .object({
    guard: z.enum(['rate_limit', 'budget', 'list', 'suppression']),
    index: z.number().int(),
    match: z.string(),
    passed: z.boolean(),
    detail: z.string(),
  })
  .openapi('GuardResult');

export const DecisionSchema = z
  .object({
    effect: z.enum(['allow', 'deny', 'require_approval']),
    rule: z.string().nullable().describe('The deciding rule, `guard:<type>` when a guard denied, null when no rule matched'),
    reason: z.string(),
    guards: z.array(GuardResultSchema),
    approval_ttl_seconds: z.number().int().optional(),
  })
  .openapi('Decision');

export const DirectiveSchema = z
  .object({
    id: z.string(),
    kind: z.string(),
    params: z.record(z.string(), z.unknown()),
    idempotency_key: z.string(),
    actor: Actor,
    causation_id: z.string().nullable(),
    correlation_id: z.string().nullable(),
    installation_id: z.string().nullable(),
    status: z.enum(DIRECTIVE_STATUSES),
    decision: DecisionSchema,
    estimated_cost_usd: z.number(),
    cost_usd: z.number().nullable(),
    result: z.unknown(),
    error: Failure.nullable(),
    attempts: z.number().int(),
    expires_at: z.string().nullable().describe('When an approval stops being possible'),
    decided_by: Actor.nullable(),
    decision_reason: z.string().nullable(),
    proposed_at: z.string(),
    updated_at: z.string(),
  })
  .openapi('Directive');

export const ExecutionSchema = z
  .object({
    id: z.string(),
    handler: z.string().describe('Handler id, or `executor:<kind>` for a directive run'),
    signal_id: z.string().nullable(),
    directive_id: z.string().nullable(),
    status: z.enum(EXECUTION_STATUSES),
    attempts: z.number().int(),
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
    duration_ms: z.number().int().nullable(),
    error: Failure.nullable(),
    outputs: z.object({ signals: z.array(z.string()), directives: z.array(z.string()) }),
    tokens_in: z.number().int().nullable(),
    tokens_out: z.number().int().nullable(),
    cost_usd: z.number().nullable(),
    updated_at: z.string(),
  })
  .openapi('Execution');

export const SimulationSchema = z
  .object({
    decision: DecisionSchema.shape.effect,
    rule: z.string().nullable(),
    reason: z.string(),
    estimated_cost_usd: z.number(),
    guards: z.array(GuardResultSchema),
  })
  .openapi('Simulation');

export const PolicySchema = z
  .object({
    version: z.number().int().describe('0 before the first update: no rules, everything denied'),
    rules: z.array(PolicyDocument.shape.rules.element),
    guards: z.record(z.string(), z.unknown()),
    updated_at: z.string().nullable(),
  })
  .openapi('Policy');

/** A stored policy as the API answers it: its rules were validated as `PolicyRule`s when written. */
export const policyResponse = (policy: PolicyView) => ({ ...policy, rules: policy.rules as PolicyRule[] });

const TraceDirectiveSchema = z
  .object({
    id: z.string(),
    kind: z.string(),
    status: z.string(),
    decision: DecisionSchema,
    decided_by: Actor.nullable().describe('Who approved or rejected it, when a person did'),
    execution: ExecutionSchema.nullable(),
  })
  .openapi('TraceDirective');

/** Recursive: a handler run's derived signals are trace nodes themselves. */
export const TraceNodeSchema: z.ZodType<TraceNode> = z
  .lazy(() =>
    z.object({
      signal: SignalSchema,
      executions: z.array(
        ExecutionSchema.extend({ signals: z.array(TraceNodeSchema), directives: z.array(TraceDirectiveSchema) }),
      ),
    }),
  )
  .openapi('TraceNode');

export const TraceSchema = z
  .object({ root: TraceNodeSchema, truncated: z.boolean().describe('True when the node or depth cap cut the tree') })
  .openapi('Trace');
