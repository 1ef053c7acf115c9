/**
 * The worker process: graphile-worker running signalbus's tasks, the
 * dispatcher that fans the log out into handler jobs, and the liveness
 * heartbeat and sweeper. Task payloads are parsed with zod on arrival —
 * stored jobs can predate the code — and a malformed payload is recorded
 * and completed, never retried.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { Logger as GraphileLogger, run, type Runner, type Task, type WorkerEvents } from 'graphile-worker';
import type { Logger } from 'pino';
import type { Tracer } from '@opentelemetry/api';
import type { Bus } from '../bus.ts';
import type { Sql } from '../db/client.ts';
import type { LogNotifier } from '../signals/log-notifier.ts';
import type { TenantDirectory } from '../tenancy/directory.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { newId } from '../core/ids.ts';
import { withTransaction } from '../db/transaction.ts';
import { DROP_REPLAY_STATE, EXECUTE_DIRECTIVE, EXPIRE_DIRECTIVE, HANDLE_SIGNAL, parseTaskPayload, RUN_INSTALLATION, RUN_REPLAY, type TaskName, type TaskPayloads } from '../core/jobs.ts';
import { executeDirective, type CallSlots } from '../directives/execute.ts';
import { emitSystem } from '../signals/system.ts';
import { expireDirective } from '../directives/transitions.ts';
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import { createDispatcher, type Dispatcher } from '../handlers/dispatcher.ts';
import { runHandleSignal } from '../handlers/runtime.ts';
import { runReplay } from '../replay/run.ts';
import { dropReplayState } from '../replay/as-of.ts';
import { runInstallationJob } from '../packages/installation-job.ts';
import { inSpan } from '../telemetry/tracing.ts';
import type { Tenant } from '../core/tenant.ts';
import { startLiveness, type Liveness } from './liveness.ts';
import pLimit from 'p-limit';
import pg from 'pg';
import { z } from 'zod';

/**
 * The worker's pool is smaller than its concurrency on purpose: tasks do their
 * database work on signalbus's own pools, graphile-worker's clients only fetch
 * and complete jobs (in batches). Its warning about that is not for the reader.
 */
const POOL_SIZE_WARNING = /^WARNING: having maxPoolSize \(\d+\) smaller than concurrency/;

export function graphileLogger(logger: Logger): GraphileLogger {
  return new GraphileLogger((scope) => (level, message, meta) => {
    const method =
      level === 'error' ? 'error' : level === 'warning' && !POOL_SIZE_WARNING.test(message) ? 'warn' : level === 'info' ? 'info' : 'debug';
    logger[method]({ worker: scope, ...(meta ?? {}) }, message);
  });
}

/** What the worker process uses, built by the composition root (`src/app.ts`). */
export interface WorkerDeps {
  /** The liveness heartbeat's, the dispatcher's and the tasks' own statements. */
  sql: Sql;
  logger: Logger;
  tenants: Pick<TenantDirectory, 'find'>;
  /** The dispatcher wakes on the log's commits. */
  notifier: Pick<LogNotifier, 'subscribeAll' | 'subscribeInstallations'>;
  bus: Bus;
  metrics?: Pick<Metrics, 'jobLatency'>;
  tracer?: Tracer;
}

/** graphile-worker's task list, one task per name in `src/core/jobs.ts`. */
export type SignalbusTaskList = { [K in TaskName]: Task<K> };

