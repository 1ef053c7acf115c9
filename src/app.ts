/**
 * The composition root: builds every dependency from a `Config` and a
 * database URL, and nothing else does. The CLI, the tests and the benchmarks
 * all start here.
 */
import type { Logger } from 'pino';
import { createKeyAuthenticator } from './auth/authenticate.ts';
import type { Config } from './config.ts';
import { createSql } from './db/client.ts';
import { shippedPublicMigrations, TENANT_MIGRATIONS_DIR } from './db/migrate.ts';
import { createHttpApp } from './http/app.ts';
import type { HttpDeps } from './http/context.ts';
import { createProjectionRegistry } from './projections/registry.ts';
import { createAppendBatcher } from './signals/append-batcher.ts';
import { createLogNotifier } from './signals/log-notifier.ts';
import { createTenantDirectory } from './tenancy/directory.ts';
import { loadTenantMigrations } from './tenancy/tenant-migrations.ts';
import { createLogger } from './telemetry/logger.ts';

export interface AppOptions {
  databaseUrl: string;
  logger?: Logger;
  tenantMigrationsDir?: string;
}

export type AppDeps = HttpDeps;

export interface SignalbusApp {
  deps: AppDeps;
  http: ReturnType<typeof createHttpApp>;
  close(): Promise<void>;
}

export async function createApp(config: Config, options: AppOptions): Promise<SignalbusApp> {
  const logger = options.logger ?? createLogger(config.LOG_LEVEL);
  const sql = createSql(options.databaseUrl, { max: config.SIGNALBUS_DB_POOL_SIZE });
  const onError = (error: unknown) => logger.warn({ err: error }, 'background database call failed');
  const tenantMigrations = await loadTenantMigrations(options.tenantMigrationsDir ?? TENANT_MIGRATIONS_DIR);
  const publicMigrations = await shippedPublicMigrations();
  // Appends outside a caller's transaction go through their own small pool:
  // on a few busy connections postgres.js pipelines statements, and a busy
  // backend takes the next one without being woken — waking an idle backend
  // per statement cost more CPU than the statement (measured, bench ingest).
  const writerSql = createSql(options.databaseUrl, { max: config.SIGNALBUS_DB_WRITER_POOL_SIZE, applicationName: 'signalbus-writer' });
  const notifier = createLogNotifier({ sql: writerSql, onError });

  const deps: AppDeps = {
    sql,
    logger,
    tenants: createTenantDirectory({ sql }),
    authenticator: createKeyAuthenticator({ sql, onError }),
    notifier,
    appendBatcher: createAppendBatcher({ sql: writerSql, onCommitted: (orgId) => notifier.committed(orgId) }),
    projections: createProjectionRegistry([]),
    tenantMigrations,
    maxPayloadBytes: config.SIGNALBUS_MAX_PAYLOAD_BYTES,
    maxBatchBytes: config.SIGNALBUS_MAX_BATCH_BYTES,
    heartbeatMs: config.SIGNALBUS_SSE_HEARTBEAT_SECONDS * 1000,
    async readiness() {
      try {
        const [row] = await sql<{ applied: number; worker: boolean; behind: number; failing: number }[]>`
          select (select count(*)::int from drizzle.__drizzle_migrations) as applied,
                 to_regnamespace('graphile_worker') is not null as worker,
                 (select count(*)::int from public.tenant_migrations where version < ${tenantMigrations.length}) as behind,
                 (select count(*)::int from public.tenant_migrations where error is not null) as failing`;
        const migrationsCurrent = row!.applied >= publicMigrations && row!.worker;
        return {
          ready: migrationsCurrent,
          detail: { database: 'ok', migrations: migrationsCurrent ? 'current' : 'pending', tenants_behind: row!.behind, tenants_failing: row!.failing },
        };
      } catch {
        return { ready: false, detail: { database: 'unreachable or not migrated' } };
      }
    },
  };

  return {
    deps,
    http: createHttpApp(deps),
    async close() {
      await notifier.close();
      await Promise.all([sql.end({ timeout: 5 }), writerSql.end({ timeout: 5 })]);
    },
  };
}
