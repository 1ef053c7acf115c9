/**
 * The one table of /v1 operations the security suites are driven from
 * (isolation, roles). Each row names the permission the route is meant to
 * require and, independently, the roles expected to pass — so a route wired
 * to the wrong permission fails the HTTP matrix, and a route registered in the
 * app but missing here fails `registeredV1Routes` comparisons.
 */
import type { Permission, Role } from '../../src/auth/roles.ts';
import type { SignalbusApp } from '../../src/app.ts';
import { HOLD_POLICY } from './fanout.ts';
import { RELAY_CONFIG, type InstallationState } from './installations.ts';

export type RouteMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** What a route's path parameter names: an object's id, or a secret's name. */
export type RouteIdKind = 'signal' | 'apiKey' | 'directive' | 'execution' | 'secret' | 'installation' | 'replay';

export interface RouteCase {
  method: RouteMethod;
  /** OpenAPI template: `{org}` and `{id}` are filled in by the suite. */
  path: string;
  permission: Permission;
  /** The roles expected to get past authorization (from API.md, not from roles.ts). */
  allowed: readonly Role[];
  /** What `{id}` (or `{name}`) names, for routes that refer to an existing object. */
  id?: RouteIdKind;
  /**
   * The state `{id}` must be in for the route to succeed. The route consumes
   * it (a transition), so a suite that expects success makes a fresh one per call.
   */
  state?: 'awaiting_approval' | 'failed' | 'queued' | InstallationState;
  /**
   * The one signal a refused call still records — its attempt (replays:
   * every attempt is in the log). Without it a refused call writes nothing.
   */
  refusalRecorded?: string;
  /** A server-sent event stream: a 200 never ends, so read one chunk and cancel. */
  stream?: boolean;
  /** A valid body; `unique` keeps repeated calls from deduplicating or conflicting. */
  body?: (unique: string) => unknown;
}

const everyone = ['viewer', 'operator', 'admin', 'support', 'platform_admin'] as const;
const operators = ['operator', 'admin', 'platform_admin'] as const;
const admins = ['admin', 'platform_admin'] as const;
const replayers = ['admin', 'support', 'platform_admin'] as const;

let instants = 0;
/** A distinct instant on every call, for as-of requests that must not overlap. */
export function uniqueInstant(): string {
  return new Date(Date.UTC(2020, 0, 1) + ++instants * 1000).toISOString();
}

