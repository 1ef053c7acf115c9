/** `signalbus migrate`: public schema, graphile-worker, then every tenant in bounded batches. */
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { createSql } from '../db/client.ts';
import { migratePublicSchema, TENANT_MIGRATIONS_DIR } from '../db/migrate.ts';
import { loadTenantMigrations, migrateAllTenants, type MigrateAllReport } from '../tenancy/tenant-migrations.ts';
import { createLogger } from '../telemetry/logger.ts';
import { resolveDatabase } from './database.ts';

export async function migrateEverything(url: string, logger: Logger, tenantDir = TENANT_MIGRATIONS_DIR): Promise<MigrateAllReport> {
  await migratePublicSchema(url, logger);
  const migrations = await loadTenantMigrations(tenantDir);
  const sql = createSql(url, { max: 4, applicationName: 'signalbus-migrate' });
  try {
    const report = await migrateAllTenants(sql, migrations, {
      onProgress: (result) =>
        result.error
          ? logger.error({ org: result.slug, version: result.to, error: result.error }, 'tenant migration failed')
          : logger.info({ org: result.slug, from: result.from, to: result.to }, 'tenant migrated'),
    });
    logger.info({ latest: report.latest, migrated: report.migrated.length, failed: report.failed.length }, 'tenant migrations done');
    return report;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** `signalbus migrate --status`: each tenant's schema version and last failure, without migrating. */
async function printStatus(url: string, json: boolean): Promise<number> {
  const latest = (await loadTenantMigrations(TENANT_MIGRATIONS_DIR)).length;
  const sql = createSql(url, { max: 1, applicationName: 'signalbus-migrate' });
  try {
    const rows = await sql<{ slug: string; version: number; applied_at: Date | null; error: string | null }[]>`
      select o.slug, m.version, m.applied_at, m.error
        from public.organizations o join public.tenant_migrations m on m.org_id = o.id
       order by o.slug`;
    if (json) {
      process.stdout.write(`${JSON.stringify({ latest, tenants: rows }, null, 2)}\n`);
    } else {
      process.stdout.write(`latest tenant migration: ${latest}\n`);
      for (const row of rows) {
        const state = row.error ? `failed: ${row.error}` : row.version < latest ? 'behind' : 'current';
        process.stdout.write(`${row.slug.padEnd(40)} v${row.version}  ${state}\n`);
      }
    }
    return rows.some((row) => row.error !== null || row.version < latest) ? 1 : 0;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export async function runMigrate(config: Config, options: { status?: boolean; json?: boolean } = {}): Promise<number> {
  const logger = createLogger(config.LOG_LEVEL);
  const database = await resolveDatabase(config, (message) => logger.info(message));
  try {
    if (options.status) return await printStatus(database.url, options.json ?? false);
    const report = await migrateEverything(database.url, logger);
    for (const failure of report.failed) {
      process.stderr.write(`tenant ${failure.slug} failed at version ${failure.to + 1}: ${failure.error}\n`);
    }
    return report.failed.length > 0 ? 1 : 0;
  } finally {
    await database.stop();
  }
}
