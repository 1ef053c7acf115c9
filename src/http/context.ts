/**
 * The request's environment and the access check every /v1 operation runs
 * first. Access is deny-by-default twice over: a role holds a permission only
 * where `PERMISSIONS` lists it, and a handler can reach its tenant or
 * principal only through `requireAccess` — one that skipped it gets 403.
 *
 * Variables are read with `c.get`: hono's `c.var` builds a new object on every
 * access, a measurable cost on the emit path.
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import type { Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { KeyAuthenticator, Principal } from '../auth/authenticate.ts';
import { roleHolds, type Permission } from '../auth/roles.ts';
import { DomainError, forbidden, notFound } from '../core/errors.ts';
import type { Bus } from '../bus.ts';
import type { LogBroadcast } from '../signals/broadcast.ts';
import type { TenantDirectory } from '../tenancy/directory.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { StreamSlots } from './stream-slots.ts';
import type { RateLimiter, RateVerdict } from '../ratelimit/index.ts';
import { problem, problemResponse } from './problem.ts';
import { cleanTraceparent } from '../signals/model.ts';
import { currentTraceparent } from '../telemetry/tracing.ts';
import type { EmitContext } from '../signals/emit.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import type { PackageRegistry } from '../packages/registry.ts';
import type { SessionStore } from '../auth/sessions.ts';
import type { OrgCatalog } from '../tenancy/catalog.ts';
import type { HookDeps } from '../webhooks/receive.ts';

/** What routes reach: verbs' deps and the edge's own parts, never a database connection. */
export interface HttpDeps {
  logger: Logger;
  tenants: TenantDirectory;
  authenticator: KeyAuthenticator;
  bus: Bus;
  /** The package registry, loaded and checked at start. */
  packages: PackageRegistry;
  /** Console sign-ins: API keys exchanged for server-side sessions. */
  sessions: SessionStore;
  /** Organizations with their migration status (the console's orgs view). */
  orgCatalog: OrgCatalog;
  /** Inbound webhooks: verification, the delivery log, the per-installation limit. */
  hooks: HookDeps;
  maxPayloadBytes: number;
  maxBatchBytes: number;
  /** Values one request body may hold (see `limitBody`). */
  maxBodyValues: number;
  /** Byte budget of a signals page (list and stream reads). */
  maxPageBytes: number;
  heartbeatMs: number;
  /** Live streams: one shared tail per org. */
  streams: LogBroadcast;
  streamSlots: StreamSlots;
  /** Readiness: database reachable and migrations current. */
  readiness(): Promise<{ ready: boolean; detail: Record<string, unknown> }>;
  /** Request spans when set. */
  tracer?: Tracer;
  /** Serves `GET /metrics` when set. */
  metrics?: Metrics;
  /** Per key, org and (for unknown keys) source address; absent = no limits. */
  rateLimiter?: RateLimiter;
  /** A trusted proxy's header naming the client's address; else the socket's peer. */
  clientAddressHeader?: string;
  /** `SIGNALBUS_PUBLIC_URL`, without a trailing slash: the base of hook URLs; else the request's origin. */
  publicUrl?: string;
}

/** The base senders reach this service at: the configured public URL, else this request's origin. */
export function publicBase(c: { get(key: 'deps'): HttpDeps; req: { url: string } }): string {
  return c.get('deps').publicUrl ?? new URL(c.req.url).origin;
}

export interface ApiEnv {
  Variables: {
    deps: HttpDeps;
    requestId: string;
    principal?: Principal;
    tenant?: Tenant;
    verbContext?: VerbContext;
  };
}

export type ApiApp = OpenAPIHono<ApiEnv>;
export type ApiContext = Context<ApiEnv>;

function bearer(c: ApiContext): string | undefined {
  const header = c.req.header('authorization');
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match?.[1];
}

/** The client's address: a trusted proxy's header when configured, else the socket's peer. */
export function clientAddress(c: ApiContext, header: string | undefined): string {
  const forwarded = header ? c.req.header(header)?.split(',')[0]?.trim() : undefined;
  if (forwarded) return forwarded;
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress ?? 'unknown';
}

