/**
 * Tenant schema migrations: `tenants/NNNN_name.sql`, applied in order to every
 * `org_<slug>` schema, forward-only. Each file runs in its own transaction
 * under a per-schema advisory lock with `SET LOCAL search_path` (transaction
 * scoped, so nothing leaks onto a pooled connection), and the version in
 * `public.tenant_migrations` advances in that same transaction — a rerun
 * resumes exactly where a failure stopped.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type postgres from 'postgres';
import type { Tenant } from '../core/tenant.ts';
import type { Sql } from '../db/client.ts';
import { quoteIdent, withTransaction } from '../db/transaction.ts';

export interface TenantMigration {
  version: number;
  name: string;
  sql: string;
}

export async function loadTenantMigrations(dir: string): Promise<TenantMigration[]> {
  const files = (await readdir(dir)).filter((file) => file.endsWith('.sql')).sort();
  const migrations: TenantMigration[] = [];
  for (const file of files) {
    const match = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file);
    if (!match) throw new Error(`tenant migration ${file} must be named NNNN_name.sql`);
    const version = Number(match[1]);
    if (version !== migrations.length + 1) {
      throw new Error(`tenant migrations must be numbered 0001, 0002, … without gaps; found ${file}`);
    }
    migrations.push({ version, name: match[2]!, sql: await readFile(path.join(dir, file), 'utf8') });
  }
  return migrations;
}

/**
 * One migration as a script for a transaction, run in the tenant's schema.
 * RESET at the end, not only SET LOCAL: a migration may set search_path for
 * the session itself (pg_dump's preamble does), and that would outlive the
 * transaction.
 */
const migrationScript = (tenant: Tenant, migration: TenantMigration) =>
  `SET LOCAL search_path TO ${quoteIdent(tenant.schema)}, pg_catalog;\n${migration.sql}\n;\nRESET search_path`;

/** Applies one migration inside `tx`, which must be a transaction. */
async function applyMigration(tx: postgres.TransactionSql, tenant: Tenant, migration: TenantMigration) {
  await tx.unsafe(migrationScript(tenant, migration));
  await tx`
    update public.tenant_migrations
       set version = ${migration.version}, applied_at = now(), updated_at = now(),
           error = null, error_version = null, error_at = null
     where org_id = ${tenant.id}`;
}

async function lockTenant(tx: postgres.TransactionSql, tenant: Tenant) {
  await tx`select pg_advisory_xact_lock(hashtextextended(${`signalbus:tenant:${tenant.schema}`}, 0))`;
}

/**
 * Creates the schema and applies every migration inside the caller's
 * transaction — provisioning is all or nothing. The whole script goes as one
 * simple query: a new schema needs no step-by-step versions, and fifty round
 * trips per org were most of an org's creation time.
 */
export async function createTenantSchema(
  tx: postgres.TransactionSql,
  tenant: Tenant,
  migrations: TenantMigration[],
): Promise<void> {
  await lockTenant(tx, tenant);
  const script = [`CREATE SCHEMA ${quoteIdent(tenant.schema)}`, ...migrations.map((migration) => migrationScript(tenant, migration))];
  await tx.unsafe(script.join(';\n'));
  await tx`
    insert into public.tenant_migrations (org_id, schema_name, version, applied_at)
    values (${tenant.id}, ${tenant.schema}, ${migrations.at(-1)?.version ?? 0}, now())`;
}

export interface TenantMigrationResult {
  slug: string;
  from: number;
  to: number;
  error?: string;
}

/** Brings one tenant up to date, one transaction per migration; records a failure and rethrows it. */
export async function migrateTenant(
  sql: Sql,
  tenant: Tenant,
  migrations: TenantMigration[],
): Promise<TenantMigrationResult> {
  let from: number | undefined;
  let current = 0;
  for (const migration of migrations) {
    try {
      const applied = await withTransaction(sql, undefined, async ({ sql: tx }) => {
        await lockTenant(tx, tenant);
        const [row] = await tx`select version from public.tenant_migrations where org_id = ${tenant.id}`;
        const version = (row?.version as number | undefined) ?? 0;
        from ??= version;
        current = version;
        if (version >= migration.version) return false;
        await applyMigration(tx, tenant, migration);
        return true;
      });
      if (applied) current = migration.version;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await sql`
        update public.tenant_migrations
           set error = ${message}, error_version = ${migration.version}, error_at = now(), updated_at = now()
         where org_id = ${tenant.id}`;
      return { slug: tenant.slug, from: from ?? current, to: current, error: message };
    }
  }
  return { slug: tenant.slug, from: from ?? current, to: current };
}

export interface MigrateAllReport {
  latest: number;
  migrated: TenantMigrationResult[];
  failed: TenantMigrationResult[];
}

/**
 * Migrates every tenant that is behind, `batchSize` at a time with at most
 * `concurrency` in flight. A failing tenant is recorded and skipped; the rest
 * continue. Tenants already current are not touched, so a rerun resumes.
 */
export async function migrateAllTenants(
  sql: Sql,
  migrations: TenantMigration[],
  { concurrency = 4, batchSize = 100, onProgress }: {
    concurrency?: number;
    batchSize?: number;
    onProgress?: (result: TenantMigrationResult) => void;
  } = {},
): Promise<MigrateAllReport> {
  const latest = migrations.length;
  const report: MigrateAllReport = { latest, migrated: [], failed: [] };
  let afterSlug = '';
  for (;;) {
    const batch = await sql<Tenant[]>`
      select o.id, o.slug, o.schema_name as schema
        from public.organizations o
        join public.tenant_migrations m on m.org_id = o.id
       where m.version < ${latest} and o.slug > ${afterSlug}
       order by o.slug
       limit ${batchSize}`;
    if (batch.length === 0) break;
    afterSlug = batch[batch.length - 1]!.slug;
    let next = 0;
    const worker = async () => {
      while (next < batch.length) {
        const tenant = batch[next++]!;
        const result = await migrateTenant(sql, tenant, migrations);
        (result.error ? report.failed : report.migrated).push(result);
        onProgress?.(result);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, batch.length) }, worker));
  }
  return report;
}
