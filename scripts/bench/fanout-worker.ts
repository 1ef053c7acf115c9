/**
 * The worker side of the fan-out benchmark, as its own process: the bench
 * handlers registered, and either the whole worker (dispatcher, tasks) or
 * the dispatcher alone (`BENCH_MODE=dispatch`). Prints `ready` when started.
 */
import { createApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { createDispatcher } from '../../src/handlers/dispatcher.ts';
import { BENCH_HANDLERS } from './fanout-handlers.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { startWorker } from '../../src/worker/runner.ts';

const config = parseConfig(process.env);
const databaseUrl = process.env.DATABASE_URL!;
const handlers = (process.env.BENCH_HANDLERS ?? '').split(',').filter(Boolean).map((name) => BENCH_HANDLERS[name]!);
const app = await createApp(config, { databaseUrl, logger: createLogger(config.LOG_LEVEL), handlers });

let stop: () => Promise<void>;
if (process.env.BENCH_MODE === 'dispatch') {
  const dispatcher = createDispatcher({ sql: app.deps.sql, handlers: app.deps.bus.handlers, tenants: app.deps.tenants, notifier: app.deps.notifier, logger: app.deps.logger });
  await dispatcher.start();
  stop = () => dispatcher.stop();
} else {
  const worker = await startWorker(app.worker, {
    databaseUrl,
    concurrency: config.SIGNALBUS_WORKER_CONCURRENCY,
    executorConcurrency: config.SIGNALBUS_EXECUTOR_CONCURRENCY,
    heartbeatMs: 5000,
    staleAfterMs: 30_000,
  });
  stop = () => worker.stop();
}
console.log('ready');
process.once('SIGTERM', async () => {
  await stop();
  await app.close();
  process.exit(0);
});
