/**
 * `decide`: the pure function from (compiled policy, directive, usage
 * counters) to a decision. Same inputs, same decision — replay depends on it.
 */
import { describeRuntimeError, toCel, type Condition } from './cel.ts';
import { CelBudgetExceeded, celBudget, type CelBudget } from './cel-program.ts';
import type { CompiledPolicy } from './compile.ts';
import { matchesKind } from './glob.ts';
import { evaluateGuards } from './guards.ts';
import type { Decision, DecisionInput, Effect, GuardUsage, PolicyRule } from './model.ts';

export { matchesKind } from './glob.ts';

export const NO_RULE_REASON = 'no rule allows this directive (fail-closed)';

/** Indices of the rate-limit and budget guards covering `kind`; the caller counts usage only for these. */
export function applicableGuards(policy: CompiledPolicy, kind: string): { rate_limits: number[]; budgets: number[] } {
  const covering = (guards: readonly { match: string }[]) =>
    guards.flatMap((guard, index) => (matchesKind(guard.match, kind) ? [index] : []));
  const { rate_limits, budgets } = policy.document.guards;
  return { rate_limits: covering(rate_limits), budgets: covering(budgets) };
}

const STRENGTH: Record<Effect, number> = { allow: 0, require_approval: 1, deny: 2 };

interface RuleMatch {
  rule: PolicyRule;
  /** Set when the condition failed and the rule matched only because it fails closed. */
  failure?: string;
}

/**
 * Decides a directive. Rules matching the kind and whose `when` holds are
 * combined deny > require_approval > allow (the first such rule in order names
 * the decision); no match denies. Every applicable guard is evaluated and
 * reported, and any failure denies — guards override even an allow.
 *
 * All conditions share one CEL budget (steps and wall-clock time).
 * @throws CelBudgetExceeded when they spend it: there is no decision then,
 *   not even a fail-closed one, so the caller answers 422 or fails the run.
 */
export function decide(policy: CompiledPolicy, input: DecisionInput, usage: GuardUsage, budget: CelBudget = celBudget()): Decision {
  const kind = input.directive.kind;
  const context = celContext(policy, input, usage);
  let winner: RuleMatch | undefined;
  const allowFailures: string[] = [];
  policy.document.rules.forEach((rule, index) => {
    if (!matchesKind(rule.match, kind)) return;
    const outcome = testCondition(rule, policy.conditions[index], context, budget, index);
    let match: RuleMatch | undefined;
    if (outcome === true) match = { rule };
    else if (outcome !== false) {
      // A condition that cannot be evaluated must never grant anything, but
      // must still be able to restrict: deny and approval rules count as matching.
      if (rule.effect === 'allow') allowFailures.push(`rule ${rule.id}: ${outcome.failure}`);
      else match = { rule, failure: outcome.failure };
    }
    if (match && (!winner || STRENGTH[rule.effect] > STRENGTH[winner.rule.effect])) winner = match;
  });

  const guards = evaluateGuards(policy.document.guards, input, usage);
  const failed = guards.find((result) => !result.passed);
  if (failed) return { effect: 'deny', rule: `guard:${failed.guard}`, reason: failed.detail, guards };

  if (!winner) {
    const reason =
      allowFailures.length > 0
        ? `${NO_RULE_REASON}; condition failed to evaluate for ${summarize(allowFailures)}`
        : NO_RULE_REASON;
    return { effect: 'deny', rule: null, reason, guards };
  }
  const { rule, failure } = winner;
  const decision: Decision = { effect: rule.effect, rule: rule.id, reason: reasonFor(rule, kind, failure), guards };
  if (rule.effect === 'require_approval' && rule.approval_ttl_seconds !== undefined) {
    decision.approval_ttl_seconds = rule.approval_ttl_seconds;
  }
  return decision;
}

// Up to 500 rules could fail at once; the reason is stored with every decision.
function summarize(failures: string[]): string {
  const shown = failures.slice(0, 3).join('; ');
  return failures.length > 3 ? `${shown}; and ${failures.length - 3} more` : shown;
}

function reasonFor(rule: PolicyRule, kind: string, failure: string | undefined): string {
  const verb = { allow: 'allows', deny: 'denies', require_approval: 'requires approval for' }[rule.effect];
  const reason = rule.reason ?? `rule ${rule.id} ${verb} ${kind}`;
  return failure === undefined ? reason : `${reason} (condition failed to evaluate: ${failure}; matched fail-closed)`;
}

type ConditionOutcome = boolean | { failure: string };

function testCondition(
  rule: PolicyRule,
  condition: Condition | null | undefined,
  context: Record<string, unknown>,
  budget: CelBudget,
  index: number,
): ConditionOutcome {
  if (rule.when === undefined) return true;
  // Only reachable with a hand-built CompiledPolicy; never read it as "no condition".
  if (!condition) return { failure: 'condition was not compiled' };
  try {
    const value = condition(context, budget);
    if (typeof value === 'boolean') return value;
    return { failure: `expected a boolean, got ${celTypeName(value)}` };
  } catch (error) {
    if (error instanceof CelBudgetExceeded) throw error.at(`rules.${index}.when`);
    return { failure: describeRuntimeError(error) };
  }
}

function celTypeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'list';
  const names: Partial<Record<string, string>> = { bigint: 'int', number: 'double', object: 'map' };
  return names[typeof value] ?? typeof value;
}

/** The CEL variables; `usage` lists only the guards that cover this kind. */
function celContext(policy: CompiledPolicy, input: DecisionInput, usage: GuardUsage): Record<string, unknown> {
  const { rate_limits, budgets } = policy.document.guards;
  const applicable = applicableGuards(policy, input.directive.kind);
  // Money stays a JS number (CEL double) even when whole, so
  // `spent_usd + directive.estimated_cost_usd` never mixes int and double.
  // A missing counter is left out, so a rule reading it fails closed.
  return {
    directive: { ...(toCel(input.directive) as object), estimated_cost_usd: input.directive.estimated_cost_usd },
    params: toCel(input.params),
    actor: toCel(input.actor),
    installation: input.installation === null ? null : toCel(input.installation),
    org: toCel(input.org),
    usage: {
      rate_limits: applicable.rate_limits.map((index) => {
        const guard = rate_limits[index]!;
        const count = usage.rate_limits[index];
        return toCel({ ...guard, ...(Number.isSafeInteger(count) ? { count } : {}) });
      }),
      budgets: applicable.budgets.map((index) => {
        const guard = budgets[index]!;
        const spent = usage.budgets[index];
        return {
          match: guard.match,
          monthly_usd: guard.monthly_usd,
          ...(spent !== undefined && Number.isFinite(spent) ? { spent_usd: spent } : {}),
        };
      }),
    },
  };
}
