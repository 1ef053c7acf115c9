/**
 * The HTTP edge: request ids, one wide log line per request, problem+json
 * errors, operations, and the unversioned operational routes.
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import { routePath } from 'hono/route';
import { newId } from '../core/ids.ts';
import { traceRequests } from '../telemetry/tracing.ts';
import { requireAccess, type ApiEnv, type HttpDeps } from './context.ts';
import { knownProblem, problem, problemResponse } from './problem.ts';
import { registerReferencePage } from './reference-page.ts';
import { registerConsole } from '../console/index.tsx';
import { registerOperations } from './routes/index.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Every tag an operation uses, described for the reference and for client generators. */
const TAGS: Array<{ name: string; description: string }> = [
  { name: 'Organizations', description: 'Tenants: each organization owns its own log and state.' },
  { name: 'API keys', description: 'Keys bound to an organization, each acting as one actor with one role.' },
  { name: 'Signals', description: 'The log: emit, list, trace and stream signals in commit order.' },
  { name: 'Directives', description: 'Intents to cause a side effect, decided by policy and, where required, approval.' },
  { name: 'Executions', description: 'Durable records of handler runs and directive runs.' },
  { name: 'Policies', description: "The organization's rules and guards that decide directives." },
  { name: 'Secrets', description: 'The credentials vault: values encrypted at rest, never returned.' },
  { name: 'Packages', description: 'The package registry: versioned, immutable integration manifests organizations install.' },
  { name: 'Installations', description: "An organization's installed packages: config, secrets in the vault, status, steps and error reports, upgrades and uninstalls, and their providers' inbound webhooks." },
  { name: 'Replays', description: 'Support replays of an org\'s log: rebuilds, redeliveries, dry runs and as-of views, each recorded as signals.' },
];

export function createHttpApp(deps: HttpDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const errors = result.error.issues.map((issue) => ({
        path: [result.target === 'json' ? '' : result.target, ...issue.path.map(String)].filter(Boolean).join('.'),
        message: issue.message,
      }));
      return problemResponse(problem('validation_failed', 'the request is not valid', errors), c.get('requestId'));
    },
  });

  // First, so the request's log line and every later span run inside it.
  if (deps.tracer) app.use('*', traceRequests(deps.tracer));
  app.use('*', async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : newId('request');
    c.set('requestId', requestId);
    c.set('deps', deps);
    // Set before the response exists: every response built from the context
    // carries it, and problem responses add it themselves. Setting it on a
    // finished response would make the server materialise its headers.
    c.header('x-request-id', requestId);
    c.header('x-content-type-options', 'nosniff');
    // API answers carry tenant data (and, at key creation, a secret): no cache keeps them.
    if (c.req.path.startsWith('/v1/')) c.header('cache-control', 'no-store');
    const started = performance.now();
    await next();
    const status = c.res.status;
    const line = {
      request_id: requestId,
      method: c.req.method,
      route: routePath(c, -1),
      org: c.get('tenant')?.slug,
      key_id: c.get('principal')?.keyId,
      status,
      duration_ms: Math.round((performance.now() - started) * 100) / 100,
    };
    if (status >= 500) deps.logger.error(line, 'request');
    else deps.logger.info(line, 'request');
  });

  app.onError((error, c) => {
    const known = knownProblem(error);
    if (known) return problemResponse(known, c.get('requestId'));
    deps.logger.error({ request_id: c.get('requestId'), err: error }, 'unhandled error');
    return problemResponse(problem('internal'), c.get('requestId'));
  });
  app.notFound((c) => problemResponse(problem('not_found', 'no such route'), c.get('requestId')));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const { ready, detail } = await deps.readiness();
    return c.json({ status: ready ? 'ready' : 'not_ready', ...detail }, ready ? 200 : 503);
  });
  const metrics = deps.metrics;
  // Platform-wide figures: a platform key with the observe permission (docs/http.md).
  if (metrics) app.get('/metrics', requireAccess('platform:observe'), async (c) => c.body(await metrics.render(), 200, { 'content-type': metrics.contentType }));

  registerOperations(app);

  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    security: [{ apiKey: [] }],
    info: {
      title: 'signalbus',
      version: '1',
      description: 'Event-sourced, multi-tenant signal bus. Errors are RFC 9457 problem details with a stable `code`.',
      contact: { name: 'signalbus' },
    },
    // Relative: the document describes the server that serves it.
    servers: [{ url: '/', description: 'This signalbus server' }],
    tags: TAGS,
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', { type: 'http', scheme: 'bearer' });
  registerReferencePage(app);
  registerConsole(app);
  return app;
}
