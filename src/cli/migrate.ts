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

export async function runMigrate(config: Config): Promise<number> {
  const logger = createLogger(config.LOG_LEVEL);
  const database = await resolveDatabase(config, (message) => logger.info(message));
  try {
    const report = await migrateEverything(database.url, logger);
    for (const failure of report.failed) {
      process.stderr.write(`tenant ${failure.slug} failed at version ${failure.to + 1}: ${failure.error}\n`);
    }
    return report.failed.length > 0 ? 1 : 0;
  } finally {
    await database.stop();
  }
}
