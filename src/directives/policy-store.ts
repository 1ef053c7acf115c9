/**
 * The policy's database side, kept out of the pure `src/policy`: reading the
 * org's policy row, compiling it (cached per org and version by a compiler
 * the composition root makes), and the update verb, which records
 * `policy.updated` for the policies projection to fold.
 */
import type { Queryable, Sql } from '../db/client.ts';
import { readerOf, withTransaction } from '../db/transaction.ts';
import { emitSystem } from '../signals/system.ts';
import type { NoInput, VerbCall } from '../signals/verb-context.ts';
import type { EmitDeps } from '../signals/emit.ts';
import type { Tenant } from '../core/tenant.ts';
import { compilePolicy, EMPTY_POLICY, type CompiledPolicy } from '../policy/compile.ts';
import type { PolicyUpdated } from './policy-projection.ts';

export interface StoredPolicy {
  version: number;
  compiled: CompiledPolicy;
  updated_at: string | null;
}

export interface PolicyRowData {
  version: number;
  rules: unknown[];
  guards: Record<string, unknown>;
  updated_at: string | null;
}

export interface PolicyCompiler {
  /** The org's policy row, compiled (cached per org and version); null = no policy yet: deny everything. */
  compiled(tenant: Tenant, row: PolicyRowData | null | undefined): StoredPolicy;
}

export function createPolicyCompiler({ maxOrgs = 10_000 } = {}): PolicyCompiler {
  const compiledByTenant = new Map<string, { version: number; compiled: CompiledPolicy }>();
  return {
    compiled(tenant, row) {
      if (!row) return { version: 0, compiled: EMPTY_POLICY, updated_at: null };
      const cached = compiledByTenant.get(tenant.id);
      if (cached && cached.version === row.version) return { version: row.version, compiled: cached.compiled, updated_at: row.updated_at };
      const compiled = compilePolicy({ rules: row.rules, guards: row.guards }, { stored: true });
      if (compiledByTenant.size > maxOrgs) compiledByTenant.clear();
      compiledByTenant.set(tenant.id, { version: row.version, compiled });
      return { version: row.version, compiled, updated_at: row.updated_at };
    },
  };
}

/** SQL for the policy row as JSON, to be read alongside other state in one statement. */
export const POLICY_ROW_JSON = `json_build_object('version', version, 'rules', rules, 'guards', guards,
  'updated_at', to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))`;

/** The org's policy, compiled; version 0 and no rules (deny everything) before the first update. */
export async function loadPolicy(db: Queryable, tenant: Tenant, compiler: PolicyCompiler): Promise<StoredPolicy> {
  const [row] = await db<{ policy: PolicyRowData }[]>`
    select ${db.unsafe(POLICY_ROW_JSON)} as policy from ${db(`${tenant.schema}.policies`)} where id = 'current'`;
  return compiler.compiled(tenant, row?.policy);
}

/** Serializes policy updates of one org, taken before any write so versions follow commit order. */
export async function lockPolicy(db: Queryable, tenant: Tenant): Promise<void> {
  await db`select pg_advisory_xact_lock(hashtextextended(${`signalbus:policy:${tenant.schema}`}, 0))`;
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

/** The org's current policy, read in the caller's transaction when it has one. */
export function showPolicy(deps: { sql: Sql }, { ctx }: VerbCall<NoInput>): Promise<PolicyView> {
  return getPolicy(readerOf(deps.sql, ctx.tx), ctx.tenant);
}

/**
 * Replaces the org's policy: validated and compiled first (422 with CEL
 * positions), then recorded as `policy.updated` with the next version.
 */
export async function updatePolicy(
  deps: EmitDeps,
  { ctx, input }: VerbCall<unknown>,
): Promise<PolicyView> {
  const { document } = compilePolicy(input);
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    await lockPolicy(tx.sql, ctx.tenant);
    const current = await getPolicy(tx.sql, ctx.tenant);
    const version = current.version + 1;
    const payload: PolicyUpdated = { version, rules: document.rules, guards: document.guards };
    await emitSystem(deps, ctx, tx, { type: 'policy.updated', payload, dedupe_key: `policy:${version}` });
    return getPolicy(tx.sql, ctx.tenant);
  });
}
