/**
 * The role × route matrix, driven from the route table in
 * test/support/routes.ts: every /v1 operation is called by every role, by no
 * key, by a revoked key and by garbage keys. Allowed roles get a business
 * answer; a role too weak gets 403 `forbidden` and changes nothing; anything
 * unauthenticated gets 401 `unauthorized`. The table itself is checked
 * against what the app registers and against `roleHolds`, so a new route or a
 * loosened permission cannot slip by.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { ORG_ROLES, PERMISSIONS, PLATFORM_ROLES, Role, roleHolds, type OrgRole, type Permission } from '../../src/auth/roles.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { getDirective } from '../../src/directives/store.ts';
import { getExecution } from '../../src/executions/read.ts';
import { alwaysFails, failedExecution, heldDirective, setPolicy } from '../support/fanout.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { installationIn, projectRouteTableEntity, registryWithRelayVersions, RELAY_CONFIG } from '../support/installations.ts';
import { getInstallation } from '../../src/packages/installation-read.ts';
import { callRoute, fillPath, KEYLESS_ROUTES, registeredRoutes, ROUTE_TABLE_ENTITY, routeKey, uniqueInstant, V1_ROUTES, type RouteCase, type RouteResponse } from '../support/routes.ts';
import { requestReplay, showReplay } from '../../src/replay/verbs.ts';
import { listSecrets, putSecret } from '../../src/secrets/vault.ts';

const ROLES = Role.options;

/** What API.md grants, written out independently of src/auth/roles.ts. */
const EXPECTED_GRANTS: Record<Permission, readonly Role[]> = {
  'org:read': ['viewer', 'operator', 'admin', 'support', 'platform_admin'],
  'org:operate': ['operator', 'admin', 'platform_admin'],
  'org:admin': ['admin', 'platform_admin'],
  'org:replay': ['admin', 'support', 'platform_admin'],
  'platform:admin': ['platform_admin'],
  /** GET /metrics: API.md's "a platform key". */
  'platform:observe': ['support', 'platform_admin'],
  authenticated: ['viewer', 'operator', 'admin', 'support', 'platform_admin'],
};

let t: TestApp;
let org: Tenant;
let signalId: string;
let directiveId: string;
let executionId: string;
let installationId: string;
let registry: Awaited<ReturnType<typeof registryWithRelayVersions>>;
let replayId: string;
const keys = {} as Record<Role, string>;
let revokedKey: string;
let counter = 0;
const unique = () => `${Date.now().toString(36)}${++counter}`;

async function makeKey(tenant: Tenant | null, role: Role) {
  const { apiKey, secret } = await createApiKey(t.app.deps, {
    tenant,
    input: { name: `${role} key`, role, actor: { type: 'human', id: `${role}@roles.test` } },
    by: PLATFORM_ACTOR,
  });
  return { secret, id: apiKey.id };
}

interface Victim {
  kind: 'apiKey' | 'directive' | 'execution' | 'secret' | 'installation' | 'replay';
  id: string;
}

/**
 * Fills `{org}` and `{id}`. Where the route consumes its object — a revoked
 * key, a decided directive, a retried execution — the id is a fresh victim
 * per call, so an allowed call always succeeds and a refused one can be
 * checked to have left it as it was.
 */
async function pathFor(route: RouteCase): Promise<{ path: string; victim?: Victim }> {
  let victim: Victim | undefined;
  if (route.id === 'installation') {
    if (route.state === 'installed' || route.state === 'disabled' || route.state === 'install_failed') victim = { kind: 'installation', id: await installationIn(t, org, route.state) };
  } else if (route.id === 'apiKey') victim = { kind: 'apiKey', id: (await makeKey(org, 'viewer')).id };
  else if (route.id === 'secret') victim = { kind: 'secret', id: (await putSecret(t.app.deps.vault, { tenant: org, name: `victim_${unique()}`, input: { value: 'victim-value' } })).name };
  else if (route.state === 'awaiting_approval') victim = { kind: 'directive', id: (await heldDirective(t, org)).id };
  else if (route.state === 'failed') victim = { kind: 'execution', id: (await failedExecution(t, org)).id };
  else if (route.state === 'queued') victim = { kind: 'replay', id: await queuedReplay() };
  const fixed = { signal: signalId, directive: directiveId, execution: executionId, installation: installationId, replay: replayId, apiKey: undefined, secret: undefined };
  const id = victim?.id ?? (route.id ? fixed[route.id] : undefined);
  return { path: fillPath(route.path, { org: org.slug, ...(id ? { id } : {}) }), ...(victim ? { victim } : {}) };
}