export function rateLimited(c: ApiContext, verdict: RateVerdict): Response {
  const response = problemResponse(
    problem('rate_limited', `too many requests; retry in ${verdict.retryAfterS} s`),
    c.get('requestId'),
  );
  for (const [name, value] of Object.entries(verdict.headers)) response.headers.set(name, value);
  return response;
}

/**
 * Authenticates the key (401), charges the request to the key's and org's
 * rate limits (429), resolves the path's org and refuses keys bound to
 * another org (404, so existence is not revealed), then checks the role
 * (403). Looking a key up in the database is first charged to the request's
 * source address (and refunded when the key is valid): guessing keys costs
 * no lookup once the address is over its limit.
 */
export function requireAccess(permission: Permission): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const deps = c.get('deps');
    const limiter = deps.rateLimiter;
    const secret = bearer(c);
    let refusal: RateVerdict | undefined;
    let chargedAddress: string | undefined;
    // Asked only before a database lookup: a cached key costs no address token.
    const admit = limiter
      ? () => {
          const address = clientAddress(c, deps.clientAddressHeader);
          const verdict = limiter.forAddress(address);
          if (verdict && !verdict.allowed) refusal = verdict;
          else if (verdict) chargedAddress = address;
          return refusal === undefined;
        }
      : undefined;
    const principal = secret ? await deps.authenticator.authenticate(secret, admit) : null;
    if (refusal) return rateLimited(c, refusal);
    if (!principal) throw new DomainError('unauthorized', 'send a valid API key as Authorization: Bearer sbk_…');
    if (limiter) {
      // The address paid for a lookup that found a valid key: that was no guess.
      if (chargedAddress) limiter.refundAddress(chargedAddress);
      const pending = limiter.forPrincipal(principal.keyId, principal.orgId);
      const verdict = pending instanceof Promise ? await pending : pending;
      if (verdict) {
        if (!verdict.allowed) return rateLimited(c, verdict);
        for (const name in verdict.headers) c.header(name, verdict.headers[name]);
      }
    }
    const orgParam = c.req.param('org');
    if (orgParam !== undefined) {
      const tenant = await deps.tenants.find(orgParam);
      if (!tenant || (principal.orgId !== null && principal.orgId !== tenant.id)) throw notFound('organization');
      c.set('tenant', tenant);
    }
    if (!roleHolds(principal.role, permission)) throw forbidden(`role ${principal.role} may not do this`);
    c.set('principal', principal);
    await next();
  };
}

export function principalOf(c: ApiContext): Principal {
  const principal = c.get('principal');
  if (!principal) throw forbidden();
  return principal;
}

export function tenantOf(c: ApiContext): Tenant {
  const tenant = c.get('tenant');
  if (!tenant || !c.get('principal')) throw forbidden();
  return tenant;
}

/**
 * The request's verb context: tenant and actor from the key, never from the
 * body, the request id, and the request's span when tracing (else the
 * caller's traceparent header as it came). Built once per request.
 */
export function verbContextOf(c: ApiContext): VerbContext {
  const built = c.get('verbContext');
  if (built) return built;
  const ctx: VerbContext = {
    tenant: tenantOf(c),
    actor: principalOf(c).actor,
    source: 'api',
    traceparent: (c.get('deps').tracer ? currentTraceparent() : null) ?? cleanTraceparent(c.req.header('traceparent')),
    requestId: c.get('requestId'),
  };
  c.set('verbContext', ctx);
  return ctx;
}

/**
 * The emit context of an API request: its verb context and its
 * Idempotency-Key. Other verbs take their keys explicitly, so only emit reads it.
 */
export function emitContextOf(c: ApiContext): EmitContext {
  const idempotencyKey = c.req.header('idempotency-key');
  const ctx = verbContextOf(c);
  return idempotencyKey ? { ...ctx, idempotencyKey } : ctx;
}
