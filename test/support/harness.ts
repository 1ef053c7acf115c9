/**
 * Test harness: a database cloned from the run's template, a signalbus app on
 * it with captured logs, and helpers to create orgs and keys and call the API
 * in process (`app.http.request`) or over a real socket (`listen`).
 */
import type { Executor } from '../../src/executors/registry.ts';
import { generateMasterKeys } from '../../src/secrets/keys.ts';
import type { Handler } from '../../src/handlers/registry.ts';
import type { Projection } from '../../src/projections/registry.ts';
import { startWorker, type WorkerOptions, type WorkerProcess } from '../../src/worker/runner.ts';
import { Writable } from 'node:stream';
import type { ServerType } from '@hono/node-server';
import { serverLimits, startHttpServer } from '../../src/http/server.ts';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import postgres from 'postgres';
import { inject } from 'vitest';
import { createApp, type AppOptions, type SignalbusApp } from '../../src/app.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createApiKey } from '../../src/auth/api-keys.ts';
import type { OrgRole } from '../../src/auth/roles.ts';
import { parseConfig, type Config } from '../../src/config.ts';
import { provisionOrg } from '../../src/tenancy/provision.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { releaseResource, trackResource } from './leak-guard.ts';

let databaseCounter = 0;

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** A fresh database cloned from the migrated template. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = inject('adminUrl');
  const name = `sbt_${inject('runId')}_${process.pid.toString(36)}_${++databaseCounter}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.unsafe(`create database ${name} template ${inject('templateDatabase')}`);
        break;
      } catch (error) {
        // Two files cloning the template at the same instant: try again shortly.
        if (attempt > 20 || (error as { code?: string }).code !== '55006') throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 200));
      }
    }
  } finally {
    await admin.end({ timeout: 5 });
  }
  const database = {
    url: withDatabase(adminUrl, name),
    name,
    async drop() {
      releaseResource(database);
      const dropper = postgres(adminUrl, { max: 1, onnotice: () => {} });
      await dropper.unsafe(`drop database if exists ${name} with (force)`);
      await dropper.end({ timeout: 5 });
    },
  };
  trackResource(database, `database ${name}`);
  return database;
}

/** Test apps hammer one key; a suite about limits sets its own. */
export const NO_RATE_LIMITS = {
  SIGNALBUS_RATE_LIMIT_KEY_PER_S: '0',
  SIGNALBUS_RATE_LIMIT_ORG_PER_S: '0',
  SIGNALBUS_RATE_LIMIT_UNKNOWN_KEY_PER_S: '0',
  SIGNALBUS_RATE_LIMIT_HOOK_PER_S: '0',
};

/** Master keys for test apps: fresh per run, never a fixed key in the repository. */
export const TEST_MASTER_KEYS = generateMasterKeys('test');

export interface TestApp {
  app: SignalbusApp;
  database: TestDatabase;
  config: Config;
  /** Every log line written by the app, parsed. */
  logs: string[];
  platformKey: string;
  request(method: string, path: string, options?: RequestOptions): Promise<TestResponse>;
  createOrg(slug: string, name?: string): Promise<Tenant>;
  createKey(org: Tenant, role: OrgRole, actorId?: string): Promise<string>;
  /**
   * Waits until every transaction running at the call has ended, so what has
   * committed is below the horizon for cursor readers. Other test files share
   * the server, and their open transactions hold the horizon back a moment.
   */
  settle(): Promise<void>;
  /** Starts a worker process in-process (dispatcher, tasks, liveness); stopped by `close`. */
  startWorker(options?: Partial<WorkerOptions>): Promise<WorkerProcess>;
  close(): Promise<void>;
}

export interface RequestOptions {
  key?: string;
  body?: unknown;
  /** Sent as is, for malformed bodies. */
  rawBody?: string;
  headers?: Record<string, string>;
}

export interface TestResponse {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

export async function createTestApp(
  {
    env = {},
    tenantMigrationsDir,
    spanExporter,
    handlers,
    executors,
    projections,
    now,
    beforeInstallationStep,
  }: {
    env?: Record<string, string>;
    tenantMigrationsDir?: string;
    spanExporter?: SpanExporter;
    handlers?: Handler[];
    executors?: Executor<any>[];
    projections?: Projection[];
    now?: () => Date;
    beforeInstallationStep?: AppOptions['beforeInstallationStep'];
  } = {},
): Promise<TestApp> {
  const database = await createTestDatabase();
  // Suites disable or uninstall installations and expect their hooks closed at once.
  const config = parseConfig({ LOG_LEVEL: 'info', SIGNALBUS_DB_POOL_SIZE: '8', SIGNALBUS_HOOK_CACHE_MS: '0', SIGNALBUS_ENCRYPTION_KEYS: TEST_MASTER_KEYS, ...NO_RATE_LIMITS, ...env });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...chunk.toString().split('\n').filter(Boolean));
      callback();
    },
  });
  const app = await createApp(config, {
    databaseUrl: database.url,
    logger: createLogger(config.LOG_LEVEL, sink),
    ...(tenantMigrationsDir ? { tenantMigrationsDir } : {}),
    ...(spanExporter ? { spanExporter } : {}),
    ...(handlers ? { handlers } : {}),
    ...(executors ? { executors } : {}),
    ...(projections ? { projections } : {}),
    ...(now ? { now } : {}),
    ...(beforeInstallationStep ? { beforeInstallationStep } : {}),
  });
  const workers: WorkerProcess[] = [];
  const { secret: platformKey } = await createApiKey(app.deps, {
    tenant: null,
    input: { name: 'test platform admin', role: 'platform_admin', actor: { type: 'human', id: 'root@signalbus.test' } },
    by: PLATFORM_ACTOR,
  });

  const testApp: TestApp = {
    app,
    database,
    config,
    logs,
    platformKey,
    async request(method, path, options = {}) {
      const headers: Record<string, string> = { ...options.headers };
      if (options.key) headers.authorization = `Bearer ${options.key}`;
      let body: string | undefined;
      if (options.rawBody !== undefined) body = options.rawBody;
      else if (options.body !== undefined) body = JSON.stringify(options.body);
      if (body !== undefined && !Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')) {
        headers['content-type'] = 'application/json';
      }
      const response = await app.http.request(path, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await response.text();
      let parsed: unknown = undefined;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      return { status: response.status, headers: response.headers, body: parsed, text };
    },
    async createOrg(slug, name = slug) {
      return (await provisionOrg(app.deps, { input: { slug, name } })).tenant;
    },
    async createKey(org, role, actorId = `${role}@${org.slug}.test`) {
      const { secret } = await createApiKey(app.deps, {
        tenant: org,
        input: { name: `${role} key`, role, actor: { type: 'human', id: actorId } },
        by: PLATFORM_ACTOR,
      });
      return secret;
    },
    async settle() {
      const [snapshot] = await app.deps.sql<{ xmax: string }[]>`select pg_snapshot_xmax(pg_current_snapshot())::text as xmax`;
      const xmax = snapshot!.xmax;
      await waitFor(async () => {
        const [row] = await app.deps.sql<{ done: boolean }[]>`
          select pg_snapshot_xmin(pg_current_snapshot()) >= ${xmax}::xid8 as done`;
        return row!.done;
      }, 20_000, 'open transactions to end');
    },
    async startWorker(options = {}) {
      const worker = await startWorker(app.worker, {
        databaseUrl: database.url,
        concurrency: 4,
        heartbeatMs: 1000,
        staleAfterMs: 5000,
        pollIntervalMs: 200,
        ...options,
      });
      workers.push(worker);
      return worker;
    },
    async close() {
      releaseResource(testApp);
      await Promise.all(workers.map((worker) => worker.stop()));
      await app.close();
      await database.drop();
    },
  };
  trackResource(testApp, 'signalbus app');
  return testApp;
}

/** Serves the app on a loopback port, for clients that need a real socket (SSE, load). */
export async function listen(app: SignalbusApp, config: Config = parseConfig({})): Promise<{ url: string; server: ServerType; close(): Promise<void> }> {
  const server = await startHttpServer(app.http.fetch, { hostname: '127.0.0.1', port: 0, limits: serverLimits(config) });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const handle = {
    url: `http://127.0.0.1:${port}`,
    server,
    async close() {
      releaseResource(handle);
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  trackResource(handle, `server on ${port}`);
  return handle;
}

/** Waits for `condition` to hold, polling, up to `timeoutMs`. */
export async function waitFor<T>(condition: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  // Quick at first; a long wait polls less, leaving the CPU to what it waits for.
  for (let pause = 20; ; pause = Math.min(100, pause * 1.25)) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}
