/**
 * `start`, `serve` and `worker`: run the HTTP API and/or the worker until
 * SIGINT/SIGTERM, then stop in dependency order — stop accepting requests,
 * drain the worker, close the pool, and only then stop an embedded database
 * this process started.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ServerType } from '@hono/node-server';
import { serverLimits, startHttpServer } from '../http/server.ts';
import type { Logger } from 'pino';
import { createApp, type SignalbusApp } from '../app.ts';
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import { createApiKey } from '../auth/api-keys.ts';
import type { Config } from '../config.ts';
import { createLogger } from '../telemetry/logger.ts';
import { startWorker, type WorkerProcess } from '../worker/runner.ts';
import { resolveDatabase } from './database.ts';
import { resolveMasterKeys } from './master-keys.ts';
import { migrateEverything } from './migrate.ts';

interface StartOptions {
  http: boolean;
  worker: boolean;
  /** Create and print a platform-admin key on the embedded database's first run. */
  firstRunKey: boolean;
}

export async function runStart(config: Config, options: StartOptions): Promise<number> {
  const logger = createLogger(config.LOG_LEVEL);
  const database = await resolveDatabase(config, (message) => logger.info(message));
  let app: SignalbusApp | undefined;
  let server: ServerType | undefined;
  let worker: WorkerProcess | undefined;

  const stop = async () => {
    if (server) {
      const closing = new Promise((resolve) => server!.close(resolve));
      // Event streams never end by themselves; clients resume with Last-Event-ID.
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await closing;
    }
    await worker?.stop().catch((error: unknown) => logger.warn({ err: error }, 'worker stop failed'));
    await app?.close();
    await database.stop();
  };

  try {
    // `start` is the one-command path: it migrates. Deployed `serve`/`worker`
    // processes leave that to the release command (`signalbus migrate`).
    if (options.firstRunKey || database.embedded) await migrateEverything(database.url, logger);
    const masterKeys = await resolveMasterKeys(config, database);
    app = await createApp(config, { databaseUrl: database.url, logger, masterKeys });
    const adminKey = options.firstRunKey && database.embedded ? await embeddedAdminKey(app, config) : undefined;
    if (options.worker) {
      worker = await startWorker(app.worker, {
        databaseUrl: database.url,
        concurrency: config.SIGNALBUS_WORKER_CONCURRENCY,
        executorConcurrency: config.SIGNALBUS_EXECUTOR_CONCURRENCY,
        heartbeatMs: config.SIGNALBUS_WORKER_HEARTBEAT_SECONDS * 1000,
        staleAfterMs: config.SIGNALBUS_WORKER_STALE_SECONDS * 1000,
      });
    }
    if (options.http) {
      const listening = await listen(app, config, logger);
      server = listening.server;
      announce(listening.url, adminKey, database.pgData);
    }
  } catch (error) {
    await stop();
    throw error;
  }

  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'shutting down');
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  await stop();
  logger.info('stopped');
  return 0;
}

async function listen(app: SignalbusApp, config: Config, logger: Logger): Promise<{ server: ServerType; url: string }> {
  const server = await startHttpServer(app.http.fetch, { hostname: config.HOST, port: config.PORT, limits: serverLimits(config) });
  const address = server.address();
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST;
  const url = `http://${host}:${typeof address === 'object' && address ? address.port : config.PORT}`;
  logger.info({ url }, 'listening');
  return { server, url };
}

/**
 * The embedded database's platform-admin key: created on first run, kept in
 * the data dir (mode 0600) and shown again on later runs so a newcomer never
 * has to dig for it.
 */
async function embeddedAdminKey(app: SignalbusApp, config: Config): Promise<{ secret: string; file: string }> {
  const file = path.join(path.resolve(config.SIGNALBUS_DATA_DIR), 'platform-admin-key');
  const saved = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (saved && (await app.deps.authenticator.authenticate(saved))?.role === 'platform_admin') return { secret: saved, file };
  const { secret } = await createApiKey(app.deps, {
    tenant: null,
    input: { name: 'embedded platform admin', role: 'platform_admin', actor: { type: 'human', id: 'platform-admin' } },
    by: PLATFORM_ACTOR,
  });
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return { secret, file };
}

function announce(url: string, adminKey: { secret: string; file: string } | undefined, pgData: string | undefined) {
  const lines = [
    '',
    `signalbus is running${pgData ? ' on the embedded PostgreSQL' : ''}`,
    `  API:                 ${url}/v1`,
    `  Console:             ${url}/console`,
    `  Docs:                ${url}/docs`,
    `  OpenAPI:             ${url}/openapi.json`,
  ];
  if (pgData) lines.push(`  PostgreSQL data:     ${pgData}`);
  if (adminKey) lines.push(`  platform admin key:  ${adminKey.secret}`, `  (kept in ${adminKey.file})`);
  lines.push('  Ctrl-C stops everything.', '');
  process.stdout.write(`${lines.join('\n')}\n`);
}
