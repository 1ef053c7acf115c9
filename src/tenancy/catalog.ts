/**
 * The organizations with their tenant-migration status, for platform
 * operators: which schema version each org is at, when it was last migrated,
 * and the error that stopped it, if any.
 */
import type { Sql } from '../db/client.ts';

export interface OrgStatus {
  id: string;
  slug: string;
  name: string;
  status: string;
  created_at: string;
  migration: { version: number; latest: number; applied_at: string | null; error: string | null };
}

export interface OrgCatalog {
  /** Organizations by slug, at most `limit` after `afterSlug`. */
  list(input: { afterSlug?: string; limit: number }): Promise<{ data: OrgStatus[]; next_cursor: string | null }>;
}

export function createOrgCatalog(deps: { sql: Sql }, { latest }: { latest: number }): OrgCatalog {
  return {
    async list({ afterSlug = '', limit }) {
      const rows = await deps.sql<(Omit<OrgStatus, 'migration' | 'created_at'> & { created_at: Date; version: number | null; applied_at: Date | null; error: string | null })[]>`
        select o.id, o.slug, o.name, o.status, o.created_at, m.version, m.applied_at, m.error
          from public.organizations o left join public.tenant_migrations m on m.org_id = o.id
         where o.slug > ${afterSlug}
         order by o.slug
         limit ${limit + 1}`;
      const page = rows.slice(0, limit).map(({ version, applied_at, error, created_at, ...org }) => ({
        ...org,
        created_at: created_at.toISOString(),
        migration: { version: version ?? 0, latest, applied_at: applied_at?.toISOString() ?? null, error },
      }));
      return { data: page, next_cursor: rows.length > limit ? page[page.length - 1]!.slug : null };
    },
  };
}
