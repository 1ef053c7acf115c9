/**
 * Tenant isolation, driven from the one route table in test/support/routes.ts:
 * another org's keys get 404 on every tenant-scoped route (existence is not
 * revealed), ids of another org — signals, keys, directives, executions, each
 * in a state where the route would succeed — are not found through one's own
 * org, a canary planted in org A (signal, policy, directive, execution) never
 * reaches org B, and two tenants interleaved on a single pooled connection
 * never see each other's rows.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { ORG_ROLES, type OrgRole } from '../../src/auth/roles.ts';
import { createSql } from '../../src/db/client.ts';
import { createProjectionRegistry } from '../../src/projections/registry.ts';
import { emit, type EmitDeps } from '../../src/signals/emit.ts';
import { BEGINNING, type Signal } from '../../src/signals/model.ts';
import { listSignals, readSignalsAfter } from '../../src/signals/read.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { getDirective, type Directive } from '../../src/directives/store.ts';
import { getExecution, type Execution } from '../../src/executions/read.ts';
import { alwaysFails, failedExecution, heldDirective, HOLD_POLICY, setPolicy } from '../support/fanout.ts';
import { installationIn } from '../support/installations.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import {
  callRoute,
  fillPath,
  registeredRoutes,
  routeKey,
  TENANT_ROUTES,
  uniqueInstant,
  type RouteCase,
  type RouteResponse,
} from '../support/routes.ts';

interface OrgFixture {
  tenant: Tenant;
  keys: Record<OrgRole, { secret: string; id: string }>;
  signal: Signal;
  /** Awaiting approval and failed: states in which approve and retry would succeed, were the org not checked. */
  directive: Directive;
  execution: Execution;
  /** A vault entry whose name is the org's own and whose value is the canary. */
  secretName: string;
  installationId: string;
  replay: { id: string };
}

let t: TestApp;
let a: OrgFixture;
let b: OrgFixture;
let supportKey: string;
const canary = `canary${randomBytes(8).toString('hex')}`;
let counter = 0;
const unique = () => `${Date.now().toString(36)}${++counter}`;

async function makeKey(tenant: Tenant | null, role: OrgRole | 'support') {
  const { apiKey, secret } = await createApiKey(t.app.deps, {
    tenant,
    input: { name: `${role} key`, role, actor: { type: 'human', id: `${role}@${tenant?.slug ?? 'platform'}.test` } },
    by: PLATFORM_ACTOR,
  });
  return { secret, id: apiKey.id };
}

/** An org with keys, a signal, a policy, a directive and an execution, each carrying `secret`. */
async function makeOrg(slug: string, signalBody: Record<string, unknown>, secret: string): Promise<OrgFixture> {
  const tenant = await t.createOrg(slug);
  const keys = {} as OrgFixture['keys'];
  for (const role of ORG_ROLES) keys[role] = await makeKey(tenant, role);
  const emitted = await t.request('POST', `/v1/orgs/${slug}/signals`, { key: keys.operator.secret, body: signalBody });
  expect(emitted.status).toBe(201);
  await setPolicy(t, tenant, { rules: HOLD_POLICY.rules.map((rule) => ({ ...rule, reason: `${rule.id} ${secret}` })) });
  const directive = await heldDirective(t, tenant, { params: { secret }, idempotencyKey: `directive:${secret}` });
  expect(directive.status).toBe('awaiting_approval');
  const execution = await failedExecution(t, tenant, { secret });
  expect(execution.status).toBe('failed');
  const secretName = `iso_${slug}_token`;
  const stored = await t.request('PUT', `/v1/orgs/${slug}/secrets/${secretName}`, { key: keys.admin.secret, body: { value: secret } });
  expect(stored.status).toBe(200);
  const installationId = await installationIn(t, tenant, 'installed');
  // A replay (as of a moment of its own, so it stays queued, conflicting with nothing), its reason carrying the secret.
  const replayed = await t.request('POST', `/v1/orgs/${slug}/replays`, {
    key: keys.admin.secret,
    body: { mode: 'as_of', reason: `iso ${secret}`, selection: { before: uniqueInstant() } },
  });
  expect(replayed.status).toBe(202);
  return { tenant, keys, signal: emitted.body.signal, directive, execution, secretName, installationId, replay: replayed.body.replay };
}

