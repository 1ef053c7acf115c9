/**
 * The composition root: builds every dependency from a `Config` and a
 * database URL, and nothing else does. The CLI, the tests and the benchmarks
 * all start here.
 */
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Logger } from 'pino';
import { createKeyAuthenticator } from './auth/authenticate.ts';
import { createSessionStore } from './auth/sessions.ts';
import { createOrgCatalog } from './tenancy/catalog.ts';
import { celLimitsOf, type Config } from './config.ts';
import { createSql, type Sql } from './db/client.ts';
import { shippedPublicMigrations, TENANT_MIGRATIONS_DIR } from './db/migrate.ts';
import { createHttpApp } from './http/app.ts';
import { createStreamSlots } from './http/stream-slots.ts';
import { bucketPolicy, createRateLimiter } from './ratelimit/index.ts';
import type { HttpDeps } from './http/context.ts';
import type { WorkerDeps } from './worker/runner.ts';
import type { Bus } from './bus.ts';
import type { DirectiveDeps } from './directives/deps.ts';
import { directivesProjection } from './directives/projection.ts';
import { createExecutorRegistry, type Executor } from './executors/registry.ts';
import { circuitsProjection } from './directives/circuit.ts';
import { builtinExecutors } from './executors/builtin.ts';
import { executionsProjection } from './executions/projection.ts';
import { createOrgHandlers } from './handlers/org-handlers.ts';
import { loadInstallationHandlers } from './packages/installation-handlers.ts';
import { createPayloadSchemas } from './packages/payload-schemas.ts';
import type { Handler } from './handlers/registry.ts';
import { policiesProjection } from './directives/policy-projection.ts';
import { createPolicyCompiler } from './directives/policy-store.ts';
import { loadRegistry } from './packages/registry.ts';
import { REGISTRY_DIR } from './packages/registry-files.ts';
import { setCelLimits } from './policy/cel-program.ts';
import { parseMasterKeys } from './secrets/keys.ts';
import type { VaultDeps } from './secrets/vault.ts';
import { createProjectionRegistry, type Projection, type ProjectionRegistry } from './projections/registry.ts';
import { createReplayModes } from './replay/modes.ts';
import { createRedeliverMode } from './replay/redeliver-mode.ts';
import type { RuntimeDeps } from './handlers/runtime.ts';
import { replaysProjection } from './replay/projection.ts';
import { createRebuildMode } from './replay/rebuild.ts';
import { createAsOfMode } from './replay/as-of.ts';
import { installationsProjection } from './packages/installation-projection.ts';
import { entitiesProjection } from './packages/entity-projection.ts';
import type { InstallationDeps } from './packages/installation-steps.ts';
import { packagePolicyLookup } from './packages/package-policy.ts';
import type { EmitDeps } from './signals/emit.ts';
import { createAppendBatcher, type AppendBatcher } from './signals/append-batcher.ts';
import { createLogBroadcast } from './signals/broadcast.ts';
import { createLogNotifier, type LogNotifier } from './signals/log-notifier.ts';
import { createTenantDirectory } from './tenancy/directory.ts';
import { createDeliveryLog, createPubsubVerifier, type HookDeps } from './webhooks/index.ts';
import { loadTenantMigrations, type TenantMigration } from './tenancy/tenant-migrations.ts';
import { createLogger } from './telemetry/logger.ts';
import { createMetrics, oldestJobAgeQuery } from './telemetry/metrics.ts';
import { RESERVED_TYPE_PREFIXES } from './signals/model.ts';
import { createTracing } from './telemetry/tracing.ts';

export interface AppOptions {
  databaseUrl: string;
  logger?: Logger;
  tenantMigrationsDir?: string;
  /** Where spans go; without one they are still created, so traceparents propagate. */
  spanExporter?: SpanExporter;
  /** Handlers beyond the built-ins (tests, embedding applications). */
  handlers?: Handler[];
  /** Projections beyond the built-ins, folded and rebuilt like them (tests). */
  projections?: Projection[];
  /** Executors beyond the built-ins. */
  executors?: Executor<any>[];
  /** Fixed clock for the directive and handler verbs (tests). */
  now?: () => Date;
  /** Master keys (`kid:base64key,…`) when not from config: the embedded database's development key. */
  masterKeys?: string;
  /** The package registry folder, over SIGNALBUS_REGISTRY_DIR and the shipped one. */
  registryDir?: string;
  /** Called before each installation step; a throw fails it (tests inject failures). */
  beforeInstallationStep?: InstallationDeps['beforeStep'];
}

/** The HTTP app's deps and the pool: the CLI, tests and benchmarks reach the database through it; routes do not. */
export interface AppDeps extends HttpDeps {
  sql: Sql;
  notifier: LogNotifier;
  appendBatcher: AppendBatcher;
  projections: ProjectionRegistry;
  observer?: EmitDeps['observer'];
  tenantMigrations: TenantMigration[];
  vault: VaultDeps;
}

