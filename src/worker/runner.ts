/**
 * The graphile-worker runner. Its task list is the seam where handler and
 * directive tasks (`handle_signal`, `execute_directive`) are added; payloads
 * are parsed with zod on arrival.
 */
import { Logger as GraphileLogger, run, type Runner, type TaskList } from 'graphile-worker';
import type { Logger } from 'pino';

export function graphileLogger(logger: Logger): GraphileLogger {
  return new GraphileLogger((scope) => (level, message, meta) => {
    const method = level === 'error' ? 'error' : level === 'warning' ? 'warn' : level === 'info' ? 'info' : 'debug';
    logger[method]({ worker: scope, ...(meta ?? {}) }, message);
  });
}

export const taskList: TaskList = {};

export async function startWorker(options: { databaseUrl: string; logger: Logger; concurrency?: number }): Promise<Runner> {
  return run({
    connectionString: options.databaseUrl,
    concurrency: options.concurrency ?? 4,
    taskList,
    logger: graphileLogger(options.logger),
    noHandleSignals: true,
    pollInterval: 2000,
    // No cron items yet; naming none stops the runner looking for a crontab file.
    parsedCronItems: [],
  });
}
