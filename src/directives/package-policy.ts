/**
 * A package's default policy rules apply to the directives its installations
 * propose (docs/packages.md, "Package policies"): the org's rules plus the
 * package's `<package>.<id>` rules, less any the org overrides by writing a
 * rule of the same id. The package side says which rules those are
 * (`DirectiveDeps.packagePolicy`); this module combines and caches them.
 */
import type { Queryable } from '../db/client.ts';
import type { Tx } from '../db/transaction.ts';
import type { Tenant } from '../core/tenant.ts';
import { compilePolicy } from '../policy/compile.ts';
import type { PolicyRule } from '../policy/model.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import type { StoredPolicy } from './policy-store.ts';

export interface PackagePolicy {
  /** Names the rules for the cache: `<package>@<version>`. */
  key: string;
  /** As policy CEL sees it: `{id, package, version, config}`. */
  installation: Record<string, unknown>;
  rules: PolicyRule[];
}

/** The package policy of a live (or installing) installation; null for none. */
export type PackagePolicyLookup = (db: Queryable, tenant: Tenant, installationId: string) => Promise<PackagePolicy | null>;

const combined = new Map<string, StoredPolicy>();

/** The policy a directive proposed under `ctx` is decided by, and the installation its CEL sees. */
export async function scopePolicy(
  lookup: PackagePolicyLookup | undefined,
  tx: Tx,
  ctx: VerbContext,
  policy: StoredPolicy,
): Promise<{ policy: StoredPolicy; installation: Record<string, unknown> | null }> {
  if (!ctx.installationId || !lookup) return { policy, installation: null };
  const found = await lookup(tx.sql, ctx.tenant, ctx.installationId);
  if (!found) return { policy, installation: null };
  if (found.rules.length === 0) return { policy, installation: found.installation };
  const cacheKey = `${ctx.tenant.id}:${policy.version}:${policy.updated_at ?? ''}:${found.key}`;
  let scoped = combined.get(cacheKey);
  if (!scoped) {
    const own = policy.compiled.document;
    const overridden = new Set(own.rules.map((rule) => rule.id));
    const rules = [...own.rules, ...found.rules.filter((rule) => !overridden.has(rule.id))];
    scoped = { ...policy, compiled: compilePolicy({ rules, guards: own.guards }, { stored: true }) };
    if (combined.size > 10_000) combined.clear();
    combined.set(cacheKey, scoped);
  }
  return { policy: scoped, installation: found.installation };
}