export interface SignalbusApp {
  deps: AppDeps;
  /** The worker process's deps (`startWorker`). */
  worker: WorkerDeps;
  http: ReturnType<typeof createHttpApp>;
  close(): Promise<void>;
}

export async function createApp(config: Config, options: AppOptions): Promise<SignalbusApp> {
  // Process-wide, before anything compiles CEL (handler conditions, below).
  setCelLimits(celLimitsOf(config));
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
  // Spans cost CPU on every emit; they are made only when someone collects them.
  const tracing =
    options.spanExporter || config.OTEL_EXPORTER_OTLP_ENDPOINT
      ? createTracing({
          serviceName: 'signalbus',
          ...(options.spanExporter ? { exporter: options.spanExporter } : {}),
          ...(config.OTEL_EXPORTER_OTLP_ENDPOINT ? { otlpEndpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT } : {}),
        })
      : undefined;
  const tracer = tracing?.tracer;
  const metrics = createMetrics({
    collectOldestJobAgeSeconds: () => oldestJobAgeQuery(sql),
    tenantLabels: config.SIGNALBUS_METRICS_TENANT_LABELS,
    systemFamilies: RESERVED_TYPE_PREFIXES,
  });

  const executors = createExecutorRegistry([
    ...builtinExecutors({
      allowPrivateTargets: config.SIGNALBUS_ALLOW_PRIVATE_TARGETS,
      stripeApiBase: config.SIGNALBUS_STRIPE_API_BASE,
      googleApiBase: config.SIGNALBUS_GOOGLE_API_BASE,
      googleOAuthBase: config.SIGNALBUS_GOOGLE_OAUTH_BASE,
      openaiBaseUrl: config.SIGNALBUS_OPENAI_BASE_URL,
      openaiPrices: config.SIGNALBUS_OPENAI_PRICES,
    }),
    ...(options.executors ?? []),
  ]);
  // A version that fails its checks (a changed manifest above all) is served
  // and installed nowhere; the rest of the registry stays available.
  const { registry: packages, problems: registryProblems } = await loadRegistry(options.registryDir ?? config.SIGNALBUS_REGISTRY_DIR ?? REGISTRY_DIR, { executors });
  for (const problem of registryProblems) logger.error({ package: problem.where, path: problem.path, problem: problem.message }, 'registry entry refused');
  const projections = createProjectionRegistry(
    [directivesProjection, executionsProjection, policiesProjection, circuitsProjection, installationsProjection, entitiesProjection(packages), ...(options.projections ?? [])],
    [replaysProjection],
  );
  const appendBatcher = createAppendBatcher({ sql: writerSql, onCommitted: (orgId) => notifier.committed(orgId) });
  const emitDeps: EmitDeps = {
    sql,
    projections,
    notifier,
    maxPayloadBytes: config.SIGNALBUS_MAX_PAYLOAD_BYTES,
    payloads: createPayloadSchemas({ sql, packages, notifier }),
    appendBatcher,
    observer: { emitted: (type) => metrics.signalsEmitted(type), deduplicated: () => metrics.dedupeHits() },
    ...(tracer ? { tracer } : {}),
  };
  const masterKeys = options.masterKeys ?? config.SIGNALBUS_ENCRYPTION_KEYS;
  const vault: VaultDeps = { sql, keys: masterKeys ? parseMasterKeys(masterKeys) : undefined };
  const handlers = createOrgHandlers({
    builtins: options.handlers ?? [],
    loadRules: (tenant) =>
      loadInstallationHandlers(
        {
          sql,
          packages,
          onMissingManifest: (installation) =>
            logger.error({ org: tenant.slug, installation: installation.id, package: `${installation.package}@${installation.version}` }, 'installed version is not in the registry; its rules do not run'),
        },
        tenant,
      ),
    onConditionError: (handler, message) => logger.warn({ handler, error: message }, 'handler condition failed; not matched'),
  });
  const directives: DirectiveDeps = {
    sql,
    emit: emitDeps,
    executors,
    vault,
    policies: createPolicyCompiler(),
    approvalTtlSeconds: config.SIGNALBUS_APPROVAL_TTL_SECONDS,
    retryBaseMs: config.SIGNALBUS_EXECUTOR_RETRY_BASE_MS,
    onDecision: (effect) => metrics.directiveDecision(effect),
    packagePolicy: packagePolicyLookup(packages),
    ...(tracer ? { tracer } : {}),
    ...(options.now ? { now: options.now } : {}),
  };
  const replayModeDeps = { sql, projections, pageSize: config.SIGNALBUS_REPLAY_PAGE_SIZE };
  const runtime: RuntimeDeps = {
    sql,
    emit: emitDeps,
    directives,
    handlers,
    maxCausationDepth: config.SIGNALBUS_MAX_CAUSATION_DEPTH,
    onFailure: (handler, final) => metrics.executionFailed(handler, final),
    ...(tracer ? { tracer } : {}),
    ...(options.now ? { now: options.now } : {}),
  };
  const bus: Bus = {
    emit: emitDeps,
    orgs: { ...emitDeps, tenantMigrations },
    secrets: { vault, emit: emitDeps },
    directives,
    executors,
    handlers,
    replays: {
      sql,
      emit: emitDeps,
      modes: createReplayModes([
        createRebuildMode(replayModeDeps),
        createRedeliverMode({ ...runtime, pageSize: config.SIGNALBUS_REPLAY_PAGE_SIZE }),
        createAsOfMode({ ...replayModeDeps, ...(options.now ? { now: options.now } : {}) }),
      ]),
      ...(options.now ? { now: options.now } : {}),
    },
    installations: {
      sql,
      emit: emitDeps,
      registry: packages,
      vault,
      directives,
      ...(options.beforeInstallationStep ? { beforeStep: options.beforeInstallationStep } : {}),
    },
    runtime,
  };


  const rateLimits = {
    key: bucketPolicy(config.SIGNALBUS_RATE_LIMIT_KEY_PER_S, config.SIGNALBUS_RATE_LIMIT_KEY_BURST),
    org: bucketPolicy(config.SIGNALBUS_RATE_LIMIT_ORG_PER_S, config.SIGNALBUS_RATE_LIMIT_ORG_BURST),
    address: bucketPolicy(config.SIGNALBUS_RATE_LIMIT_UNKNOWN_KEY_PER_S, config.SIGNALBUS_RATE_LIMIT_UNKNOWN_KEY_BURST),
    hook: bucketPolicy(config.SIGNALBUS_RATE_LIMIT_HOOK_PER_S, config.SIGNALBUS_RATE_LIMIT_HOOK_BURST),
  };
  const rateLimiter = rateLimits.key || rateLimits.org || rateLimits.address || rateLimits.hook ? createRateLimiter({ sql, onError }, rateLimits) : undefined;
  const tenants = createTenantDirectory({ sql });
  const hooks: HookDeps = {
    sql,
    emit: emitDeps,
    tenants,
    vault,
    packages,
    pubsub: createPubsubVerifier(config.SIGNALBUS_GOOGLE_OIDC_CERTS_URL ? { certsUrl: config.SIGNALBUS_GOOGLE_OIDC_CERTS_URL } : {}),
    deliveries: createDeliveryLog({ sql }, { size: config.SIGNALBUS_HOOK_DELIVERY_LOG_SIZE }),
    limiter: rateLimiter,
    maxBodyBytes: config.SIGNALBUS_HOOK_MAX_BODY_BYTES,
    installationCacheMs: config.SIGNALBUS_HOOK_CACHE_MS,
    onError: (error) => logger.warn({ err: error }, 'webhook delivery log write failed'),
    observe: (outcome, reason) => metrics.webhookDelivery(outcome, reason),
    ...(options.now ? { now: () => options.now!().getTime() } : {}),
  };
  const authenticator = createKeyAuthenticator({ sql, onError });

  const deps: AppDeps = {
    sql,
    logger,
    tenants,
    authenticator,
    notifier,
    appendBatcher,
    projections,
    bus,
    vault,
    packages,
    hooks,
    observer: emitDeps.observer,
    tenantMigrations,
    sessions: createSessionStore({ sql, authenticator }),
    orgCatalog: createOrgCatalog({ sql }, { latest: tenantMigrations.length }),
    maxPayloadBytes: config.SIGNALBUS_MAX_PAYLOAD_BYTES,
    maxBatchBytes: config.SIGNALBUS_MAX_BATCH_BYTES,
    maxBodyValues: config.SIGNALBUS_MAX_BODY_VALUES,
    maxPageBytes: config.SIGNALBUS_MAX_PAGE_BYTES,
    heartbeatMs: config.SIGNALBUS_SSE_HEARTBEAT_SECONDS * 1000,
    streams: createLogBroadcast({ sql, notifier }, { maxPageBytes: config.SIGNALBUS_MAX_PAGE_BYTES, tickMs: config.SIGNALBUS_SSE_TICK_MS }),
    streamSlots: createStreamSlots({
      perKey: config.SIGNALBUS_SSE_MAX_STREAMS_PER_KEY,
      perOrg: config.SIGNALBUS_SSE_MAX_STREAMS_PER_ORG,
    }),
    ...(rateLimiter ? { rateLimiter } : {}),
    ...(config.SIGNALBUS_CLIENT_ADDRESS_HEADER ? { clientAddressHeader: config.SIGNALBUS_CLIENT_ADDRESS_HEADER } : {}),
    ...(config.SIGNALBUS_PUBLIC_URL ? { publicUrl: config.SIGNALBUS_PUBLIC_URL } : {}),
    ...(tracer ? { tracer } : {}),
    metrics,
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

  const worker: WorkerDeps = {
    sql,
    logger,
    tenants: deps.tenants,
    notifier,
    bus,
    metrics,
    ...(tracer ? { tracer } : {}),
  };

  return {
    deps,
    worker,
    http: createHttpApp(deps),
    async close() {
      await notifier.close();
      await Promise.all([sql.end({ timeout: 5 }), writerSql.end({ timeout: 5 })]);
      await tracing?.shutdown();
    },
  };
}