export const V1_ROUTES: readonly RouteCase[] = [
  {
    method: 'POST',
    path: '/v1/orgs',
    permission: 'platform:admin',
    allowed: ['platform_admin'],
    body: (unique) => ({ slug: `o_${unique}`, name: `Org ${unique}` }),
  },
  {
    method: 'POST',
    path: '/v1/orgs/{org}/api-keys',
    permission: 'org:admin',
    allowed: admins,
    body: (unique) => ({ name: `key ${unique}`, role: 'viewer', actor: { type: 'agent', id: `bot-${unique}` } }),
  },
  {
    method: 'DELETE',
    path: '/v1/orgs/{org}/api-keys/{id}',
    permission: 'org:admin',
    allowed: admins,
    id: 'apiKey',
  },
  {
    method: 'POST',
    path: '/v1/orgs/{org}/signals',
    permission: 'org:operate',
    allowed: operators,
    body: (unique) => ({ type: 'route.table.emitted', subject: `route:${unique}`, payload: { n: unique }, dedupe_key: `rt-${unique}` }),
  },
  {
    method: 'POST',
    path: '/v1/orgs/{org}/signals/batch',
    permission: 'org:operate',
    allowed: operators,
    body: (unique) => ({
      signals: [
        { type: 'route.table.batched', payload: { n: unique, i: 0 }, dedupe_key: `rtb-${unique}-0` },
        { type: 'route.table.batched', payload: { n: unique, i: 1 }, dedupe_key: `rtb-${unique}-1` },
      ],
    }),
  },
  { method: 'GET', path: '/v1/orgs/{org}/signals', permission: 'org:read', allowed: everyone },
  { method: 'GET', path: '/v1/orgs/{org}/signals/{id}', permission: 'org:read', allowed: everyone, id: 'signal' },
  { method: 'GET', path: '/v1/orgs/{org}/signals/{id}/trace', permission: 'org:read', allowed: everyone, id: 'signal' },
  { method: 'GET', path: '/v1/orgs/{org}/stream', permission: 'org:read', allowed: everyone, stream: true },
  {
    method: 'POST',
    path: '/v1/orgs/{org}/directives',
    permission: 'org:operate',
    allowed: operators,
    body: (unique) => ({ kind: 'noop.record', params: { n: unique }, idempotency_key: `rt-${unique}` }),
  },
  {
    method: 'POST',
    path: '/v1/orgs/{org}/directives/simulate',
    permission: 'org:operate',
    allowed: operators,
    body: (unique) => ({ kind: 'noop.record', params: { n: unique } }),
  },
  { method: 'GET', path: '/v1/orgs/{org}/directives', permission: 'org:read', allowed: everyone },
  { method: 'GET', path: '/v1/orgs/{org}/directives/{id}', permission: 'org:read', allowed: everyone, id: 'directive' },
  ...(['approve', 'reject', 'cancel'] as const).map(
    (action): RouteCase => ({
      method: 'POST',
      path: `/v1/orgs/{org}/directives/{id}/${action}`,
      permission: 'org:operate',
      allowed: operators,
      id: 'directive',
      state: 'awaiting_approval',
      body: (unique) => ({ reason: `${action} ${unique}` }),
    }),
  ),
  { method: 'GET', path: '/v1/orgs/{org}/executions', permission: 'org:read', allowed: everyone },
  { method: 'GET', path: '/v1/orgs/{org}/executions/{id}', permission: 'org:read', allowed: everyone, id: 'execution' },
  {
    method: 'POST',
    path: '/v1/orgs/{org}/executions/{id}/retry',
    permission: 'org:operate',
    allowed: operators,
    id: 'execution',
    state: 'failed',
    body: (unique) => ({ reason: `retry ${unique}` }),
  },
  { method: 'GET', path: '/v1/orgs/{org}/policies', permission: 'org:read', allowed: everyone },
  {
    method: 'PUT',
    path: '/v1/orgs/{org}/policies',
    permission: 'org:admin',
    allowed: admins,
    // The same rules under a new reason: suites keep relying on HOLD_POLICY.
    body: (unique) => ({ rules: HOLD_POLICY.rules.map((rule) => ({ ...rule, reason: `${rule.id} ${unique}` })) }),
  },
  // PUT names a secret to create or replace, not an existing object: it has no `id`.
  {
    method: 'PUT',
    path: '/v1/orgs/{org}/secrets/{name}',
    permission: 'org:admin',
    allowed: admins,
    body: (unique) => ({ value: `route-table-value-${unique}` }),
  },
  { method: 'GET', path: '/v1/orgs/{org}/secrets', permission: 'org:admin', allowed: admins },
  { method: 'DELETE', path: '/v1/orgs/{org}/secrets/{name}', permission: 'org:admin', allowed: admins, id: 'secret' },
  {
    method: 'POST',
    path: '/v1/orgs/{org}/replays',
    permission: 'org:replay',
    allowed: replayers,
    refusalRecorded: 'replay.denied',
    // An as-of replay at a point of its own: requests never overlap, so each is accepted (and stays queued without a worker).
    body: (unique) => ({ mode: 'as_of', reason: `route table ${unique}`, selection: { before: uniqueInstant() } }),
  },
  { method: 'GET', path: '/v1/orgs/{org}/replays', permission: 'org:read', allowed: everyone },
  { method: 'GET', path: '/v1/orgs/{org}/replays/{id}', permission: 'org:read', allowed: everyone, id: 'replay' },
  {
    method: 'POST',
    path: '/v1/orgs/{org}/replays/{id}/cancel',
    permission: 'org:replay',
    allowed: replayers,
    refusalRecorded: 'replay.denied',
    id: 'replay',
    state: 'queued',
    body: (unique) => ({ reason: `cancel ${unique}` }),
  },
  // The registry is shared: any valid key reads it, whatever its org.
  { method: 'GET', path: '/v1/packages', permission: 'authenticated', allowed: everyone },
  { method: 'GET', path: '/v1/packages/{package}', permission: 'authenticated', allowed: everyone },
  { method: 'GET', path: '/v1/packages/{package}/{version}', permission: 'authenticated', allowed: everyone },
  // webhook-relay allows several installations, so repeated installs all succeed.
  {
    method: 'POST',
    path: '/v1/orgs/{org}/installations',
    permission: 'org:admin',
    allowed: admins,
    body: (unique) => ({ package: 'webhook-relay', version: '1.0.1', config: { ...RELAY_CONFIG, forward_types: [`rt.${unique}`] } }),
  },
  { method: 'GET', path: '/v1/orgs/{org}/installations', permission: 'org:read', allowed: everyone },
  { method: 'GET', path: '/v1/orgs/{org}/installations/{id}', permission: 'org:read', allowed: everyone, id: 'installation' },
  {
    method: 'PATCH',
    path: '/v1/orgs/{org}/installations/{id}',
    permission: 'org:admin',
    allowed: admins,
    id: 'installation',
    state: 'installed',
    body: (unique) => ({ config: { ...RELAY_CONFIG, forward_types: [`rt.${unique}`] } }),
  },
  // Installs in the route table are of 1.0.1; 1.1.0 is in registryWithRelayVersions's copy (roles.test.ts).
  {
    method: 'POST',
    path: '/v1/orgs/{org}/installations/{id}/upgrade',
    permission: 'org:admin',
    allowed: admins,
    id: 'installation',
    state: 'installed',
    body: () => ({ version: '1.1.0' }),
  },
  { method: 'POST', path: '/v1/orgs/{org}/installations/{id}/retry', permission: 'org:admin', allowed: admins, id: 'installation', state: 'install_failed' },
  { method: 'POST', path: '/v1/orgs/{org}/installations/{id}/disable', permission: 'org:admin', allowed: admins, id: 'installation', state: 'installed' },
  { method: 'POST', path: '/v1/orgs/{org}/installations/{id}/enable', permission: 'org:admin', allowed: admins, id: 'installation', state: 'disabled' },
  { method: 'DELETE', path: '/v1/orgs/{org}/installations/{id}', permission: 'org:admin', allowed: admins, id: 'installation', state: 'installed' },
  { method: 'GET', path: '/v1/orgs/{org}/installations/{id}/deliveries', permission: 'org:admin', allowed: admins, id: 'installation' },
  { method: 'GET', path: '/v1/orgs/{org}/entities', permission: 'org:read', allowed: everyone },
  // Reads ROUTE_TABLE_ENTITY: suites that call it expecting 200 project it first (projectRouteTableEntity).
  { method: 'GET', path: '/v1/orgs/{org}/entities/{type}/{key}', permission: 'org:read', allowed: everyone },
];