const countRows = async (tenant: Tenant) => {
  const [row] = await t.app.deps.sql<{ signals: number; keys: number; revoked: number; secrets: string }[]>`
    select (select count(*)::int from ${t.app.deps.sql(`${tenant.schema}.signals`)}) as signals,
           (select coalesce(string_agg(owner || '/' || name || ':' || fingerprint, ',' order by owner, name), '')
              from ${t.app.deps.sql(`${tenant.schema}.secrets`)}) as secrets,
           (select count(*)::int from public.api_keys where org_id = ${tenant.id}) as keys,
           (select count(*)::int from public.api_keys where org_id = ${tenant.id} and revoked_at is not null) as revoked`;
  return row!;
};

/** An id for `{id}` that belongs to `owner`. */
function idOf(route: RouteCase, owner: OrgFixture): string | undefined {
  if (route.id === 'signal') return owner.signal.id;
  if (route.id === 'apiKey') return owner.keys.admin.id;
  if (route.id === 'directive') return owner.directive.id;
  if (route.id === 'execution') return owner.execution.id;
  if (route.id === 'secret') return owner.secretName;
  if (route.id === 'installation') return owner.installationId;
  if (route.id === 'replay') return owner.replay.id;
  return undefined;
}

function expectNotFound(response: RouteResponse, what: string) {
  expect(response.status, what).toBe(404);
  expect(response.headers.get('content-type'), what).toContain('application/problem+json');
  expect(response.body?.code, what).toBe('not_found');
}

/** What org B must never see of org A: the canary and the ids of A's signal, directive and execution. */
function expectNoLeak(text: string, what: string) {
  expect(text.includes(canary), `${what} leaked the canary`).toBe(false);
  expect(text.includes(a.signal.id), `${what} leaked org A's signal id`).toBe(false);
  expect(text.includes(a.directive.id), `${what} leaked org A's directive id`).toBe(false);
  expect(text.includes(a.execution.id), `${what} leaked org A's execution id`).toBe(false);
  expect(text.includes(a.secretName), `${what} leaked org A's secret name`).toBe(false);
  expect(text.includes(a.installationId), `${what} leaked org A's installation id`).toBe(false);
}

beforeAll(async () => {
  t = await createTestApp({ handlers: [alwaysFails] });
  a = await makeOrg('iso_a', {
    type: 'canary.planted',
    subject: `subject:${canary}`,
    payload: { secret: canary, nested: { again: canary } },
    dedupe_key: `dedupe:${canary}`,
    correlation_id: `corr:${canary}`,
  }, canary);
  b = await makeOrg('iso_b', { type: 'canary.control', subject: 'subject:b', payload: { mine: 'b' }, dedupe_key: 'b-1' }, 'b');
  supportKey = (await makeKey(null, 'support')).secret;
});
afterAll(() => t.close());

describe('the route table', () => {
  it('covers every tenant-scoped route the app registers, and names no route the app lacks', () => {
    const registered = registeredRoutes(t.app, '/v1/orgs/:org');
    const table = TENANT_ROUTES.map(routeKey).sort();
    expect(registered.length).toBeGreaterThan(0);
    expect(registered.filter((key) => !table.includes(key)), 'registered routes missing from the table').toEqual([]);
    expect(table.filter((key) => !registered.includes(key)), 'table rows the app does not register').toEqual([]);
  });
});

