/**
 * tenancy — organizations, their `org_<slug>` schemas and tenant migrations.
 * Owns `public.organizations` and `public.tenant_migrations`. Provisioning is
 * one transaction; migrating all tenants runs in bounded batches and goes on
 * past a failing tenant.
 */
export { provisionOrg, CreateOrgInput } from './provision.ts';
export { createTenantDirectory, findTenant, type TenantDirectory } from './directory.ts';
export { loadTenantMigrations, migrateAllTenants, migrateTenant, type TenantMigration } from './tenant-migrations.ts';
export { Slug, SLUG_PATTERN, schemaNameFor, orgView, type Organization, type OrgView } from './tenant.ts';
export type { Tenant } from '../core/tenant.ts';
