/**
 * The policy document a tenant stores (rules plus built-in guards) and the
 * shapes `decide` consumes and produces. A document is validated whole on
 * write and again on every read, so a stored policy written by older code
 * can never be evaluated half-understood.
 */
import { z } from 'zod';

const KIND_SEGMENT = '[a-z][a-z0-9_]*';
/** `*`, an exact kind, or a kind prefix followed by `.*`, e.g. `gmail.*`. */
export const KIND_GLOB_PATTERN = new RegExp(`^(\\*|${KIND_SEGMENT}(\\.${KIND_SEGMENT})*(\\.\\*)?)$`);

export const KindGlob = z
  .string()
  .max(200)
  .regex(KIND_GLOB_PATTERN, "match must be '*', a directive kind such as 'gmail.send', or a prefix such as 'gmail.*'");
export type KindGlob = z.infer<typeof KindGlob>;

export const Effect = z.enum(['allow', 'deny', 'require_approval']);
export type Effect = z.infer<typeof Effect>;

export const PolicyRule = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'id must be lowercase letters, digits, _ . - (max 63)'),
    match: KindGlob,
    // The CEL length limit (SIGNALBUS_CEL_MAX_LENGTH) refuses with a position;
    // this outer bound is the largest that limit may be set to.
    when: z.string().min(1).max(100_000).optional(),
    effect: Effect,
    reason: z.string().max(500).optional(),
    approval_ttl_seconds: z.number().int().min(60).max(2_592_000).optional(),
  })
  .strict();
export type PolicyRule = z.infer<typeof PolicyRule>;

export const RateLimitGuard = z
  .object({
    match: KindGlob,
    limit: z.number().int().min(0),
    window_seconds: z.number().int().min(1).max(2_678_400),
  })
  .strict();
export type RateLimitGuard = z.infer<typeof RateLimitGuard>;

export const BudgetGuard = z
  .object({
    match: KindGlob,
    monthly_usd: z.number().min(0),
  })
  .strict();
export type BudgetGuard = z.infer<typeof BudgetGuard>;

export const ListGuard = z
  .object({
    match: KindGlob,
    /** Dotted path into params, e.g. `to` or `recipient.email`. */
    param: z.string().min(1).max(200),
    allow: z.array(z.string()).optional(),
    deny: z.array(z.string()).optional(),
    allow_domains: z.array(z.string()).optional(),
    deny_domains: z.array(z.string()).optional(),
  })
  .strict();
export type ListGuard = z.infer<typeof ListGuard>;

/**
 * The org's suppression list: addresses and domains no directive may reach,
 * whatever its kind, checked against the recipients its executor names.
 */
export const SuppressionGuard = z
  .object({
    addresses: z.array(z.string().min(3).max(320)).max(100_000).default([]),
    domains: z.array(z.string().min(1).max(253)).max(10_000).default([]),
  })
  .strict();
export type SuppressionGuard = z.infer<typeof SuppressionGuard>;

export const PolicyGuards = z
  .object({
    rate_limits: z.array(RateLimitGuard).max(100).default([]),
    budgets: z.array(BudgetGuard).max(100).default([]),
    lists: z.array(ListGuard).max(100).default([]),
    suppressions: SuppressionGuard.optional(),
  })
  .strict();
export type PolicyGuards = z.infer<typeof PolicyGuards>;

export const PolicyDocument = z
  .object({
    rules: z.array(PolicyRule).max(500),
    guards: PolicyGuards.default(() => ({ rate_limits: [], budgets: [], lists: [] })),
  })
  .strict()
  .superRefine((document, ctx) => {
    // Duplicate ids would make `Decision.rule` ambiguous in the audit trail.
    const seen = new Set<string>();
    document.rules.forEach((rule, index) => {
      if (seen.has(rule.id)) {
        ctx.addIssue({ code: 'custom', path: ['rules', index, 'id'], message: `duplicate rule id '${rule.id}'` });
      }
      seen.add(rule.id);
    });
  });
export type PolicyDocument = z.infer<typeof PolicyDocument>;

export interface DecisionInput {
  directive: {
    kind: string;
    idempotency_key: string;
    causation_id: string | null;
    installation_id: string | null;
    estimated_cost_usd: number;
    /** Who the directive would reach, as its executor reads the params (the suppression guard's input). */
    recipients?: string[];
  };
  params: Record<string, unknown>;
  actor: { type: string; id: string; display?: string };
  installation: Record<string, unknown> | null;
  org: { id: string; slug: string };
}

/**
 * Counters the caller reads from the database, indexed like the document's
 * guard arrays. Only entries for `applicableGuards(policy, kind)` are read; a
 * missing entry for an applicable guard fails that guard (fail-closed).
 */
export interface GuardUsage {
  /** Directives of matching kinds already proposed within the window, excluding this one. */
  rate_limits: number[];
  /** USD already committed this calendar month by matching kinds. */
  budgets: number[];
}

export interface GuardResult {
  guard: 'rate_limit' | 'budget' | 'list' | 'suppression';
  /** Index into the document's array for this guard type. */
  index: number;
  match: string;
  passed: boolean;
  detail: string;
}

export interface Decision {
  effect: Effect;
  /** Id of the deciding rule, `guard:<type>` when a guard overrode the rules, null for the fail-closed default. */
  rule: string | null;
  reason: string;
  guards: GuardResult[];
  approval_ttl_seconds?: number;
}