describe("another org's keys", () => {
  it('get 404 not_found on every tenant route of org A, by slug and by id, for every role, and change nothing', async () => {
    const before = await countRows(a.tenant);
    const seen: string[] = [];
    for (const route of TENANT_ROUTES) {
      for (const role of ORG_ROLES) {
        for (const org of [a.tenant.slug, a.tenant.id]) {
          const id = idOf(route, a);
          const path = fillPath(route.path, { org, ...(id ? { id } : {}) });
          const response = await callRoute(t.app, route.method, path, {
            key: b.keys[role].secret,
            ...(route.body ? { body: route.body(unique()) } : {}),
            ...(route.stream ? { headers: { 'last-event-id': '0' } } : {}),
          });
          const what = `${role} of B: ${route.method} ${path}`;
          expectNotFound(response, what);
          expectNoLeak(response.text, what);
          seen.push(routeKey(route));
        }
      }
    }
    expect(new Set(seen).size).toBe(TENANT_ROUTES.length);
    expect(await countRows(a.tenant)).toEqual(before);
    expect((await getDirective(t.app.deps.sql, a.tenant, a.directive.id)).status).toBe('awaiting_approval');
    expect((await getExecution(t.app.deps.sql, a.tenant, a.execution.id)).status).toBe('failed');
  });

  it('answer exactly as an org that does not exist does, so existence is not revealed', async () => {
    for (const route of TENANT_ROUTES) {
      const id = idOf(route, a);
      const call = (org: string) =>
        callRoute(t.app, route.method, fillPath(route.path, { org, ...(id ? { id } : {}) }), {
          key: b.keys.admin.secret,
          ...(route.body ? { body: route.body(unique()) } : {}),
        });
      const [existing, missing] = [await call(a.tenant.slug), await call('iso_nobody')];
      const strip = (body: Record<string, unknown>) => ({ ...body, request_id: undefined });
      expect(strip(existing.body), routeKey(route)).toEqual(strip(missing.body));
      expect(existing.status).toBe(missing.status);
    }
  });
});

describe("ids of another org through one's own org", () => {
  it("are not found on every route with an {id}, for each of org A's keys allowed there", async () => {
    const routes = TENANT_ROUTES.filter((route) => route.id);
    expect(routes.length).toBeGreaterThan(0);
    const bBefore = await countRows(b.tenant);
    for (const route of routes) {
      for (const role of ORG_ROLES.filter((candidate) => route.allowed.includes(candidate))) {
        const path = fillPath(route.path, { org: a.tenant.slug, id: idOf(route, b)! });
        const response = await callRoute(t.app, route.method, path, {
          key: a.keys[role].secret,
          ...(route.body ? { body: route.body(unique()) } : {}),
        });
        expectNotFound(response, `${role} of A: ${route.method} ${path}`);
      }
      // A platform key is bound to no org, but the id is still looked up in the path's org only.
      const path = fillPath(route.path, { org: a.tenant.slug, id: idOf(route, b)! });
      const response = await callRoute(t.app, route.method, path, {
        key: route.allowed.includes('support') ? supportKey : t.platformKey,
        ...(route.body ? { body: route.body(unique()) } : {}),
      });
      expectNotFound(response, `platform key: ${route.method} ${path}`);
    }
    // Nothing of B's moved: its key was not revoked, its directive was not
    // decided, its execution was not retried — and its key still works.
    expect(await countRows(b.tenant)).toEqual(bBefore);
    expect((await getDirective(t.app.deps.sql, b.tenant, b.directive.id)).status).toBe('awaiting_approval');
    expect((await getExecution(t.app.deps.sql, b.tenant, b.execution.id)).status).toBe('failed');
    const [installation] = await t.app.deps.sql`select status, pending from ${t.app.deps.sql(`${b.tenant.schema}.installations`)} where id = ${b.installationId}`;
    expect(installation).toEqual({ status: 'installed', pending: null });
    const stillWorks = await t.request('GET', `/v1/orgs/${b.tenant.slug}/signals`, { key: b.keys.admin.secret });
    expect(stillWorks.status).toBe(200);
  });
});

