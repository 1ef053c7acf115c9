/**
 * A signalbus worker as a real child process, for tests that SIGKILL it:
 * the dispatcher, the task runner and liveness, with the crash test's
 * handlers, on the database named by DATABASE_URL. Runs until killed.
 * A test fixture, so it reads its own environment.
 */
import { createApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { startWorker } from '../../src/worker/runner.ts';
import { crashHandlers } from './crash-handlers.ts';

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) throw new Error('DATABASE_URL is required');
const config = parseConfig({
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  SIGNALBUS_DB_POOL_SIZE: process.env.SIGNALBUS_DB_POOL_SIZE ?? '6',
});
const logger = createLogger(config.LOG_LEVEL);
const app = await createApp(config, { databaseUrl, handlers: crashHandlers, logger });
await startWorker(app, {
  databaseUrl,
  concurrency: Number(process.env.WORKER_CONCURRENCY ?? 4),
  heartbeatMs: Number(process.env.WORKER_HEARTBEAT_MS ?? 500),
  staleAfterMs: Number(process.env.WORKER_STALE_AFTER_MS ?? 3000),
  pollIntervalMs: 200,
});
// The parent reads this line to know the worker is up.
process.stdout.write(`worker ready ${process.pid}\n`);
setInterval(() => {}, 1 << 30);
