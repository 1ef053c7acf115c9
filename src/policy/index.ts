/**
 * policy — the pure policy core: validating and compiling a tenant's policy
 * document (rules with CEL conditions, plus guards) and deciding a directive.
 * No clock, no ids, no I/O: usage counters arrive as arguments, so a decision
 * replays identically. Counting usage and locking against concurrent
 * proposals is the database side's job and lives with directives.
 */
export {
  KindGlob,
  Effect,
  PolicyRule,
  RateLimitGuard,
  BudgetGuard,
  ListGuard,
  PolicyGuards,
  PolicyDocument,
  type DecisionInput,
  type GuardUsage,
  type GuardResult,
  type Decision,
} from './model.ts';
export { compilePolicy, EMPTY_POLICY, type CompiledPolicy } from './compile.ts';
export { decide, matchesKind, applicableGuards, NO_RULE_REASON } from './evaluate.ts';