describe('the canary planted in org A', () => {
  it('is visible to org A (so the checks below can see a leak)', async () => {
    await t.settle();
    const list = await t.request('GET', `/v1/orgs/${a.tenant.slug}/signals`, { key: a.keys.viewer.secret });
    expect(list.text).toContain(canary);
    const one = await t.request('GET', `/v1/orgs/${a.tenant.slug}/signals/${a.signal.id}`, { key: a.keys.viewer.secret });
    expect(one.body.signal.payload.secret).toBe(canary);
  });

  it("never reaches org B's keys on org B's own routes: list, filters, get, stream, emit", async () => {
    await t.settle();
    for (const role of ORG_ROLES) {
      const key = b.keys[role].secret;
      const list = await t.request('GET', `/v1/orgs/${b.tenant.slug}/signals?after=0&limit=1000`, { key });
      expect(list.status).toBe(200);
      expect(list.body.data.map((signal: Signal) => signal.id)).toContain(b.signal.id);
      expectNoLeak(list.text, `${role} list`);

      const filtered = await t.request(
        'GET',
        `/v1/orgs/${b.tenant.slug}/signals?${new URLSearchParams({ subject: a.signal.subject!, correlation_id: a.signal.correlation_id!, type: 'canary.planted' })}`,
        { key },
      );
      expect(filtered.status).toBe(200);
      expect(filtered.body.data).toEqual([]);
      expectNoLeak(filtered.text, `${role} filtered list`);

      const get = await t.request('GET', `/v1/orgs/${b.tenant.slug}/signals/${a.signal.id}`, { key });
      expectNotFound(get, `${role} get of A's id`);
      expectNoLeak(get.text, `${role} get`);
    }

    // A sentinel committed after the canary: B's stream from the beginning
    // reaches it, and everything before it is B's own.
    const sentinel = `sentinel-${unique()}`;
    const emitted = await t.request('POST', `/v1/orgs/${b.tenant.slug}/signals`, {
      key: b.keys.operator.secret,
      body: { type: 'canary.sentinel', payload: { sentinel } },
    });
    expect(emitted.status).toBe(201);
    const stream = await callRoute(t.app, 'GET', `/v1/orgs/${b.tenant.slug}/stream?after=0`, {
      key: b.keys.viewer.secret,
      until: (text) => text.includes(sentinel),
    });
    expect(stream.status).toBe(200);
    expect(stream.text).toContain(b.signal.id);
    expect(stream.text).toContain(sentinel);
    expectNoLeak(stream.text, 'stream');

    // A cause in org A is not joined for correlation from org B.
    const caused = await t.request('POST', `/v1/orgs/${b.tenant.slug}/signals`, {
      key: b.keys.operator.secret,
      body: { type: 'canary.caused', payload: {}, causation_id: a.signal.id },
    });
    expect(caused.status).toBe(201);
    expect(caused.body.signal.correlation_id).toBe(caused.body.signal.id);
    expect(caused.text).not.toContain(canary);
  });

  it("does not dedupe org B's signal against org A's dedupe key", async () => {
    const body = { type: 'canary.planted', payload: { mine: 'b' }, dedupe_key: a.signal.dedupe_key };
    const single = await t.request('POST', `/v1/orgs/${b.tenant.slug}/signals`, { key: b.keys.operator.secret, body });
    expect(single.status).toBe(201);
    expect(single.body.deduplicated).toBe(false);
    expect(single.body.signal.id).not.toBe(a.signal.id);
    expectNoLeak(JSON.stringify({ ...single.body.signal, dedupe_key: undefined }), 'emit with A dedupe key');

    const batch = await t.request('POST', `/v1/orgs/${b.tenant.slug}/signals/batch`, {
      key: b.keys.operator.secret,
      body: { signals: [{ type: 'canary.planted', payload: { other: 'b' }, dedupe_key: `${a.signal.dedupe_key}:batch` }] },
    });
    expect(batch.status).toBe(200);
    expect(batch.body.results[0].status).toBe('created');
    expectNoLeak(JSON.stringify({ ...batch.body.results[0].signal, dedupe_key: undefined }), 'batch with A dedupe key');
  });

  it("never reaches org B through B's directives, executions, policies, simulation and traces", async () => {
    for (const role of ORG_ROLES) {
      const key = b.keys[role].secret;
      const reads = [
        '/directives?limit=1000',
        '/directives?status=awaiting_approval&kind=noop.record',
        `/directives?after=${a.directive.id}`,
        `/executions?after=${a.execution.id}`,
        '/executions?limit=1000',
        `/executions?status=failed&handler=${alwaysFails.id}`,
        '/policies',
        `/signals/${b.signal.id}/trace`,
        `/signals/${b.execution.signal_id}/trace`,
      ];
      for (const read of reads) {
        const response = await t.request('GET', `/v1/orgs/${b.tenant.slug}${read}`, { key });
        expect(response.status, `${role} ${read}`).toBe(200);
        expectNoLeak(response.text, `${role} ${read}`);
      }
      const directives = await t.request('GET', `/v1/orgs/${b.tenant.slug}/directives`, { key });
      expect(directives.body.data.map((directive: Directive) => directive.id)).toEqual([b.directive.id]);
      const executions = await t.request('GET', `/v1/orgs/${b.tenant.slug}/executions`, { key });
      expect(executions.body.data.map((execution: Execution) => execution.id)).toEqual([b.execution.id]);
      const trace = await t.request('GET', `/v1/orgs/${b.tenant.slug}/signals/${a.signal.id}/trace`, { key });
      expectNotFound(trace, `${role} trace of A's signal`);
    }
    const simulated = await t.request('POST', `/v1/orgs/${b.tenant.slug}/directives/simulate`, {
      key: b.keys.operator.secret,
      body: { kind: 'noop.record', params: { hold: true } },
    });
    expect(simulated.status).toBe(200);
    expect(simulated.body).toMatchObject({ decision: 'require_approval', rule: 'hold', reason: 'hold b' });
    expectNoLeak(simulated.text, 'simulate');
  });

  it("does not dedupe org B's directive against org A's idempotency key", async () => {
    const proposed = await t.request('POST', `/v1/orgs/${b.tenant.slug}/directives`, {
      key: b.keys.operator.secret,
      body: { kind: 'noop.record', params: a.directive.params, idempotency_key: a.directive.idempotency_key },
    });
    expect(proposed.status).toBe(201);
    expect(proposed.body.directive.id).not.toBe(a.directive.id);
    expect(proposed.body.directive.decision.reason).toBe('hold b');
    // The params are B's own echo of what it sent; nothing else of A's came back.
    expectNoLeak(JSON.stringify({ ...proposed.body.directive, params: undefined, idempotency_key: undefined }), 'propose with A key');
  });
});