export function createTaskList(deps: WorkerDeps, { callSlots }: { callSlots?: CallSlots } = {}): SignalbusTaskList {
  const { bus } = deps;
  const tenantOf = async (orgId: string): Promise<Tenant | undefined> => deps.tenants.find(orgId);

  /** Wraps a task: parse, resolve the tenant, one span and one log line per job. */
  const task =
    <K extends TaskName>(
      name: K,
      body: (tenant: Tenant, payload: TaskPayloads[K]) => Promise<void>,
      onMalformed?: (raw: unknown) => Promise<void>,
    ): Task<K> =>
    // The payload is typed by the task list, but it is parsed all the same: a stored job can predate the code.
    async (raw: unknown, helpers) => {
      const started = performance.now();
      deps.metrics?.jobLatency(name, Math.max(0, (Date.now() - helpers.job.run_at.getTime()) / 1000));
      const parsed = parseTaskPayload(name, raw);
      if (!parsed.success) {
        deps.logger.error({ task: name, job_id: helpers.job.id, issues: parsed.error.issues.length }, 'malformed job payload; completed without running');
        await onMalformed?.(raw);
        return;
      }
      const tenant = await tenantOf(parsed.data.org_id);
      const traceparent = 'traceparent' in parsed.data ? (parsed.data.traceparent ?? null) : null;
      if (!tenant) {
        deps.logger.warn({ task: name, job_id: helpers.job.id, org: parsed.data.org_id }, 'job for an unknown organization; completed');
        return;
      }
      const run = () => body(tenant, parsed.data);
      let outcome = 'ok';
      try {
        if (deps.tracer) await inSpan(deps.tracer, `job ${name}`, { traceparent, attributes: { 'signalbus.org': tenant.slug, 'signalbus.task': name } }, run);
        else await run();
      } catch (error) {
        outcome = 'error';
        throw error;
      } finally {
        deps.logger.info({ task: name, job_id: helpers.job.id, org: tenant.slug, attempt: helpers.job.attempts, outcome, duration_ms: Math.round(performance.now() - started) }, 'job');
      }
    };

  /** A malformed handle_signal payload that still names its execution is recorded as that execution's final failure. */
  const recordMalformedRun = async (raw: unknown) => {
    const ids = z.object({ org_id: z.string(), execution_id: z.string(), handler: z.string().optional() }).safeParse(raw);
    if (!ids.success) return;
    const tenant = await tenantOf(ids.data.org_id);
    if (!tenant) return;
    const at = new Date().toISOString();
    await withTransaction(deps.sql, undefined, (tx) =>
      emitSystem(bus.emit, { tenant, actor: PLATFORM_ACTOR, source: 'system' }, tx, {
        type: 'execution.failed',
        payload: {
          execution_id: ids.data.execution_id,
          handler: ids.data.handler ?? 'unknown',
          signal_id: null,
          directive_id: null,
          attempt: 1,
          started_at: at,
          finished_at: at,
          duration_ms: 0,
          error: { code: 'invalid_job_payload', message: 'the job payload did not match its schema' },
          final: true,
          retry_at: null,
        },
        dedupe_key: `execution:${ids.data.execution_id}:invalid`,
      }),
    );
  };

  return {
    [HANDLE_SIGNAL]: task(
      HANDLE_SIGNAL,
      (tenant, job) => runHandleSignal(bus.runtime, { tenant, job: { ...job, traceparent: job.traceparent ?? null } }),
      recordMalformedRun,
    ),
    [EXECUTE_DIRECTIVE]: task(EXECUTE_DIRECTIVE, (tenant, payload) =>
      executeDirective(bus.directives, { tenant, directiveId: payload.directive_id, traceparent: payload.traceparent ?? null, attempt: payload.attempt, released: payload.released }, callSlots),
    ),
    [EXPIRE_DIRECTIVE]: task(EXPIRE_DIRECTIVE, async (tenant, job) => {
      await expireDirective(bus.directives, { ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system' }, input: { id: job.directive_id } });
    }),
    [RUN_REPLAY]: task(RUN_REPLAY, (tenant, job) => runReplay(bus.replays, { tenant, replayId: job.replay_id })),
    [DROP_REPLAY_STATE]: task(DROP_REPLAY_STATE, (tenant, job) => dropReplayState(bus.replays, { ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system' }, input: { id: job.replay_id } })),
    [RUN_INSTALLATION]: task(RUN_INSTALLATION, (tenant, job) =>
      runInstallationJob(bus.installations, {
        tenant,
        job,
        onUnexpected: (error) => deps.logger.error({ err: error, installation: job.installation_id, operation: job.operation }, 'installation step failed unexpectedly'),
      }),
    ),
  };
}

/**
 * Executions a worker holds beyond its provider calls: those reading their
 * directives, waiting for a call slot, or recording outcomes. Their database
 * work is group-committed, so more of them make larger groups rather than
 * more statements, and calls go on while earlier outcomes are recorded.
 */
const EXECUTIONS_BEYOND_CALLS = 128;

export interface WorkerOptions {
  databaseUrl: string;
  /** Handler runs and expiries at once. */
  concurrency: number;
  /** Provider calls at once (default: `concurrency`); up to `EXECUTIONS_BEYOND_CALLS` more executions read or record around them. */
  executorConcurrency?: number;
  heartbeatMs: number;
  staleAfterMs: number;
  /** graphile-worker's poll for jobs scheduled later (retries); new jobs arrive by LISTEN. */
  pollIntervalMs?: number;
}

export interface WorkerProcess {
  runners: Runner[];
  dispatcher: Dispatcher;
  liveness: Liveness;
  stop(): Promise<void>;
}

export async function startWorker(deps: WorkerDeps, options: WorkerOptions): Promise<WorkerProcess> {
  const workerIds = new Set<string>();
  // Our own emitter, given to run(): its workers are created before run() returns.
  const events: WorkerEvents = new EventEmitter() as WorkerEvents;
  events.on('worker:create', ({ worker }) => workerIds.add(worker.workerId));
  events.on('worker:release', ({ worker }) => workerIds.delete(worker.workerId));
  // graphile-worker 0.17 locks jobs and queues with the pool's id, not a
  // worker's: without its heartbeat the sweeper takes any job held longer
  // than staleAfterMs on this live process for a dead one's, and frees it.
  events.on('pool:create', ({ workerPool }) => workerIds.add(workerPool.id));
  events.on('pool:release', ({ workerPool }) => workerIds.delete(workerPool.id));
  // Our own pool rather than one graphile-worker makes: on release it drops
  // its error listeners without waiting for its clients to close, so the
  // database shutting down next raised an unhandled pool error. This one keeps
  // its listeners and is ended, awaited, after the runner stops.
  const executorConcurrency = options.executorConcurrency ?? options.concurrency;
  const pgPool = new pg.Pool({ connectionString: options.databaseUrl, max: Math.max(10, options.concurrency + 4) });
  const onPoolError = (error: Error) => deps.logger.warn({ err: error }, 'graphile-worker database client failed');
  pgPool.on('error', onPoolError);
  pgPool.on('connect', (client) => client.on('error', onPoolError));
  const tasks = createTaskList(deps, { callSlots: pLimit(executorConcurrency) });
  const executionsInFlight = executorConcurrency + EXECUTIONS_BEYOND_CALLS;
  const { [EXECUTE_DIRECTIVE]: executeTask, ...otherTasks } = tasks;
  const common = {
    events,
    pgPool,
    concurrency: options.concurrency,
    logger: graphileLogger(deps.logger),
    noHandleSignals: true,
    pollInterval: options.pollIntervalMs ?? 1000,
    // No cron items; naming none stops the runner looking for a crontab file.
    parsedCronItems: [],
  };
  const runners: Runner[] = [];
  try {
    // Handler runs, expiries: one job fetched per worker. (No localQueue: on
    // 0.17 its batch fetch can run two jobs of one named queue at once, which
    // would break ordered handlers.) Finished jobs of one event-loop turn are
    // completed in one statement.
    runners.push(await run({ ...common, taskList: otherTasks, preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } } }));
    // Directive executions use no named queue, so their runner fetches jobs
    // in batches: under load one statement locks the next batch instead of
    // one round trip per job, and concurrent executions group-commit their
    // claims and outcomes. A killed process's batch is freed by the sweeper
    // like any job it held.
    runners.push(
      await run({
        ...common,
        concurrency: executionsInFlight,
        taskList: { [EXECUTE_DIRECTIVE]: executeTask },
        preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0, localQueue: { size: executionsInFlight } } },
      }),
    );
  } catch (error) {
    await Promise.all(runners.map((runner) => runner.stop()));
    await pgPool.end();
    throw error;
  }
  const liveness = await startLiveness({
    sql: deps.sql,
    pgPool,
    logger: deps.logger,
    processId: `${hostname()}:${process.pid}:${newId('request').slice(4)}`,
    workerIds: () => [...workerIds],
    heartbeatMs: options.heartbeatMs,
    staleAfterMs: options.staleAfterMs,
  });
  const dispatcher = createDispatcher({ sql: deps.sql, handlers: deps.bus.handlers, tenants: deps.tenants, notifier: deps.notifier, logger: deps.logger });
  await dispatcher.start();

  return {
    runners,
    dispatcher,
    liveness,
    async stop() {
      await dispatcher.stop();
      await Promise.all(runners.map((each) => each.stop()));
      await liveness.stop();
      await pgPool.end();
    },
  };
}
