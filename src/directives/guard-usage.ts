/**
 * Counting the usage a policy's guards need, for a proposal. Counts are read
 * under a transaction-scoped advisory lock per guard, held until the proposal
 * commits, so concurrent proposals count one another: a rate limit of N
 * admits exactly N.
 */
import type { Tenant } from '../core/tenant.ts';
import type { Queryable } from '../db/client.ts';
import type { CompiledPolicy } from '../policy/compile.ts';
import { applicableGuards } from '../policy/evaluate.ts';
import type { GuardUsage } from '../policy/model.ts';

/** SQL predicate for a kind glob: '*', 'a.*' or an exact kind. */
function kindMatches(db: Queryable, glob: string) {
  if (glob === '*') return db`true`;
  if (glob.endsWith('.*')) return db`kind like ${`${glob.slice(0, -1).replace(/[\\%_]/g, '\\$&')}%`}`;
  return db`kind = ${glob}`;
}

/**
 * Locks and counts the guards that apply to `kind`. Must run inside the
 * proposal's transaction; the locks are released at its commit, after the
 * new directive is visible to the next counter.
 */
export async function guardUsage(db: Queryable, tenant: Tenant, policy: CompiledPolicy, kind: string): Promise<GuardUsage> {
  const applicable = applicableGuards(policy, kind);
  const { rate_limits: rateGuards, budgets: budgetGuards } = policy.document.guards;
  const lockKeys = [
    ...applicable.rate_limits.map((index) => `rate:${rateGuards[index]!.match}`),
    ...applicable.budgets.map((index) => `budget:${budgetGuards[index]!.match}`),
  ].sort();
  for (const key of new Set(lockKeys)) {
    await db`select pg_advisory_xact_lock(hashtextextended(${`signalbus:guard:${tenant.schema}:${key}`}, 0))`;
  }
  const table = db(`${tenant.schema}.directives`);
  const usage: GuardUsage = { rate_limits: rateGuards.map(() => 0), budgets: budgetGuards.map(() => 0) };
  for (const index of applicable.rate_limits) {
    const guard = rateGuards[index]!;
    // Denied proposals do not consume the allowance.
    const [row] = await db<{ count: number }[]>`
      select count(*)::int as count from ${table}
       where ${kindMatches(db, guard.match)}
         and proposed_at > now() - make_interval(secs => ${guard.window_seconds})
         and decision->>'effect' <> 'deny'`;
    usage.rate_limits[index] = row!.count;
  }
  for (const index of applicable.budgets) {
    const guard = budgetGuards[index]!;
    const [row] = await db<{ spent: number }[]>`
      select coalesce(sum(coalesce(cost_usd, estimated_cost_usd)), 0)::float8 as spent from ${table}
       where ${kindMatches(db, guard.match)}
         and proposed_at >= date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
         and status not in ('rejected', 'cancelled', 'expired')`;
    usage.budgets[index] = row!.spent;
  }
  return usage;
}
