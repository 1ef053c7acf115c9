/**
 * Looks organizations up by id or slug. Found orgs are cached briefly (they
 * change rarely); misses are not cached, so an org created by another process
 * is visible at once. An org still being imported is not found: no route,
 * stream, dispatcher or worker sees it until its import makes it live.
 */
import { isId } from '../core/ids.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { SLUG_PATTERN, type Organization } from './tenant.ts';

export interface TenantDirectory {
  find(idOrSlug: string): Promise<Organization | undefined>;
  forget(tenant: Tenant): void;
}

/** Reads one organization by id or slug. */
export async function findTenant(db: Queryable, by: 'id' | 'slug', value: string): Promise<Organization | undefined> {
  const [row] = await db<Organization[]>`
    select id, slug, name, schema_name as schema, status, created_at as "createdAt"
      from public.organizations where ${db(by)} = ${value}`;
  return row;
}

export function createTenantDirectory(deps: { sql: Sql }, { ttlMs = 30_000 } = {}): TenantDirectory {
  const cache = new Map<string, { tenant: Organization; expiresAt: number }>();
  return {
    async find(idOrSlug) {
      const by = isId('org', idOrSlug) ? 'id' : SLUG_PATTERN.test(idOrSlug) ? 'slug' : undefined;
      if (!by) return undefined;
      // Ids and slugs are cached apart: a slug may have an org id's shape, and
      // must never answer a lookup of that id (another tenant's path).
      const hit = cache.get(`${by}:${idOrSlug}`);
      if (hit && hit.expiresAt > Date.now()) return hit.tenant;
      const tenant = await findTenant(deps.sql, by, idOrSlug);
      if (!tenant || tenant.status === 'importing') return undefined;
      if (cache.size > 10_000) cache.clear();
      const expiresAt = Date.now() + ttlMs;
      cache.set(`id:${tenant.id}`, { tenant, expiresAt });
      cache.set(`slug:${tenant.slug}`, { tenant, expiresAt });
      return tenant;
    },
    forget(tenant) {
      cache.delete(`id:${tenant.id}`);
      cache.delete(`slug:${tenant.slug}`);
    },
  };
}