/** A refused call left its victim untouched. */
async function expectUntouched(victim: Victim) {
  if (victim.kind === 'apiKey') {
    const [row] = await t.app.deps.sql`select revoked_at from public.api_keys where id = ${victim.id}`;
    expect(row!.revoked_at).toBeNull();
  } else if (victim.kind === 'secret') {
    expect((await listSecrets(t.app.deps.sql, org)).map((secret) => secret.name)).toContain(victim.id);
  } else if (victim.kind === 'installation') {
    const row = await getInstallation(t.app.deps.bus.installations, { ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' }, input: { id: victim.id } });
    expect(row.pending).toBeNull();
    expect(['installed', 'disabled', 'failed']).toContain(row.status);
    expect(row.config).toEqual(RELAY_CONFIG);
  } else if (victim.kind === 'directive') {
    expect((await getDirective(t.app.deps.sql, org, victim.id)).status).toBe('awaiting_approval');
  } else if (victim.kind === 'replay') {
    expect((await showReplay(t.app.deps.bus.replays, { ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'api' }, input: { id: victim.id } })).status).toBe('queued');
  } else {
    expect((await getExecution(t.app.deps.sql, org, victim.id)).status).toBe('failed');
  }
}

/** A replay that stays queued (no worker here), at an instant of its own so requests never overlap. */
async function queuedReplay(): Promise<string> {
  const replay = await requestReplay(t.app.deps.bus.replays, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'api' },
    input: { role: 'support', request: { mode: 'as_of', reason: 'roles fixture', selection: { before: uniqueInstant() } } },
  });
  return replay.id;
}

/** The newest signal of the org: what a refused replay request records. */
async function lastSignalType(): Promise<string | undefined> {
  const [row] = await t.app.deps.sql<{ type: string }[]>`
    select type from ${t.app.deps.sql(`${org.schema}.signals`)} order by tx_id desc, seq desc limit 1`;
  return row?.type;
}

async function snapshot() {
  const [row] = await t.app.deps.sql<{ orgs: number; keys: number; revoked: number; signals: number }[]>`
    select (select count(*)::int from public.organizations) as orgs,
           (select count(*)::int from public.api_keys) as keys,
           (select count(*)::int from public.api_keys where revoked_at is not null) as revoked,
           (select count(*)::int from ${t.app.deps.sql(`${org.schema}.signals`)}) as signals`;
  return row!;
}

function expectProblem(response: RouteResponse, status: number, code: string, what: string) {
  expect(response.status, what).toBe(status);
  expect(response.headers.get('content-type'), what).toContain('application/problem+json');
  expect(response.body?.code, what).toBe(code);
}

beforeAll(async () => {
  registry = await registryWithRelayVersions();
  t = await createTestApp({ handlers: [alwaysFails], env: { SIGNALBUS_REGISTRY_DIR: registry.dir } });
  org = await t.createOrg('roles_a');
  installationId = await installationIn(t, org, 'installed');
  await projectRouteTableEntity(t, org, ROUTE_TABLE_ENTITY.key);
  await setPolicy(t, org);
  directiveId = (await heldDirective(t, org)).id;
  executionId = (await failedExecution(t, org)).id;
  replayId = await queuedReplay();
  for (const role of ORG_ROLES) keys[role] = (await makeKey(org, role)).secret;
  keys.support = (await makeKey(null, 'support')).secret;
  keys.platform_admin = t.platformKey;
  const emitted = await t.request('POST', `/v1/orgs/${org.slug}/signals`, {
    key: keys.operator,
    body: { type: 'roles.seeded', payload: { n: 1 } },
  });
  expect(emitted.status).toBe(201);
  signalId = emitted.body.signal.id;

  // Used once (so the authenticator has it cached), then revoked over HTTP.
  const doomed = await makeKey(org, 'admin');
  revokedKey = doomed.secret;
  expect((await t.request('GET', `/v1/orgs/${org.slug}/signals`, { key: revokedKey })).status).toBe(200);
  const revoked = await t.request('DELETE', `/v1/orgs/${org.slug}/api-keys/${doomed.id}`, { key: keys.admin });
  expect(revoked.status).toBe(200);
});
afterAll(async () => {
  await t?.close();
  await registry?.cleanup();
});

describe('the route table', () => {
  it('covers every /v1 route the app registers, and names no route the app lacks', () => {
    const registered = registeredRoutes(t.app, '/v1').filter((key) => !KEYLESS_ROUTES.includes(key));
    const table = V1_ROUTES.map(routeKey).sort();
    expect(registered.filter((key) => !table.includes(key)), 'registered routes missing from the table').toEqual([]);
    expect(table.filter((key) => !registered.includes(key)), 'table rows the app does not register').toEqual([]);
  });

  it("lists for each route exactly the roles that hold the route's permission", () => {
    for (const route of V1_ROUTES) {
      const holders = ROLES.filter((role) => roleHolds(role, route.permission));
      expect([...holders].sort(), routeKey(route)).toEqual([...route.allowed].sort());
    }
  });
});

