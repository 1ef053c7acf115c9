/**
 * Organizations: their slugs, their records and how the API shows them. The
 * schema name is derived from a checked slug, never from unchecked input.
 */
import { z } from 'zod';
import { isId } from '../core/ids.ts';
import type { Tenant } from '../core/tenant.ts';

export type { Tenant };

export const SLUG_PATTERN = /^[a-z][a-z0-9_]{1,38}$/;
export const Slug = z
  .string()
  .regex(SLUG_PATTERN, 'slug must match ^[a-z][a-z0-9_]{1,38}$')
  // Paths take an org id or a slug; a slug shaped like an id could never be addressed by slug.
  .refine((slug) => !isId('org', slug), 'slug must not have the shape of an organization id');

/** An organization's record: the tenant it addresses, and what it is called. */
export interface Organization extends Tenant {
  name: string;
  /** `importing`: not live yet (tenancy/import.ts); the directory does not find it. */
  status: 'active' | 'suspended' | 'importing';
  createdAt: Date;
}

export function schemaNameFor(slug: string): string {
  if (!SLUG_PATTERN.test(slug)) throw new Error(`invalid slug ${JSON.stringify(slug)}`);
  return `org_${slug}`;
}

export interface OrgView {
  id: string;
  slug: string;
  name: string;
  status: string;
  created_at: string;
}

export function orgView(tenant: Organization): OrgView {
  return {
    id: tenant.id,
    slug: tenant.slug,
    name: tenant.name,
    status: tenant.status,
    created_at: tenant.createdAt.toISOString(),
  };
}