describe('an org whose slug looks like another org id', () => {
  it("cannot take over that org's id-addressed paths", async () => {
    // Slugs and ids share a shape (`org_` + 26 base32 characters fits the slug
    // pattern), so a directory keyed by either must not confuse them.
    const impostor = await t.createOrg(a.tenant.id);
    const impostorAdmin = (await makeKey(impostor, 'admin')).secret;
    // Look the impostor up by its id first, so a shared cache would hold it.
    const own = await t.request('GET', `/v1/orgs/${impostor.id}/signals`, { key: impostorAdmin });
    expect(own.status).toBe(200);

    const intrusion = await t.request('GET', `/v1/orgs/${a.tenant.id}/signals`, { key: impostorAdmin });
    expectNotFound(intrusion, "impostor's key on A's id");
    expectNoLeak(intrusion.text, 'impostor');
    const rightful = await t.request('GET', `/v1/orgs/${a.tenant.id}/signals`, { key: a.keys.viewer.secret });
    expect(rightful.status).toBe(200);
    expect(rightful.text).toContain(canary);
    const support = await t.request('GET', `/v1/orgs/${a.tenant.id}/signals/${a.signal.id}`, { key: supportKey });
    expect(support.status).toBe(200);
  });
});

describe('two tenants interleaved on one pooled connection', () => {
  it('never see each other’s signals through emit, listSignals and readSignalsAfter', async () => {
    const applicationName = `iso_one_conn_${unique()}`;
    const sql = createSql(t.database.url, { max: 1, applicationName });
    const misplaced: string[] = [];
    // Half the types go through a projection, so emit opens a transaction on
    // the one connection between plain statements of the other tenant.
    const deps: EmitDeps = {
      sql,
      notifier: { committed() {} },
      maxPayloadBytes: 256 * 1024,
      projections: createProjectionRegistry([
        {
          name: 'isolation-probe',
          table: 'signals',
          handles: (type) => type.endsWith('.tx'),
          async apply(db, tenant, signals) {
            for (const signal of signals) {
              const [row] = await db<{ n: number }[]>`
                select count(*)::int as n from ${db(`${tenant.schema}.signals`)} where id = ${signal.id}`;
              if ((signal.payload as { tenant?: string }).tenant !== tenant.slug || row!.n !== 1) misplaced.push(signal.id);
            }
          },
        },
      ]),
    };
    const tenants = [a.tenant, b.tenant];
    const rounds = 40;
    const checkRead = (tenant: Tenant, signals: Array<Pick<Signal, 'id' | 'type' | 'payload'>>, where: string) => {
      for (const signal of signals) {
        const owner = (signal.payload as { tenant?: string }).tenant;
        if (signal.type.startsWith('interleaved.') && owner !== tenant.slug) misplaced.push(`${where}:${signal.id}`);
        if (signal.id === a.signal.id && tenant.id !== a.tenant.id) misplaced.push(`${where}:canary`);
      }
    };
    try {
      const operations: Promise<unknown>[] = [];
      for (let i = 0; i < rounds; i++) {
        for (const tenant of tenants) {
          const ctx = { tenant, actor: { type: 'system' as const, id: 'interleave' }, source: 'test' };
          // The same dedupe key in both tenants: each must create its own row.
          operations.push(
            emit(deps, {
              ctx,
              input: { type: i % 2 ? 'interleaved.ping.tx' : 'interleaved.ping', payload: { tenant: tenant.slug, i }, dedupe_key: `ping-${i}` },
            }).then((result) => {
              if (result.deduplicated || (result.signal.payload as { tenant?: string }).tenant !== tenant.slug) {
                misplaced.push(`emit:${tenant.slug}:${i}`);
              }
            }),
            listSignals(sql, tenant, { limit: 1000, maxBytes: t.app.deps.maxPageBytes }).then((page) => checkRead(tenant, page.data, `list:${tenant.slug}`)),
            readSignalsAfter(sql, tenant, BEGINNING, 1000).then((rows) => checkRead(tenant, rows, `read:${tenant.slug}`)),
          );
        }
      }
      await Promise.all(operations);
      const [connections] = await t.app.deps.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity where application_name = ${applicationName}`;
      expect(connections!.n).toBe(1);

      for (const tenant of tenants) {
        // Another file's open transaction may hold the horizon back a moment.
        const page = await waitFor(async () => {
          const listed = await listSignals(sql, tenant, { limit: 1000, maxBytes: t.app.deps.maxPageBytes });
          return listed.data.filter((signal) => signal.type.startsWith('interleaved.')).length >= rounds && listed;
        }, 10_000, 'every ping below the horizon');
        checkRead(tenant, page.data, `final:${tenant.slug}`);
        const pings = page.data.filter((signal) => signal.type.startsWith('interleaved.'));
        expect(pings).toHaveLength(rounds);
        expect(new Set(pings.map((signal) => (signal.payload as { i: number }).i)).size).toBe(rounds);
      }
    } finally {
      await sql.end({ timeout: 5 });
    }
    expect(misplaced).toEqual([]);
  });
});