describe('roles.ts', () => {
  it('grants each role exactly what API.md says, for every role × permission', () => {
    expect(Object.keys(PERMISSIONS).sort()).toEqual(Object.keys(EXPECTED_GRANTS).sort());
    expect([...ROLES].sort()).toEqual([...ORG_ROLES, ...PLATFORM_ROLES].sort());
    for (const permission of Object.keys(EXPECTED_GRANTS) as Permission[]) {
      for (const role of ROLES) {
        expect(roleHolds(role, permission), `${role} × ${permission}`).toBe(EXPECTED_GRANTS[permission].includes(role));
      }
    }
  });

  it('denies by default: a role it does not list holds nothing', () => {
    for (const stranger of ['owner', 'root', '', 'ADMIN', 'Admin', 'platform-admin', '__proto__', 'constructor', 'toString']) {
      for (const permission of Object.keys(PERMISSIONS) as Permission[]) {
        expect(roleHolds(stranger as Role, permission), `${stranger} × ${permission}`).toBe(false);
      }
    }
  });
});

describe('the role × route matrix over HTTP', () => {
  for (const route of V1_ROUTES) {
    describe(routeKey(route), () => {
      for (const role of ROLES) {
        const allowed = route.allowed.includes(role);
        it(`${role}: ${allowed ? 'allowed' : '403 forbidden, nothing written'}`, async () => {
          const { path, victim } = await pathFor(route);
          const before = await snapshot();
          const response = await callRoute(t.app, route.method, path, {
            key: keys[role],
            ...(route.body ? { body: route.body(unique()) } : {}),
          });
          const what = `${role} ${route.method} ${path}`;
          if (allowed) {
            // Every fixture in the table is a valid request: past authorization it succeeds.
            expect(response.status, `${what}: ${response.text}`).toBeGreaterThanOrEqual(200);
            expect(response.status, `${what}: ${response.text}`).toBeLessThan(300);
            return;
          }
          expectProblem(response, 403, 'forbidden', what);
          if (route.refusalRecorded) {
            // Every attempt is in the log: the refusal, and nothing else.
            expect(await snapshot(), `${what} wrote more than its refusal`).toEqual({ ...before, signals: before.signals + 1 });
            expect(await lastSignalType()).toBe(route.refusalRecorded);
          } else {
            expect(await snapshot(), `${what} wrote something`).toEqual(before);
          }
          if (victim) await expectUntouched(victim);
        });
      }

      if (route.body) {
        it('403 comes before body validation: a denied role with a malformed body is still forbidden', async () => {
          const denied = ROLES.filter((role) => !route.allowed.includes(role));
          expect(denied.length).toBeGreaterThan(0);
          for (const role of denied) {
            const { path } = await pathFor(route);
            const response = await t.request(route.method, path, { key: keys[role], rawBody: '{"not json' });
            expectProblem(response, 403, 'forbidden', `${role} ${route.method} ${path}`);
          }
        });
      }

      it('401 unauthorized without a key, with a revoked key and with garbage keys', async () => {
        const garbage = [
          `sbk_${randomBytes(30).toString('base64url').slice(0, 40)}`,
          'not-a-key',
          `sbk_${'x'.repeat(200)}`,
          keys.admin.slice(0, -1),
        ];
        const attempts: Array<{ name: string; headers: Record<string, string> }> = [
          { name: 'no key', headers: {} },
          { name: 'revoked', headers: { authorization: `Bearer ${revokedKey}` } },
          { name: 'empty bearer', headers: { authorization: 'Bearer ' } },
          { name: 'basic scheme', headers: { authorization: `Basic ${keys.platform_admin}` } },
          { name: 'two tokens', headers: { authorization: `Bearer ${keys.platform_admin} ${keys.platform_admin}` } },
          ...garbage.map((key) => ({ name: `garbage ${key.slice(0, 12)}`, headers: { authorization: `Bearer ${key}` } })),
        ];
        const paths = await Promise.all(attempts.map(() => pathFor(route)));
        const before = await snapshot();
        for (const [index, attempt] of attempts.entries()) {
          const { path } = paths[index]!;
          const response = await callRoute(t.app, route.method, path, {
            headers: attempt.headers,
            ...(route.body ? { body: route.body(unique()) } : {}),
          });
          expectProblem(response, 401, 'unauthorized', `${attempt.name} ${route.method} ${path}`);
        }
        expect(await snapshot()).toEqual(before);
      });
    });
  }
});

describe('org keys on another org', () => {
  it('are refused with 404 before the role is considered, for every org role', async () => {
    const other = await t.createOrg('roles_b');
    for (const role of ORG_ROLES as readonly OrgRole[]) {
      const response = await t.request('POST', `/v1/orgs/${other.slug}/api-keys`, {
        key: keys[role],
        body: { name: 'x', role: 'viewer' },
      });
      expectProblem(response, 404, 'not_found', role);
    }
  });
});
