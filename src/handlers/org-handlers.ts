/**
 * The handlers serving each org: the built-ins, which serve every org, and
 * the rule handlers of the org's active installations. An org's set is
 * loaded on first use and cached; an installation change invalidates it (a
 * notification names the org), and a TTL bounds how long a missed
 * notification can leave it stale.
 */
import type { Tenant } from '../core/tenant.ts';
import { createHandlerRegistry, type Handler, type HandlerRegistry } from './registry.ts';

/** Loads the rule handlers of `tenant`'s active installations. */
export type RuleLoader = (tenant: Tenant) => Promise<Handler[]>;

export interface OrgHandlers {
  /** The handlers every org has. */
  readonly builtins: HandlerRegistry;
  /** Whether rule handlers can exist at all (a loader is configured). */
  readonly rules: boolean;
  /** The org's handlers: built-ins and its installations' rules. */
  forOrg(tenant: Tenant): Promise<HandlerRegistry>;
  /** Forgets the org's rules: its installations changed. */
  invalidate(orgId: string): void;
}

interface Entry {
  registry: Promise<HandlerRegistry>;
  expiresAt: number;
}

export function createOrgHandlers({
  builtins,
  loadRules,
  onConditionError,
  ttlMs = 60_000,
}: {
  builtins: readonly Handler[];
  loadRules?: RuleLoader;
  onConditionError?: (handler: string, message: string) => void;
  ttlMs?: number;
}): OrgHandlers {
  const options = onConditionError ? { onConditionError } : {};
  const builtinRegistry = createHandlerRegistry(builtins, options);
  const cache = new Map<string, Entry>();

  const load = (tenant: Tenant): Entry => {
    const entry: Entry = {
      expiresAt: Date.now() + ttlMs,
      registry: loadRules!(tenant).then((rules) => (rules.length === 0 ? builtinRegistry : createHandlerRegistry([...builtins, ...rules], options))),
    };
    // A failed load is not kept: the next caller tries again.
    entry.registry.catch(() => {
      if (cache.get(tenant.id) === entry) cache.delete(tenant.id);
    });
    if (cache.size >= 100_000) cache.clear();
    cache.set(tenant.id, entry);
    return entry;
  };

  return {
    builtins: builtinRegistry,
    rules: loadRules !== undefined,
    forOrg(tenant) {
      if (!loadRules) return Promise.resolve(builtinRegistry);
      const entry = cache.get(tenant.id);
      return (entry && entry.expiresAt > Date.now() ? entry : load(tenant)).registry;
    },
    invalidate(orgId) {
      cache.delete(orgId);
    },
  };
}
