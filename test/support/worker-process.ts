/**
 * A signalbus worker as a real child process, for tests that SIGKILL it:
 * the dispatcher, the task runner and liveness, with the crash test's
 * handlers and the built-in executors, on the database named by
 * DATABASE_URL. Runs until killed. A test fixture, so it reads its own
 * environment: the SIGNALBUS_* variables it is given configure it, and
 * CRASH_AFTER_EXECUTE=1 makes it SIGKILL itself right after an executor's
 * first call of a directive returns — after the provider acted, before the
 * outcome is recorded. The first call is marked by a file per directive in
 * CRASH_MARKERS (all processes share it): an attempt number would not tell,
 * as an executor called without a claim does not count a run it died in.
 */
import { openSync, closeSync } from 'node:fs';
import path from 'node:path';
import { createApp } from '../../src/app.ts';
import type { ExecuteRequest } from '../../src/executors/registry.ts';
import { parseConfig } from '../../src/config.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { startWorker } from '../../src/worker/runner.ts';
import { crashHandlers } from './crash-handlers.ts';

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) throw new Error('DATABASE_URL is required');
const given = Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith('SIGNALBUS_')));
const config = parseConfig({
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  SIGNALBUS_DB_POOL_SIZE: '6',
  ...given,
});
const logger = createLogger(config.LOG_LEVEL);
const app = await createApp(config, { databaseUrl, handlers: crashHandlers, logger });
/** True for the first caller of a directive across every worker process: exclusive creation of its marker. */
function firstCall(directiveId: string): boolean {
  const markers = process.env.CRASH_MARKERS;
  if (!markers) throw new Error('CRASH_MARKERS is required with CRASH_AFTER_EXECUTE');
  try {
    closeSync(openSync(path.join(markers, directiveId), 'wx'));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}
if (process.env.CRASH_AFTER_EXECUTE === '1') {
  for (const kind of app.deps.bus.executors.kinds()) {
    const executor = app.deps.bus.executors.require(kind);
    const execute = executor.execute.bind(executor);
    if (Object.hasOwn(executor, 'crashing')) continue;
    Object.assign(executor, {
      crashing: true,
      async execute(request: ExecuteRequest<unknown>) {
        const result = await execute(request);
        if (firstCall(request.directiveId)) process.kill(process.pid, 'SIGKILL');
        return result;
      },
    });
  }
}
if (process.env.WORKER_WAIT_FOR_GO === '1') {
  // Loaded and connected: the parent starts this spare's worker when it needs one.
  process.stdout.write(`worker loaded ${process.pid}\n`);
  await new Promise<void>((resolve) => {
    process.stdin.once('data', () => resolve());
    // The parent died before it needed this spare.
    process.stdin.once('end', () => process.exit(0));
  });
}
await startWorker(app.worker, {
  databaseUrl,
  concurrency: Number(process.env.WORKER_CONCURRENCY ?? 4),
  heartbeatMs: Number(process.env.WORKER_HEARTBEAT_MS ?? 500),
  staleAfterMs: Number(process.env.WORKER_STALE_AFTER_MS ?? 3000),
  pollIntervalMs: 200,
});
// The parent reads this line to know the worker is up.
process.stdout.write(`worker ready ${process.pid}\n`);
setInterval(() => {}, 1 << 30);
