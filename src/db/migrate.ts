/**
 * Migrating the database: drizzle's public-schema migrations, graphile-worker's
 * schema, then every tenant schema. An advisory lock keeps concurrent
 * `signalbus migrate` runs (several releases at once) from interleaving.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import { runMigrations } from 'graphile-worker';
import type { Logger } from 'pino';
import { createDrizzle, createSql } from './client.ts';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const PUBLIC_MIGRATIONS_DIR = path.join(PROJECT_ROOT, 'drizzle');
export const TENANT_MIGRATIONS_DIR = path.join(PROJECT_ROOT, 'tenants');

const MIGRATION_LOCK = 'signalbus:migrate:public';

export async function migratePublicSchema(url: string, logger?: Logger): Promise<void> {
  const sql = createSql(url, { max: 1, applicationName: 'signalbus-migrate' });
  try {
    await sql`select pg_advisory_lock(hashtextextended(${MIGRATION_LOCK}, 0))`;
    try {
      await migrate(createDrizzle(sql), { migrationsFolder: PUBLIC_MIGRATIONS_DIR });
      await runMigrations({ connectionString: url, logger: undefined });
    } finally {
      await sql`select pg_advisory_unlock(hashtextextended(${MIGRATION_LOCK}, 0))`;
    }
    logger?.info('public schema and graphile-worker schema are current');
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Number of public migrations shipped with this build, for readiness. */
export async function shippedPublicMigrations(): Promise<number> {
  return (await readdir(PUBLIC_MIGRATIONS_DIR)).filter((file) => file.endsWith('.sql')).length;
}