/** The `{name}` a route without an `id` writes to. */
export const ROUTE_TABLE_SECRET = 'route_table_secret';
/** The `{package}` and `{version}` registry routes read: a version the shipped registry publishes. */
export const ROUTE_TABLE_PACKAGE = { package: 'webhook-relay', version: '1.0.1' };
/** The `{type}` and `{key}` entity routes read: a customer stripe-revenue projects. */
export const ROUTE_TABLE_ENTITY = { type: 'stripe.customer', key: 'cus_route_table' };

/**
 * /v1 routes that take no API key, so no role: the inbound hook, which is
 * authenticated by the provider's signature (test/http/hooks.test.ts).
 */
export const KEYLESS_ROUTES = ['POST /v1/hooks/:installation_id'];

export const TENANT_ROUTES = V1_ROUTES.filter((route) => route.path.startsWith('/v1/orgs/{org}'));

/** `METHOD /path/:param` — the form hono registers routes under. */
export function routeKey(route: { method: string; path: string }): string {
  return `${route.method.toUpperCase()} ${route.path.replaceAll(/\{(\w+)\}/g, ':$1')}`;
}

/** The operations the app registers under `prefix`, middleware entries left out. */
export function registeredRoutes(app: SignalbusApp, prefix: string): string[] {
  const keys = app.http.routes
    .filter((route) => route.method !== 'ALL' && !route.path.includes('*') && route.path.startsWith(prefix))
    .map(routeKey);
  return [...new Set(keys)].sort();
}

/**
 * Fills `{org}`, and `{id}` or `{name}` from `id` (`{name}` defaults to
 * ROUTE_TABLE_SECRET); `{package}` and `{version}` from ROUTE_TABLE_PACKAGE,
 * `{type}` and `{key}` from ROUTE_TABLE_ENTITY.
 */
export function fillPath(template: string, values: { org?: string; id?: string }): string {
  return template.replaceAll(/\{(\w+)\}/g, (_, name: string) => {
    const value =
      name === 'name'
        ? (values.id ?? ROUTE_TABLE_SECRET)
        : name === 'package' || name === 'version'
          ? ROUTE_TABLE_PACKAGE[name]
          : name === 'type' || name === 'key'
            ? ROUTE_TABLE_ENTITY[name]
            : values[name as 'org' | 'id'];
    if (value === undefined) throw new Error(`no value for {${name}} in ${template}`);
    return encodeURIComponent(value);
  });
}

export interface RouteResponse {
  status: number;
  headers: Headers;
  text: string;
  body: any;
}

/**
 * Calls the app in process. A 200 event stream is read up to its first chunk
 * (or until `until` matches the text read so far) and then cancelled, which
 * aborts the server's tail loop.
 */
export async function callRoute(
  app: SignalbusApp,
  method: string,
  path: string,
  { key, body, headers = {}, until, deadlineMs = 10_000 }: {
    key?: string;
    body?: unknown;
    headers?: Record<string, string>;
    until?: (text: string) => boolean;
    deadlineMs?: number;
  } = {},
): Promise<RouteResponse> {
  const sent: Record<string, string> = { ...headers };
  if (key) sent.authorization = `Bearer ${key}`;
  if (body !== undefined) sent['content-type'] ??= 'application/json';
  const response = await app.http.request(path, {
    method,
    headers: sent,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  let text = '';
  if (response.headers.get('content-type')?.startsWith('text/event-stream') && response.body) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`stream ${path} did not produce what was awaited`)), deadlineMs);
    });
    try {
      for (;;) {
        const chunk = await Promise.race([reader.read(), timeout]);
        if (chunk.done) break;
        text += decoder.decode(chunk.value, { stream: true });
        if (!until || until(text)) break;
      }
    } finally {
      clearTimeout(timer);
      await reader.cancel();
    }
  } else {
    text = await response.text();
  }
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, text, body: parsed };
}
