/**
 * The policy's database side: its projection (`policy.updated` signals folded
 * into one row), updating it, loading it compiled, and counting the usage its
 * guards need. Guard counts are read under a transaction-scoped advisory
 * lock per guard, held until the proposal commits, so concurrent proposals
 * count one another: a rate limit of N admits exactly N.
 */
import type { Actor } from '../signals/actor.ts';
import type { Queryable } from '../db/client.ts';
import { withTransaction } from '../db/transaction.ts';
import { emitSystem, type LifecycleContext } from '../signals/system.ts';
import type { EmitDeps } from '../signals/emit.ts';
import { keyedProjection } from '../projections/keyed.ts';
import type { SignalRow } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import { compilePolicy, EMPTY_POLICY, type CompiledPolicy } from './compile.ts';
import { applicableGuards } from './evaluate.ts';
import type { GuardUsage } from './model.ts';

export interface PolicyRow {
  id: 'current';
  version: number;
  rules: unknown[];
  guards: Record<string, unknown>;
  updated_by: Actor;
  updated_at: string;
}

export interface PolicyUpdated {
  version: number;
  rules: unknown[];
  guards: Record<string, unknown>;
}

export function evolvePolicy(row: PolicyRow | null, signal: SignalRow): PolicyRow | null {
  if (signal.type !== 'policy.updated') return row;
  const { version, rules, guards } = signal.payload as unknown as PolicyUpdated;
  // Versions only move forward: a stale update folded late changes nothing.
  if (row && row.version >= version) return row;
  return { id: 'current', version, rules, guards, updated_by: signal.actor, updated_at: signal.recorded_at };
}

export const policiesProjection = keyedProjection<PolicyRow>({
  name: 'policies',
  table: 'policies',
  columns: ['id', 'version', 'rules', 'guards', 'updated_by', 'updated_at'],
  handles: (type) => type === 'policy.updated',
  keyOf: () => 'current',
  evolve: evolvePolicy,
});

export interface StoredPolicy {
  version: number;
  compiled: CompiledPolicy;
  updated_at: string | null;
}

const compiledByTenant = new Map<string, { version: number; compiled: CompiledPolicy }>();

export interface PolicyRowData {
  version: number;
  rules: unknown[];
  guards: Record<string, unknown>;
  updated_at: string | null;
}

/** The org's policy row, compiled (cached per org and version); null = no policy yet: deny everything. */
export function compiledPolicy(tenant: Tenant, row: PolicyRowData | null | undefined): StoredPolicy {
  if (!row) return { version: 0, compiled: EMPTY_POLICY, updated_at: null };
  const cached = compiledByTenant.get(tenant.id);
  if (cached && cached.version === row.version) return { version: row.version, compiled: cached.compiled, updated_at: row.updated_at };
  const compiled = compilePolicy({ rules: row.rules, guards: row.guards });
  if (compiledByTenant.size > 10_000) compiledByTenant.clear();
  compiledByTenant.set(tenant.id, { version: row.version, compiled });
  return { version: row.version, compiled, updated_at: row.updated_at };
}

/** SQL for the policy row as JSON, to be read alongside other state in one statement. */
export const POLICY_ROW_JSON = `json_build_object('version', version, 'rules', rules, 'guards', guards,
  'updated_at', to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))`;

/** The org's policy, compiled; version 0 and no rules (deny everything) before the first update. */
export async function loadPolicy(db: Queryable, tenant: Tenant): Promise<StoredPolicy> {
  const [row] = await db<{ policy: PolicyRowData }[]>`
    select ${db.unsafe(POLICY_ROW_JSON)} as policy from ${db(`${tenant.schema}.policies`)} where id = 'current'`;
  return compiledPolicy(tenant, row?.policy);
}

/** Serializes policy updates of one org, taken before any write so versions follow commit order. */
export async function lockPolicy(db: Queryable, tenant: Tenant): Promise<void> {
  await db`select pg_advisory_xact_lock(hashtextextended(${`signalbus:policy:${tenant.schema}`}, 0))`;
}

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

export interface PolicyView {
  version: number;
  rules: unknown[];
  guards: Record<string, unknown>;
  updated_at: string | null;
}

export async function getPolicy(db: Queryable, tenant: Tenant): Promise<PolicyView> {
  const [row] = await db<PolicyView[]>`
    select version, rules, guards, to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as updated_at
      from ${db(`${tenant.schema}.policies`)} where id = 'current'`;
  return row ?? { version: 0, rules: [], guards: { rate_limits: [], budgets: [], lists: [] }, updated_at: null };
}

/**
 * Replaces the org's policy: validated and compiled first (422 with CEL
 * positions), then recorded as `policy.updated` with the next version.
 */
export async function updatePolicy(
  deps: EmitDeps,
  { ctx, input }: { ctx: LifecycleContext; input: unknown },
): Promise<PolicyView> {
  const { document } = compilePolicy(input);
  return withTransaction(deps.sql, undefined, async (tx) => {
    await lockPolicy(tx.sql, ctx.tenant);
    const current = await getPolicy(tx.sql, ctx.tenant);
    const version = current.version + 1;
    const payload: PolicyUpdated = { version, rules: document.rules, guards: document.guards };
    await emitSystem(deps, ctx, tx, { type: 'policy.updated', payload, dedupe_key: `policy:${version}` });
    return getPolicy(tx.sql, ctx.tenant);
  });
}
